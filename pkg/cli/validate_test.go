package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

var (
	exampleSpec = filepath.Join("..", "..", "hardware", "examples", "ClusterSpec.yml")
	exampleCSV  = filepath.Join("..", "..", "hardware", "examples", "Hardware.csv")
	threeBadCSV = filepath.Join("..", "hardware", "testdata", "invalid", "three-bad-rows.csv")
)

// run executes kiln in-process and returns its exit code and output streams.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValidateExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"valid example", []string{"validate", "-f", exampleSpec, "--hardware-csv", exampleCSV}, ExitOK},
		{"valid example json", []string{"validate", "-f", exampleSpec, "--hardware-csv", exampleCSV, "-o", "json"}, ExitOK},
		{"invalid csv", []string{"validate", "-f", exampleSpec, "--hardware-csv", threeBadCSV}, ExitInvalidInput},
		{"missing file", []string{"validate", "-f", exampleSpec, "--hardware-csv", filepath.Join(t.TempDir(), "none.csv")}, ExitInvalidInput},
		{"no hardware flag", []string{"validate", "-f", exampleSpec}, ExitUsage},
		{"unknown flag", []string{"validate", "--hardware", exampleCSV}, ExitUsage},
		{"bad output format", []string{"validate", "-f", exampleSpec, "--hardware-csv", exampleCSV, "-o", "yaml"}, ExitUsage},
		{"stray argument", []string{"validate", "-f", exampleSpec, "--hardware-csv", exampleCSV, "extra"}, ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, out, errOut := run(t, tt.args...); code != tt.want {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.want, out, errOut)
			}
		})
	}
}

func TestValidateThreeBadRows(t *testing.T) {
	code, out, _ := run(t, "validate", "-f", exampleSpec, "--hardware-csv", threeBadCSV)
	if code != ExitInvalidInput {
		t.Fatalf("exit %d", code)
	}
	var errLines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "✗ ") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 3 {
		t.Fatalf("want three error lines, got:\n%s", out)
	}
	for i, want := range []string{"three-bad-rows.csv:3: column mac", "three-bad-rows.csv:4: column netmask", "three-bad-rows.csv:6: column disk"} {
		if !strings.Contains(errLines[i], want) {
			t.Errorf("error line %d = %q, want it to contain %q", i, errLines[i], want)
		}
	}

	code, out, _ = run(t, "validate", "-f", exampleSpec, "--hardware-csv", threeBadCSV, "-o", "json")
	if code != ExitInvalidInput {
		t.Fatalf("json: exit %d", code)
	}
	var problems []map[string]any
	if err := json.Unmarshal([]byte(out), &problems); err != nil {
		t.Fatalf("-o json output is not a JSON array: %v\n%s", err, out)
	}
	if len(problems) != 3 {
		t.Fatalf("want 3 problems, got %d: %s", len(problems), out)
	}
	for i, want := range []struct {
		line   float64
		column string
	}{{3, "mac"}, {4, "netmask"}, {6, "disk"}} {
		p := problems[i]
		if p["line"] != want.line || p["column"] != want.column || p["message"] == "" || p["message"] == nil {
			t.Errorf("problem %d = %v, want line %v column %s and a message", i, p, want.line, want.column)
		}
	}
}

func TestValidateJSONShowsDefaults(t *testing.T) {
	code, out, errOut := run(t, "validate", "-f", exampleSpec, "--hardware-csv", exampleCSV, "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		Valid       bool `json:"valid"`
		ClusterSpec struct {
			Cluster struct {
				Metadata struct{ Namespace string }
				Spec     struct {
					MachineHealthCheck struct{ NodeStartupTimeout string }
				}
			}
		}
		Hardware struct {
			Machines []struct {
				Hostname    string `json:"hostname"`
				BMCPassword string `json:"bmcPassword"`
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !got.Valid || got.ClusterSpec.Cluster.Metadata.Namespace != "default" || got.ClusterSpec.Cluster.Spec.MachineHealthCheck.NodeStartupTimeout != "20m0s" || len(got.Hardware.Machines) != 5 {
		t.Errorf("defaults or inventory missing from -o json: %+v", got)
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("-o json prints BMC passwords")
	}
}

func TestValidateFromEnvironment(t *testing.T) {
	t.Setenv("KILN_FILENAME", exampleSpec)
	t.Setenv("KILN_HARDWARE_CSV", exampleCSV)
	t.Setenv("KILN_OUTPUT", "json")
	code, out, errOut := run(t, "validate")
	if code != ExitOK || !strings.HasPrefix(out, "{") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
