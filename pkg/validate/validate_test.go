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

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestCheck(t *testing.T) {
	baseSpec, baseCSV := read(t, exampleSpec), read(t, exampleCSV)
	type want struct {
		severity diag.Severity
		file     string // "spec" or "csv"
		line     int
		text     string
	}
	tests := []struct {
		name     string
		specEdit [2]string // old, new
		csvEdit  [2]string
		want     []want
	}{
		{name: "example is valid"},
		{
			name:    "too few control-plane machines",
			csvEdit: [2]string{"type=cp|rack=r3", "type=spare|rack=r3"},
			want:    []want{{diag.SeverityError, "spec", 49, "need 3 machines with type=cp for the control plane (count 3), found 2: cp01, cp02"}},
		},
		{
			name:     "no worker machines",
			specEdit: [2]string{"type: worker", "type: gpu"},
			want:     []want{{diag.SeverityError, "spec", 63, "need 2 machines with type=gpu for worker group md-0 (count 2), found 0: none"}},
		},
		{
			name:     "machine matches two selectors",
			specEdit: [2]string{"type: worker", "rack: r1"},
			want:     []want{{diag.SeverityError, "csv", 2, "machine cp01 matches the selectors of TinkerbellMachineConfig/mgmt-cp (type=cp) and TinkerbellMachineConfig/mgmt-worker (rack=r1)"}},
		},
		{
			name:     "endpoint is a machine IP",
			specEdit: [2]string{`host: "10.10.50.100"`, `host: "10.10.50.21"`},
			want:     []want{{diag.SeverityError, "spec", 20, "controlPlaneConfiguration.endpoint.host 10.10.50.21 is the ip_address of machine wk01"}},
		},
		{
			name:     "tinkerbellIP is a BMC IP",
			specEdit: [2]string{`tinkerbellIP: "10.10.50.101"`, `tinkerbellIP: "10.10.44.12"`},
			want: []want{
				{diag.SeverityError, "spec", 41, "tinkerbellIP 10.10.44.12 is the bmc_ip of machine cp02"},
				{diag.SeverityWarning, "spec", 41, "tinkerbellIP 10.10.44.12 is outside every machine's subnet"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specText, csvText := baseSpec, baseCSV
			if tt.specEdit[0] != "" {
				if !strings.Contains(specText, tt.specEdit[0]) {
					t.Fatalf("spec lacks %q", tt.specEdit[0])
				}
				specText = strings.ReplaceAll(specText, tt.specEdit[0], tt.specEdit[1])
			}
			if tt.csvEdit[0] != "" {
				if !strings.Contains(csvText, tt.csvEdit[0]) {
					t.Fatalf("csv lacks %q", tt.csvEdit[0])
				}
				csvText = strings.ReplaceAll(csvText, tt.csvEdit[0], tt.csvEdit[1])
			}
			s, err := spec.Load([]byte(specText), "spec")
			if err != nil {
				t.Fatalf("spec invalid on its own: %v", err)
			}
			inv, err := hardware.Read(strings.NewReader(csvText), "csv")
			if err != nil {
				t.Fatalf("csv invalid on its own: %v", err)
			}
			got := Check(s, inv)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				p := got[i]
				if p.Severity != w.severity || p.File != w.file || p.Line != w.line || !strings.Contains(p.Message, w.text) {
					t.Errorf("problem %d:\n got %+v\nwant %+v", i, p, w)
				}
			}
		})
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
