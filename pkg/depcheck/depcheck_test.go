package depcheck

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// TestCheck: a forbidden path matches itself and what lies under it, never
// a longer name that merely starts with it.
func TestCheck(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// pkg/exitcode imports errors, fmt and strings (and so, through
	// them, internal/... and unicode/utf8).
	found, err := Check(ctx, "github.com/kiln-dev/kiln/pkg/exitcode", []string{"fmt", "strin", "unicode", "net"})
	if err != nil {
		t.Fatal(err)
	}
	var deps []string
	for _, v := range found {
		deps = append(deps, v.Dep+" ("+v.Forbidden+")")
	}
	for _, want := range []string{"fmt (fmt)", "unicode/utf8 (unicode)"} {
		if !slices.Contains(deps, want) {
			t.Errorf("found %v, want it to include %s", deps, want)
		}
	}
	for _, v := range found {
		if v.Forbidden == "strin" || v.Forbidden == "net" {
			t.Errorf("%s reported under %s", v.Dep, v.Forbidden)
		}
	}
	if _, err := Check(ctx, "github.com/kiln-dev/kiln/pkg/no-such-package", nil); err == nil {
		t.Error("a package that does not exist: no error")
	}
}
