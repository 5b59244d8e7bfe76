package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	code, out, errOut := run(t, "version", "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var info map[string]string
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("version -o json: %v\n%s", err, out)
	}
	for _, k := range []string{"version", "commit", "buildDate", "goVersion"} {
		if _, ok := info[k]; !ok {
			t.Errorf("version -o json lacks %q: %s", k, out)
		}
	}
	if info["goVersion"] == "" || info["version"] == "" {
		t.Errorf("empty version or Go version: %s", out)
	}
	code, out, _ = run(t, "version")
	if code != ExitOK || !strings.HasPrefix(out, "kiln ") || !strings.Contains(out, "commit:") {
		t.Errorf("version text = %q", out)
	}
}

func TestGlobalVerbosityAndEnvironment(t *testing.T) {
	if code, _, errOut := run(t, "-v", "2", "version"); code != ExitOK {
		t.Errorf("-v 2: exit %d: %s", code, errOut)
	}
	t.Setenv("KILN_VERBOSITY", "loud")
	code, _, errOut := run(t, "version")
	if code != ExitUsage || !strings.Contains(errOut, "KILN_VERBOSITY") {
		t.Errorf("bad KILN_VERBOSITY: exit %d, stderr %q", code, errOut)
	}
	// A flag on the command line wins over its environment variable.
	t.Setenv("KILN_VERBOSITY", "1")
	t.Setenv("KILN_OUTPUT", "yaml")
	if code, out, errOut := run(t, "version", "-o", "json"); code != ExitOK || !strings.HasPrefix(out, "{") {
		t.Errorf("-o json with KILN_OUTPUT=yaml: exit %d, %q %q", code, out, errOut)
	}
	if EnvName("hardware-csv") != "KILN_HARDWARE_CSV" {
		t.Errorf("EnvName = %s", EnvName("hardware-csv"))
	}
}

// TestGatewayCommandWired: `kiln gateway` is the gateway's command line
// (pkg/proxy/gatewaycmd), with its exit codes and KILN_* variables.
func TestGatewayCommandWired(t *testing.T) {
	code, _, errOut := run(t, "gateway", "run", "--database", "mysql")
	if code != ExitUsage || !strings.Contains(errOut, `--database "mysql" is not supported`) {
		t.Errorf("gateway run --database mysql: exit %d, stderr %q", code, errOut)
	}
	t.Setenv("KILN_EVENT_LOOPS", "-5")
	code, _, errOut = run(t, "gateway", "run", "--database", "off")
	if code != ExitUsage || !strings.Contains(errOut, "--event-loops -5 is not valid") {
		t.Errorf("gateway run with KILN_EVENT_LOOPS=-5: exit %d, stderr %q", code, errOut)
	}
	dir := t.TempDir()
	code, _, errOut = run(t, "gateway", "gen-cert", dir+"/c.crt", dir+"/c.key")
	if code != ExitOK || !strings.Contains(errOut, "✓ cluster certificate") {
		t.Errorf("gateway gen-cert: exit %d, stderr %q", code, errOut)
	}
}
