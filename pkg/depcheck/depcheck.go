// Package depcheck lists the dependencies of a Go package that fall under
// forbidden import paths: the tests that keep kiln's slim binaries
// (kiln-agent, kiln-gateway) free of Kubernetes and of each other's code
// use it.
package depcheck

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Violation is one dependency under a forbidden import path.
type Violation struct {
	Dep, Forbidden string
}

// Check runs `go list -deps pkg` and returns the dependencies equal to, or
// under, one of the forbidden import paths.
func Check(ctx context.Context, pkg string, forbidden []string) ([]Violation, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-deps", pkg).Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps %s: %w", pkg, err)
	}
	var found []Violation
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				found = append(found, Violation{Dep: dep, Forbidden: f})
			}
		}
	}
	return found, nil
}
