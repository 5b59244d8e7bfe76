package gatewaycmd

import (
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/depcheck"
	"github.com/kiln-dev/kiln/pkg/exitcode"
)

// TestProgramCommandLine: kiln-gateway on its own answers a wrong command
// line with exit code 2 and says what is wrong, reads KILN_* variables as
// flags, and prints its version.
func TestProgramCommandLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"unknown command", []string{"serve"}, nil, exitcode.Usage, `unknown command "serve" for "kiln-gateway"`},
		{"unknown flag", []string{"run", "--no-such-flag"}, nil, exitcode.Usage, "unknown flag: --no-such-flag"},
		{"bad flag value", []string{"run", "--pg-port", "x"}, nil, exitcode.Usage, `invalid argument "x" for "--pg-port"`},
		{"bad database", []string{"run", "--database", "mysql"}, nil, exitcode.Usage, `--database "mysql" is not supported`},
		{"bad database from the environment", []string{"run"}, map[string]string{"KILN_DATABASE": "mysql"}, exitcode.Usage, `--database "mysql" is not supported`},
		{"gen-cert with one file", []string{"gen-cert", "only.crt"}, nil, exitcode.Usage, "both CERT_FILE and KEY_FILE"},
		{"version", []string{"--version"}, nil, exitcode.OK, "kiln-gateway version "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errOut strings.Builder
			code := Run(context.Background(), append([]string{"kiln-gateway"}, tc.args...), Streams{Out: &out, Err: &errOut})
			if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.want) {
				t.Fatalf("kiln-gateway %v: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, out.String(), errOut.String(), tc.code, tc.want)
			}
		})
	}
	if code := Run(context.Background(), []string{"kiln-gateway"}, Streams{Out: io.Discard, Err: io.Discard}); code != exitcode.OK {
		t.Errorf("kiln-gateway without a command (help): exit %d", code)
	}
}

// TestSlimBinaryDependencies: cmd/kiln-gateway is the data plane's image
// and must not link kiln's provisioning code or Kubernetes.
func TestSlimBinaryDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	forbidden := []string{"k8s.io", "sigs.k8s.io", "go.etcd.io", "github.com/tinkerbell", "github.com/bmc-toolbox",
		"github.com/kiln-dev/kiln/pkg/cli", "github.com/kiln-dev/kiln/pkg/bootstrap", "github.com/kiln-dev/kiln/pkg/agent",
		"github.com/kiln-dev/kiln/pkg/netboot", "github.com/kiln-dev/kiln/pkg/capi", "github.com/kiln-dev/kiln/pkg/pivot"}
	found, err := depcheck.Check(ctx, "github.com/kiln-dev/kiln/cmd/kiln-gateway", forbidden)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range found {
		t.Errorf("cmd/kiln-gateway depends on %s; keep the gateway binary free of %s", v.Dep, v.Forbidden)
	}
	// The list is real: it names the proxy server.
	if server, err := depcheck.Check(ctx, "github.com/kiln-dev/kiln/cmd/kiln-gateway", []string{"github.com/kiln-dev/kiln/pkg/proxy/server"}); err != nil || len(server) == 0 {
		t.Errorf("go list -deps ./cmd/kiln-gateway does not list the proxy server (%v)", err)
	}
}
