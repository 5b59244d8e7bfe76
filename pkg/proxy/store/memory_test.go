package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/declarative"
	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
	"github.com/kiln-dev/kiln/pkg/proxy/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return store.NewMemory() })
}

func TestMemoryDataPlanes(t *testing.T) {
	storetest.RunDataPlanes(t, func(*testing.T) store.DataPlaneStore { return store.NewMemory() })
}

// TestMemoryReplaceFrom: the replaced contents and their document hash
// are published together with a configuration of the new version; a
// replacement the store refuses leaves contents, version and hash as they
// were.
func TestMemoryReplaceFrom(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemory()
	recs, err := declarative.Parse([]byte("_format_version: \"3.0\"\nservices:\n- name: s\n  url: http://127.0.0.1:9\n  routes:\n  - name: r\n    paths: [/r]\n"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ReplaceFrom(ctx, recs, "hash-1"); err != nil {
		t.Fatal(err)
	}
	cfg, err := m.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := m.Version(ctx)
	if cfg.Version != v || len(cfg.Services) != 1 || len(cfg.Routes) != 1 || m.SourceHash() != "hash-1" {
		t.Fatalf("after ReplaceFrom: version %d (store %d), %d services, %d routes, source %q", cfg.Version, v, len(cfg.Services), len(cfg.Routes), m.SourceHash())
	}

	// A route whose service does not exist: refused as a whole.
	bad := entity.Records{"routes": {{"id": "aaaaaaaa-0000-4000-8000-000000000001", "paths": []any{"/x"},
		"service": map[string]any{"id": "aaaaaaaa-0000-4000-8000-00000000ffff"}}}}
	if err := m.ReplaceFrom(ctx, bad, "hash-2"); err == nil {
		t.Fatal("a dangling service reference was accepted")
	}
	after, _ := m.Snapshot(ctx)
	v2, _ := m.Version(ctx)
	if after != cfg || v2 != v || m.SourceHash() != "hash-1" {
		t.Fatalf("a refused replacement changed the store: version %d → %d, source %q", v, v2, m.SourceHash())
	}
}
