package hook

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/initramfs"
)

// fakeBzImage returns bytes with a setup header whose version string is v.
func fakeBzImage(v string) []byte {
	b := make([]byte, 0x400)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x20e:], 0x100) // string at 0x300
	copy(b[0x300:], v+" (debian-kernel@lists.debian.org) #1 SMP\x00")
	return b
}

func TestKernelVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		img  []byte
		want string
		err  string
	}{
		{"debian", fakeBzImage("6.1.0-56-amd64"), "6.1.0-56-amd64", ""},
		{"not a bzImage", make([]byte, 0x400), "", "HdrS"},
		{"too short", []byte("MZ"), "", "header"},
		{"path in version", fakeBzImage("../../etc"), "", "not usable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := KernelVersion(bytes.NewReader(tc.img))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v; want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("KernelVersion = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// The installed Debian kernel, when present, must agree with its file name.
	if k, err := FindKernel("/boot"); err == nil {
		f, err := os.Open(k)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		v, err := KernelVersion(f)
		if err != nil || filepath.Base(k) != "vmlinuz-"+v {
			t.Fatalf("KernelVersion(%s) = %q, %v", k, v, err)
		}
	}
}

func TestVersionLess(t *testing.T) {
	for _, p := range [][2]string{{"vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-56-amd64"}, {"vmlinuz-5.10.0", "vmlinuz-6.1.0"}, {"a", "ab"}} {
		if !versionLess(p[0], p[1]) || versionLess(p[1], p[0]) {
			t.Errorf("order of %q < %q wrong", p[0], p[1])
		}
	}
}

func staticBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if CheckStatic(p) == nil {
			return p
		}
	}
	t.Skip("no static busybox (apt-get install busybox-static)")
	return ""
}

func TestCheckStatic(t *testing.T) {
	staticBinary(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	real, _ := filepath.EvalSymlinks(sh)
	if err := CheckStatic(real); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Fatalf("CheckStatic(%s) = %v; want a dynamic-linking error", real, err)
	}
	if err := CheckStatic("/etc/hostname"); err == nil {
		t.Fatal("a text file passed as an executable")
	}
}

func fakeKernelTree(t *testing.T) (kernel, modules string) {
	t.Helper()
	dir := t.TempDir()
	kernel = filepath.Join(dir, "vmlinuz-9.9.9-test")
	if err := os.WriteFile(kernel, fakeBzImage("9.9.9-test"), 0o644); err != nil {
		t.Fatal(err)
	}
	modules = filepath.Join(dir, "modules")
	files := map[string]string{
		"modules.dep":                      "kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio.ko:\nkernel/fs/ext4/ext4.ko:\nkernel/unused.ko:\n",
		"modules.builtin":                  "kernel/drivers/virtio/virtio_pci.ko\n",
		"kernel/drivers/net/virtio_net.ko": "net",
		"kernel/drivers/virtio/virtio.ko":  "virtio",
		"kernel/fs/ext4/ext4.ko":           "ext4",
		"kernel/unused.ko":                 "unused",
	}
	for p, c := range files {
		full := filepath.Join(modules, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return kernel, modules
}

func TestBuild(t *testing.T) {
	init := staticBinary(t)
	kernel, modules := fakeKernelTree(t)
	ctx := context.Background()
	build := func(out string, mods []string, skip bool) (*Result, error) {
		return Build(ctx, Options{Kernel: kernel, ModulesDir: modules, Init: init, Modules: mods, SkipMissing: skip, CACerts: "-", OutputDir: out})
	}
	out := t.TempDir()
	res, err := build(out, []string{"virtio_net", "virtio_pci", "ext4"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.KernelVersion != "9.9.9-test" || filepath.Base(res.Kernel) != "vmlinuz-x86_64" || filepath.Base(res.Initramfs) != "initramfs-x86_64" {
		t.Fatalf("result = %+v", res)
	}
	if strings.Join(res.Modules, ",") != "virtio,virtio_net,ext4" {
		t.Fatalf("modules = %v", res.Modules)
	}
	f, err := os.Open(res.Initramfs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := initramfs.Read(zr, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]initramfs.Entry{}
	for _, e := range entries {
		got[e.Name] = e
	}
	for _, want := range []string{"init", "dev/console", "proc", "sys", "tmp", "lib/modules/9.9.9-test/kernel/fs/ext4/ext4.ko", "lib/modules/9.9.9-test/modules.dep", ModuleListPath} {
		if _, ok := got[want]; !ok {
			t.Errorf("initramfs lacks %s", want)
		}
	}
	if _, ok := got["lib/modules/9.9.9-test/kernel/unused.ko"]; ok {
		t.Error("initramfs carries a module nobody asked for")
	}
	if e := got["init"]; e.Mode&0o111 == 0 || e.Size == 0 {
		t.Errorf("/init = %+v; want a non-empty executable", e)
	}
	if l := string(got[ModuleListPath].Data); !strings.Contains(l, "kernel/drivers/virtio/virtio.ko\nkernel/drivers/net/virtio_net.ko\n") {
		t.Errorf("module list not in dependency order:\n%s", l)
	}

	// Reproducible: a second build is byte-identical.
	res2, err := build(t.TempDir(), []string{"virtio_net", "virtio_pci", "ext4"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res2.InitramfsSHA256 != res.InitramfsSHA256 {
		t.Fatal("two builds of the same inputs differ")
	}

	// Unknown modules fail the build, or are reported with SkipMissing.
	if _, err := build(t.TempDir(), []string{"e1000"}, false); err == nil || !strings.Contains(err.Error(), "e1000") {
		t.Fatalf("unknown module error = %v", err)
	}
	res3, err := build(t.TempDir(), []string{"e1000", "ext4"}, true)
	if err != nil || strings.Join(res3.MissingModules, ",") != "e1000" {
		t.Fatalf("SkipMissing: %v, missing = %v", err, res3)
	}
}

func FuzzKernelVersion(f *testing.F) {
	f.Add(fakeBzImage("6.1.0-56-amd64"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := KernelVersion(bytes.NewReader(b))
		if err == nil && (v == "" || strings.ContainsAny(v, "/ \x00")) {
			t.Fatalf("accepted version %q", v)
		}
	})
}
