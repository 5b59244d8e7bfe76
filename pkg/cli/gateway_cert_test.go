package cli

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
)

func TestGatewayGenCert(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	run := func(args ...string) (int, string) {
		var stderr strings.Builder
		code := Run(context.Background(), append([]string{"gateway", "gen-cert"}, args...), strings.NewReader(""), io.Discard, &stderr)
		return code, stderr.String()
	}
	if code, out := run(cert, key, "--days", "30"); code != ExitOK {
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
	if code, out := run(cert, key); code == ExitOK || !strings.Contains(out, "already exists") || !strings.Contains(out, "--force") {
		t.Errorf("overwrite without --force: exit %d: %s", code, out)
	}
	if code, out := run(cert, key, "--force"); code != ExitOK {
		t.Errorf("--force: exit %d: %s", code, out)
	}
	if code, out := run(cert); code != ExitUsage {
		t.Errorf("one argument: exit %d: %s", code, out)
	}
}

func TestGatewayRunHybridFlagErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cluster.crt"), filepath.Join(dir, "cluster.key")
	if code := Run(context.Background(), []string{"gateway", "gen-cert", cert, key}, strings.NewReader(""), io.Discard, io.Discard); code != ExitOK {
		t.Fatal("gen-cert failed")
	}
	certs := []string{"--cluster-cert", cert, "--cluster-cert-key", key}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown role", []string{"--role", "edge"}, ExitUsage, `--role "edge"`},
		{"data plane with a database", append([]string{"--role", "data_plane", "--database", "sqlite"}, certs...), ExitUsage, "--role data_plane needs --database off"},
		{"control plane without a database", append([]string{"--role", "control_plane", "--database", "off"}, certs...), ExitUsage, "--role control_plane needs a database"},
		{"missing certificate", []string{"--role", "data_plane", "--database", "off"}, ExitUsage, "--cluster-cert and --cluster-cert-key"},
		{"bad mTLS mode", append([]string{"--role", "data_plane", "--database", "off", "--cluster-mtls", "none"}, certs...), ExitUsage, "--cluster-mtls"},
		{"pki without CA", append([]string{"--role", "data_plane", "--database", "off", "--cluster-mtls", "pki"}, certs...), ExitUsage, "--cluster-ca-cert"},
		{"bad labels", append([]string{"--role", "data_plane", "--database", "off", "--cluster-dp-labels", "novalue"}, certs...), ExitUsage, "--cluster-dp-labels"},
		{"short purge delay", append([]string{"--role", "control_plane", "--cluster-data-plane-purge-delay", "59"}, certs...), ExitUsage, "--cluster-data-plane-purge-delay 59"},
		{"bad control plane address", append([]string{"--role", "data_plane", "--database", "off", "--cluster-control-plane", "cp"}, certs...), ExitUsage, "--cluster-control-plane"},
		{"unreadable certificate", []string{"--role", "data_plane", "--database", "off", "--cluster-cert", filepath.Join(dir, "missing.crt"), "--cluster-cert-key", key}, ExitInvalidInput, "--cluster-cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			code := Run(context.Background(), append([]string{"gateway", "run", "--proxy-access-log", "off"}, tt.args...), strings.NewReader(""), io.Discard, &stderr)
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
