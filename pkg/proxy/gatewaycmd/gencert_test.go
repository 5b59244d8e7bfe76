package gatewaycmd

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/exitcode"
)

func TestGatewayGenCert(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	run := func(args ...string) (int, string) {
		var stderr strings.Builder
		code := runProgram(context.Background(), append([]string{"gen-cert"}, args...), io.Discard, &stderr)
		return code, stderr.String()
	}
	if code, out := run(cert, key, "--days", "30"); code != exitcode.OK {
		t.Fatalf("gen-cert: exit %d: %s", code, out)
	}
	data, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "kong_clustering" || c.NotAfter.Sub(time.Now()) > 31*24*time.Hour {
		t.Errorf("certificate CN %q, valid until %s", c.Subject.CommonName, c.NotAfter)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", st, err)
	}
	if code, out := run(cert, key); code == exitcode.OK || !strings.Contains(out, "already exists") || !strings.Contains(out, "--force") {
		t.Errorf("overwrite without --force: exit %d: %s", code, out)
	}
	if code, out := run(cert, key, "--force"); code != exitcode.OK {
		t.Errorf("--force: exit %d: %s", code, out)
	}
	if code, out := run(cert); code != exitcode.Usage {
		t.Errorf("one argument: exit %d: %s", code, out)
	}
}

func TestGatewayRunHybridFlagErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cluster.crt"), filepath.Join(dir, "cluster.key")
	if code := runProgram(context.Background(), []string{"gen-cert", cert, key}, io.Discard, io.Discard); code != exitcode.OK {
		t.Fatal("gen-cert failed")
	}
	certs := []string{"--cluster-cert", cert, "--cluster-cert-key", key}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown role", []string{"--role", "edge"}, exitcode.Usage, `--role "edge"`},
		{"data plane with a database", append([]string{"--role", "data_plane", "--database", "sqlite"}, certs...), exitcode.Usage, "--role data_plane needs --database off"},
		{"control plane without a database", append([]string{"--role", "control_plane", "--database", "off"}, certs...), exitcode.Usage, "--role control_plane needs a database"},
		{"missing certificate", []string{"--role", "data_plane", "--database", "off"}, exitcode.Usage, "--cluster-cert and --cluster-cert-key"},
		{"bad mTLS mode", append([]string{"--role", "data_plane", "--database", "off", "--cluster-mtls", "none"}, certs...), exitcode.Usage, "--cluster-mtls"},
		{"pki without CA", append([]string{"--role", "data_plane", "--database", "off", "--cluster-mtls", "pki"}, certs...), exitcode.Usage, "--cluster-ca-cert"},
		{"bad labels", append([]string{"--role", "data_plane", "--database", "off", "--cluster-dp-labels", "novalue"}, certs...), exitcode.Usage, "--cluster-dp-labels"},
		{"short purge delay", append([]string{"--role", "control_plane", "--cluster-data-plane-purge-delay", "59"}, certs...), exitcode.Usage, "--cluster-data-plane-purge-delay 59"},
		{"bad control plane address", append([]string{"--role", "data_plane", "--database", "off", "--cluster-control-plane", "cp"}, certs...), exitcode.Usage, "--cluster-control-plane"},
		{"unreadable certificate", []string{"--role", "data_plane", "--database", "off", "--cluster-cert", filepath.Join(dir, "missing.crt"), "--cluster-cert-key", key}, exitcode.InvalidInput, "--cluster-cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			code := runProgram(context.Background(), append([]string{"run", "--proxy-access-log", "off"}, tt.args...), io.Discard, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d (want %d): %s (want %q)", code, tt.code, stderr.String(), tt.want)
			}
		})
	}
}

// TestGatewayRunClusteringOnTraditionalNode: /clustering/* answer 400 on a
// node that is not a control plane, as Kong's do.
func TestGatewayRunClusteringOnTraditionalNode(t *testing.T) {
	_, admin, _ := startGatewayCLI(t, "--database", "off")
	for _, p := range []string{"/clustering/data-planes", "/clustering/status"} {
		resp, err := http.Get(admin + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "Control Plane") {
			t.Errorf("GET %s: %d %s", p, resp.StatusCode, body)
		}
	}
}
