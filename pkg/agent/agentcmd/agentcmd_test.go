package agentcmd

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/depcheck"
	"github.com/kiln-dev/kiln/pkg/exitcode"
)

func TestInitMode(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want bool
	}{
		{[]string{"/init", "console=ttyS0"}, true},
		{[]string{"init"}, true},
		{[]string{"/usr/bin/kiln-agent", "--worker-id", "x"}, false},
		{[]string{"/sbin/initctl"}, false},
		{nil, false},
	} {
		if got := InitMode(tc.argv); got != tc.want {
			t.Errorf("InitMode(%q) = %v, want %v", tc.argv, got, tc.want)
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stderr string
	}{
		{"unknown flag", []string{"--bogus"}, nil, exitcode.Usage, "unknown flag: --bogus"},
		{"positional argument", []string{"now"}, nil, exitcode.Usage, "takes no arguments"},
		{"no worker id", nil, nil, exitcode.InvalidInput, "no worker id"},
		{"no authority", []string{"--worker-id", "aa:bb:cc:dd:ee:ff"}, nil, exitcode.InvalidInput, "grpc"},
		{"worker id from KILN_WORKER_ID", nil, map[string]string{"KILN_WORKER_ID": "aa:bb:cc:dd:ee:ff"}, exitcode.InvalidInput, "grpc"},
		{"bad KILN_TINKERBELL_TLS", nil, map[string]string{"KILN_TINKERBELL_TLS": "maybe"}, exitcode.Usage, "KILN_TINKERBELL_TLS"},
		{"help", []string{"--help"}, nil, exitcode.OK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out, errOut bytes.Buffer
			code := Run(ctx, append([]string{"/usr/bin/kiln-agent"}, tc.args...), &out, &errOut)
			if code != tc.code || !strings.Contains(errOut.String(), tc.stderr) {
				t.Errorf("kiln-agent %q = %d, stderr %q; want %d with %q", tc.args, code, errOut.String(), tc.code, tc.stderr)
			}
		})
	}
}

// TestRunsTheAgent starts the agent against a closed loopback port: it must
// start, log that the worker API is unreachable and stop with its context.
func TestRunsTheAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	Run(ctx, []string{"kiln-agent", "--worker-id", "52:54:00:00:00:01", "--grpc-authority", "127.0.0.1:1", "--temp-dir", t.TempDir()}, &out, &errOut)
	if s := errOut.String(); !strings.Contains(s, "agent started") || !strings.Contains(s, "127.0.0.1:1") {
		t.Errorf("agent output %q: want it started against 127.0.0.1:1", s)
	}
}

// TestSlimBinaryDependencies keeps cmd/kiln-agent slim: it is the in-memory
// OS's /init and must not link kiln's control plane or Kubernetes itself.
func TestSlimBinaryDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH")
	}
	forbidden := []string{"k8s.io/kubernetes", "github.com/kiln-dev/kiln/pkg/cli", "github.com/kiln-dev/kiln/pkg/bootstrap",
		"github.com/kiln-dev/kiln/pkg/capi", "github.com/kiln-dev/kiln/pkg/pivot", "github.com/kiln-dev/kiln/pkg/proxy",
		"sigs.k8s.io/cluster-api", "go.etcd.io/etcd/server"}
	found, err := depcheck.Check(ctx, "github.com/kiln-dev/kiln/cmd/kiln-agent", forbidden)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range found {
		t.Errorf("cmd/kiln-agent depends on %s; keep the agent binary free of %s", v.Dep, v.Forbidden)
	}
}
