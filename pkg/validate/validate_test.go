package validate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/diag"
	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/spec"
)

var (
	exampleSpec = filepath.Join("..", "..", "hardware", "examples", "ClusterSpec.yml")
	exampleCSV  = filepath.Join("..", "..", "hardware", "examples", "Hardware.csv")
)

// TestCheck runs each spec × hardware rule on its testdata pair: a copy of
// the example pair with one mistake.
func TestCheck(t *testing.T) {
	type want struct {
		severity diag.Severity
		file     string // "spec" or "csv"
		line     int
		text     string
	}
	tests := []struct {
		dir  string
		want []want
	}{
		{"too-few-control-plane-machines", []want{{diag.SeverityError, "spec", 49, "need 3 machines with type=cp for the control plane (count 3), found 2: cp01, cp02"}}},
		{"no-worker-machines", []want{{diag.SeverityError, "spec", 63, "need 2 machines with type=gpu for worker group md-0 (count 2), found 0: none"}}},
		{"machine-matches-two-selectors", []want{{diag.SeverityError, "csv", 2, "machine cp01 matches the selectors of TinkerbellMachineConfig/mgmt-cp (type=cp) and TinkerbellMachineConfig/mgmt-worker (rack=r1)"}}},
		{"endpoint-is-machine-ip", []want{{diag.SeverityError, "spec", 20, "controlPlaneConfiguration.endpoint.host 10.10.50.21 is the ip_address of machine wk01"}}},
		{"tinkerbell-ip-is-bmc-ip", []want{
			{diag.SeverityError, "spec", 41, "tinkerbellIP 10.10.44.12 is the bmc_ip of machine cp02"},
			{diag.SeverityWarning, "spec", 41, "tinkerbellIP 10.10.44.12 is outside every machine's subnet"},
		}},
		{"endpoint-outside-subnets", []want{{diag.SeverityWarning, "spec", 20, "controlPlaneConfiguration.endpoint.host 10.10.60.100 is outside every machine's subnet"}}},
	}
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(tests) {
		t.Errorf("testdata has %d cases, the table %d", len(entries), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			specPath := filepath.Join("testdata", tt.dir, "ClusterSpec.yml")
			csvPath := filepath.Join("testdata", tt.dir, "Hardware.csv")
			s, err := spec.LoadFile(specPath)
			if err != nil {
				t.Fatalf("spec invalid on its own: %v", err)
			}
			inv, err := hardware.ReadFile(csvPath)
			if err != nil {
				t.Fatalf("csv invalid on its own: %v", err)
			}
			got := Check(s, inv)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				p := got[i]
				file := map[string]string{"spec": specPath, "csv": csvPath}[w.file]
				if p.Severity != w.severity || p.File != file || p.Line != w.line || !strings.Contains(p.Message, w.text) {
					t.Errorf("problem %d:\n got %+v\nwant %+v", i, p, w)
				}
			}
		})
	}
	// The unmodified example pair has no problem at all.
	s, err := spec.LoadFile(exampleSpec)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := hardware.ReadFile(exampleCSV)
	if err != nil {
		t.Fatal(err)
	}
	if got := Check(s, inv); len(got) != 0 {
		t.Errorf("example pair: %v", got)
	}
}

func TestFiles(t *testing.T) {
	r := Files(exampleSpec, exampleCSV)
	if !r.Valid() || !r.CrossChecked || len(r.Problems) != 0 {
		t.Fatalf("example pair: valid=%v cross-checked=%v problems:\n%v", r.Valid(), r.CrossChecked, r.Problems)
	}

	r = Files(exampleSpec, filepath.Join("..", "hardware", "testdata", "invalid", "three-bad-rows.csv"))
	if r.Valid() || r.CrossChecked || len(r.Problems.Errors()) != 3 || r.Inventory != nil || r.Spec == nil {
		t.Errorf("bad CSV: valid=%v cross-checked=%v problems:\n%v", r.Valid(), r.CrossChecked, r.Problems)
	}

	missing := filepath.Join(t.TempDir(), "nope.csv")
	r = Files(exampleSpec, missing)
	if r.Valid() || len(r.Problems) != 1 || r.Problems[0].File != missing || !strings.Contains(r.Problems[0].Message, "no such file") {
		t.Errorf("missing CSV: %v", r.Problems)
	}
}
