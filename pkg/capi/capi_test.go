package capi_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/capi"
	"github.com/kiln-dev/kiln/pkg/validate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden generates the Cluster API objects for each spec/CSV pair and
// compares them byte for byte with testdata/<name>.golden.yaml.
func TestGolden(t *testing.T) {
	cases := []struct{ name, spec, csv string }{
		{"example", "../../hardware/examples/ClusterSpec.yml", "../../hardware/examples/Hardware.csv"},
		{"full", "testdata/full.yml", "testdata/full.csv"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := validate.Files(tc.spec, tc.csv)
			if !r.Valid() {
				t.Fatalf("fixture is invalid: %v", r.Problems)
			}
			objs, err := capi.Generate(r.Spec, r.Inventory, capi.Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := capi.Marshal(objs)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/capi -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("generated objects differ from %s (run with -update after checking the diff):\n%s", golden, diff(string(want), string(got)))
			}
		})
	}
}

func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("first difference at line %d:\n- %s\n+ %s", i+1, a, b)
		}
	}
	return ""
}

func TestKubernetesVersion(t *testing.T) {
	for in, want := range map[string]string{"1.33": "v1.33.0", "1.32.4": "v1.32.4", "v1.31.2": "v1.31.2"} {
		if got, err := capi.KubernetesVersion(in); err != nil || got != want {
			t.Errorf("KubernetesVersion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1", "1.x", "1.2.3.4"} {
		if _, err := capi.KubernetesVersion(bad); err == nil {
			t.Errorf("KubernetesVersion(%q) accepted", bad)
		}
	}
}

func TestNotEnoughHardware(t *testing.T) {
	r := validate.Files("../../hardware/examples/ClusterSpec.yml", "../../hardware/examples/Hardware.csv")
	if !r.Valid() {
		t.Fatal(r.Problems)
	}
	r.Inventory.Machines = r.Inventory.Machines[:2] // two control-plane machines for count 3
	_, err := capi.Generate(r.Spec, r.Inventory, capi.Options{})
	if err == nil || !strings.Contains(err.Error(), "control-plane needs 3 machines") {
		t.Fatalf("error %v", err)
	}
}
