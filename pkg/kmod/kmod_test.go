package kmod

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const dep = `kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/nvme/host/nvme-core.ko.xz:
kernel/drivers/nvme/host/nvme.ko.xz: kernel/drivers/nvme/host/nvme-core.ko.xz
kernel/a.ko: kernel/b.ko
kernel/b.ko: kernel/a.ko
kernel/c.ko: kernel/missing.ko
`

func tree(t *testing.T) *Index {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/net/packet/af_packet.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ix, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestResolve(t *testing.T) {
	ix := tree(t)
	for _, tc := range []struct {
		names []string
		want  string
		err   string
	}{
		{[]string{"virtio_net"}, "failover net_failover virtio_ring virtio virtio_net", ""},
		{[]string{"virtio_net", "virtio-pci"}, "failover net_failover virtio_ring virtio virtio_net virtio_pci_modern_dev virtio_pci", ""},
		{[]string{"nvme", "af_packet"}, "nvme_core nvme", ""},
		{[]string{"e1000", "virtio_net", "zzz"}, "", "e1000, zzz"},
		{[]string{"a"}, "", "cycle"},
		{[]string{"c"}, "", "missing.ko"},
	} {
		got, err := ix.Resolve(tc.names...)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Resolve(%v) error = %v; want %q", tc.names, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Resolve(%v): %v", tc.names, err)
		}
		var names []string
		for _, p := range got {
			names = append(names, Name(p))
		}
		if strings.Join(names, " ") != tc.want {
			t.Errorf("Resolve(%v) = %v; want %s", tc.names, names, tc.want)
		}
	}
	if !ix.Builtin("af-packet") {
		t.Error("af_packet not seen as built in")
	}
}

func TestParseDepErrors(t *testing.T) {
	for _, in := range []string{"no colon here\n", "a.ko: b.ko\na.ko:\n", ": x.ko\n"} {
		if _, err := ParseDep(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "line") {
			t.Errorf("ParseDep(%q) error = %v; want one naming the line", in, err)
		}
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "depmod") {
		t.Fatalf("Load of an empty dir = %v", err)
	}
}

// TestHostKernel resolves the lab's driver set against the installed kernel.
func TestHostKernel(t *testing.T) {
	dirs, _ := filepath.Glob("/lib/modules/*/modules.dep")
	if len(dirs) == 0 {
		t.Skip("no kernel module tree installed (apt-get install linux-image-amd64)")
	}
	ix, err := Load(filepath.Dir(dirs[0]))
	if err != nil {
		t.Fatal(err)
	}
	paths, err := ix.Resolve("virtio_net", "virtio_blk", "virtio_pci", "e1000", "ahci", "nvme", "ext4")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if _, err := os.Stat(filepath.Join(ix.Dir, p)); err != nil {
			t.Errorf("resolved module file missing: %v", err)
		}
	}
}

func FuzzParseDep(f *testing.F) {
	f.Add(dep)
	f.Add("x.ko:\n# comment\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		deps, err := ParseDep(strings.NewReader(s))
		if err != nil {
			return
		}
		for m := range deps {
			if m == "" || strings.ContainsAny(m, " \t") {
				t.Fatalf("accepted module path %q", m)
			}
		}
	})
}
