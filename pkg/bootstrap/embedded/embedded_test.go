package embedded_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	tinkv1 "github.com/tinkerbell/tink/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kiln-dev/kiln/pkg/bootstrap"
	"github.com/kiln-dev/kiln/pkg/bootstrap/embedded"
	"github.com/kiln-dev/kiln/pkg/bootstrap/embedded/embeddedtest"
	"github.com/kiln-dev/kiln/pkg/crds"
)

func TestMain(m *testing.M) {
	embeddedtest.MaybeRunChild()
	os.Exit(m.Run())
}

func hardware(name string) *tinkv1.Hardware {
	return &tinkv1.Hardware{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"type": "cp"}},
		Spec:       tinkv1.HardwareSpec{Disks: []tinkv1.Disk{{Device: "/dev/sda"}}},
	}
}

// TestLifecycle starts a control plane, uses it through client-go (create,
// list, watch a CRD object), stops it, restarts it on its data directory,
// recovers from a crash and deletes it.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	p := embeddedtest.Provider(t)
	cfg := bootstrap.Config{Name: "kn7-life", Dir: t.TempDir()}
	layout := embedded.LayoutFor(cfg)
	t.Cleanup(func() { _ = p.Delete(context.Background(), cfg) })

	start := time.Now()
	cl, err := p.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cold start (certificates, etcd, kube-apiserver ready): %s", time.Since(start).Round(time.Millisecond))
	if cl.Kubeconfig != filepath.Join(cfg.Dir, "generated", "bootstrap.kubeconfig") || cl.Reused {
		t.Fatalf("unexpected cluster %+v", cl)
	}
	c := embeddedtest.Client(t, cl.Kubeconfig)
	if err := crds.Install(ctx, c); err != nil {
		t.Fatal(err)
	}

	// Watch, create, list.
	w, err := c.Watch(ctx, &tinkv1.HardwareList{}, client.InNamespace("default"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, hardware("cp01")); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		if ev.Type != watch.Added || ev.Object.(*tinkv1.Hardware).Name != "cp01" {
			t.Fatalf("watch event %v %T", ev.Type, ev.Object)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no watch event for the created Hardware")
	}
	w.Stop()
	var list tinkv1.HardwareList
	if err := c.List(ctx, &list, client.InNamespace("default")); err != nil || len(list.Items) != 1 {
		t.Fatalf("list: %v, %d items", err, len(list.Items))
	}

	st, err := p.Status(ctx, cfg)
	if err != nil || !st.Running || !st.Healthy || st.PID == 0 {
		t.Fatalf("status of a running control plane: %+v, %v", st, err)
	}

	// A second create is idempotent and reuses the running control plane.
	again, err := p.Create(ctx, cfg)
	if err != nil || !again.Reused || again.Endpoint != cl.Endpoint {
		t.Fatalf("second create: %+v, %v", again, err)
	}

	// Clean stop, then restart on the same data directory.
	if err := p.Stop(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if st, _ := p.Status(ctx, cfg); st.Running || st.Detail != "stopped" {
		t.Fatalf("status after stop: %+v", st)
	}
	start = time.Now()
	if _, err := p.Create(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("warm restart on existing data: %s", time.Since(start).Round(time.Millisecond))
	c = embeddedtest.Client(t, cl.Kubeconfig)
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "cp01"}, &tinkv1.Hardware{}); err != nil {
		t.Fatalf("Hardware did not survive the restart: %v", err)
	}

	// Crash: the pid file stays behind while the lock is released.
	pid, err := layout.ReadPID()
	if err != nil || pid == 0 {
		t.Fatalf("pid file: %d, %v", pid, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { st, _ := p.Status(ctx, cfg); return !st.Running })
	if st, _ := p.Status(ctx, cfg); st.Healthy || st.PID != 0 || !contains(st.Detail, "stale") {
		t.Fatalf("status after a crash should report a stale control plane: %+v", st)
	}
	if _, err := p.Create(ctx, cfg); err != nil {
		t.Fatalf("create after a crash: %v", err)
	}
	c = embeddedtest.Client(t, cl.Kubeconfig)
	if missing, err := crds.Missing(ctx, c); err != nil || len(missing) == 0 {
		t.Fatalf("stale data should have been removed and a fresh control plane started; missing CRDs %v, %v", missing, err)
	}

	if err := p.Delete(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(layout.Dir); !os.IsNotExist(err) {
		t.Fatalf("data directory still present after delete: %v", err)
	}
	if _, err := os.Stat(cl.Kubeconfig); !os.IsNotExist(err) {
		t.Fatalf("kubeconfig still present after delete: %v", err)
	}
	if err := p.Delete(ctx, cfg); err != nil {
		t.Fatalf("delete is not idempotent: %v", err)
	}
	if st, _ := p.Status(ctx, cfg); st.Exists {
		t.Fatalf("status after delete: %+v", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
