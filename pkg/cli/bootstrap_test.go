package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tinkv1 "github.com/tinkerbell/tink/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kiln-dev/kiln/pkg/kubeclient"
)

// TestMain lets this test binary stand in for the kiln binary when the
// embedded provider re-executes itself as `kiln internal controlplane DIR`.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == internalControlPlaneArgs[0] && os.Args[2] == internalControlPlaneArgs[1] {
		os.Exit(Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestBootstrapEmbeddedCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t")
	args := func(extra ...string) []string {
		return append([]string{"bootstrap", extra[0], "--name", "t", "--dir", dir}, extra[1:]...)
	}
	t.Cleanup(func() { run(t, args("delete", "--bootstrap", "embedded")...) })

	code, out, errOut := run(t, args("create", "--bootstrap", "embedded")...)
	if code != ExitOK {
		t.Fatalf("create: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"✓ bootstrap provider embedded", "✓ start embedded bootstrap cluster", "✓ install CRDs and clusterctl provider inventory", "bootstrap.kubeconfig"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	// status with --bootstrap auto finds the recorded provider.
	code, out, errOut = run(t, args("status", "-o", "json")...)
	if code != ExitOK {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	var st struct {
		Provider         string
		Running, Healthy bool
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Provider != "embedded" || !st.Running || !st.Healthy {
		t.Fatalf("status json %q: %+v %v", out, st, err)
	}
	if code, out, errOut = run(t, args("delete")...); code != ExitOK || !strings.Contains(out, "✓ delete embedded bootstrap cluster t") {
		t.Fatalf("delete: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "generated", "bootstrap")); !os.IsNotExist(err) {
		t.Errorf("data left after delete: %v", err)
	}
	if code, _, errOut = run(t, args("delete")...); code != ExitOK {
		t.Fatalf("second delete: exit %d %s", code, errOut)
	}
	if code, _, _ = run(t, args("status")...); code != ExitInvalidInput {
		t.Errorf("status of a deleted cluster: exit %d, want %d", code, ExitInvalidInput)
	}
}

func TestBootstrapUsageErrors(t *testing.T) {
	for _, a := range [][]string{
		{"bootstrap", "create"},
		{"bootstrap", "create", "--name", "x", "--bootstrap", "docker"},
		{"bootstrap", "status", "--name", "x", "-o", "yaml"},
	} {
		if code, _, _ := run(t, a...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", a, code, ExitUsage)
		}
	}
}

func TestGenerateCAPI(t *testing.T) {
	code, out, errOut := run(t, "generate", "capi", "-f", exampleSpec, "--hardware-csv", exampleCSV)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want, err := os.ReadFile("../capi/testdata/example.golden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("generate capi output differs from pkg/capi/testdata/example.golden.yaml")
	}
	if code, _, errOut := run(t, "generate", "capi", "-f", exampleSpec, "--hardware-csv", threeBadCSV); code != ExitInvalidInput || !strings.Contains(errOut, "✗ ") {
		t.Errorf("invalid CSV: exit %d, stderr %s", code, errOut)
	}
	if code, _, _ := run(t, "generate", "capi", "--hardware-csv", exampleCSV); code != ExitUsage {
		t.Errorf("missing -f: exit %d", code)
	}
}

// TestBootstrapMove creates two embedded bootstrap clusters with the CLI and
// moves a Hardware (a kind clusterctl always moves) from one to the other.
func TestBootstrapMove(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	for _, d := range []string{src, dst} {
		t.Cleanup(func() { run(t, "bootstrap", "delete", "--name", filepath.Base(d), "--dir", d) })
		if code, out, errOut := run(t, "bootstrap", "create", "--name", filepath.Base(d), "--dir", d, "--bootstrap", "embedded"); code != ExitOK {
			t.Fatalf("create %s: exit %d\n%s%s", d, code, out, errOut)
		}
	}
	ctx := context.Background()
	from, err := kubeclient.New(filepath.Join(src, "generated", "bootstrap.kubeconfig"), kubeclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	to, err := kubeclient.New(filepath.Join(dst, "generated", "bootstrap.kubeconfig"), kubeclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := from.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "eksa-system"}}); err != nil {
		t.Fatal(err)
	}
	hw := &tinkv1.Hardware{ObjectMeta: metav1.ObjectMeta{Name: "cp01", Namespace: "eksa-system", Labels: map[string]string{"type": "cp"}}}
	if err := from.Create(ctx, hw); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, "bootstrap", "move", "--name", "src", "--dir", src, "--to-kubeconfig", filepath.Join(dst, "generated", "bootstrap.kubeconfig"), "-o", "json")
	if code != ExitOK {
		t.Fatalf("move: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, `"name": "cp01"`) || !strings.Contains(errOut, "✓ verify every moved object arrived") {
		t.Errorf("move output:\n%s\n%s", out, errOut)
	}
	key := client.ObjectKeyFromObject(hw)
	if err := to.Get(ctx, key, &tinkv1.Hardware{}); err != nil {
		t.Errorf("Hardware not on the target: %v", err)
	}
	if err := from.Get(ctx, key, &tinkv1.Hardware{}); !apierrors.IsNotFound(err) {
		t.Errorf("Hardware left on the source: %v", err)
	}
	if code, _, errOut := run(t, "bootstrap", "move", "--name", "src", "--dir", src, "--to-kubeconfig", filepath.Join(base, "missing.kubeconfig")); code != ExitInvalidInput || !strings.Contains(errOut, "target cluster") {
		t.Errorf("move to a missing kubeconfig: exit %d %s", code, errOut)
	}
}
