package kubeclient_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/kubeclient"
)

func TestNew(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.kubeconfig")
	if _, err := kubeclient.New(missing, kubeclient.Options{}); err == nil || !strings.Contains(err.Error(), "reading kubeconfig "+missing) {
		t.Fatalf("missing kubeconfig: %v", err)
	}
	bad := filepath.Join(dir, "bad.kubeconfig")
	if err := os.WriteFile(bad, []byte("clusters: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kubeclient.New(bad, kubeclient.Options{}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("unparsable kubeconfig: %v", err)
	}
	good := filepath.Join(dir, "good.kubeconfig")
	if err := os.WriteFile(good, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := kubeclient.New(good, kubeclient.Options{QPS: 50, Burst: 100})
	if err != nil || c == nil {
		t.Fatalf("valid kubeconfig: %v", err)
	}
}
