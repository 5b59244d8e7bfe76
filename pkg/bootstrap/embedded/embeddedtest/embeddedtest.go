// Package embeddedtest lets a test binary host embedded control planes: the
// test binary re-executes itself as the control-plane child, exactly as the
// kiln binary does with its hidden internal subcommand.
package embeddedtest

import (
	"context"
	"os"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kiln-dev/kiln/pkg/bootstrap"
	"github.com/kiln-dev/kiln/pkg/bootstrap/embedded"
	"github.com/kiln-dev/kiln/pkg/bootstrap/embedded/controlplane"
	"github.com/kiln-dev/kiln/pkg/crds"
	"github.com/kiln-dev/kiln/pkg/kubeclient"
)

const childEnv = "KILN_EMBEDDEDTEST_CONTROLPLANE"

// MaybeRunChild must be the first call in TestMain: in the re-executed child
// it serves the control plane and exits; in the test process it returns.
func MaybeRunChild() {
	if os.Getenv(childEnv) != "1" {
		return
	}
	os.Exit(controlplane.Run(os.Args[len(os.Args)-1], os.Stderr))
}

// Provider returns an embedded provider that re-executes the test binary.
func Provider(t testing.TB) *embedded.Provider {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &embedded.Provider{Command: []string{exe}, Env: []string{childEnv + "=1"}, StartTimeout: 4 * time.Minute}
}

// Start creates an embedded control plane named name in a temporary
// directory, installs kiln's CRDs and inventory, and deletes it when the
// test ends. It returns the cluster and a client with the CRD types.
func Start(t testing.TB, name string) (*bootstrap.Cluster, client.WithWatch) {
	t.Helper()
	ctx := context.Background()
	p := Provider(t)
	cfg := bootstrap.Config{Name: name, Dir: t.TempDir()}
	start := time.Now()
	cl, err := p.Create(ctx, cfg)
	if err != nil {
		t.Fatalf("starting embedded control plane %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := p.Delete(context.Background(), cfg); err != nil {
			t.Errorf("deleting embedded control plane %s: %v", name, err)
		}
	})
	t.Logf("embedded control plane %s ready in %s at %s", name, time.Since(start).Round(time.Millisecond), cl.Endpoint)
	c := Client(t, cl.Kubeconfig)
	if err := crds.Install(ctx, c); err != nil {
		t.Fatalf("installing CRDs into %s: %v", name, err)
	}
	return cl, c
}

// Client returns a controller-runtime client with kiln's kinds for kubeconfig.
func Client(t testing.TB, kubeconfig string) client.WithWatch {
	t.Helper()
	c, err := kubeclient.New(kubeconfig, kubeclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
