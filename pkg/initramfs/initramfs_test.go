package initramfs

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func sample(t *testing.T) *Archive {
	t.Helper()
	src := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := New()
	for _, err := range []error{
		a.File("init", src, 0),
		a.Bytes("etc/kiln/modules", 0o644, []byte("virtio_net\n")),
		a.Dir("proc", 0o555),
		a.CharDev("dev/console", 0o600, 5, 1),
		a.Symlink("bin/sh", "../init"),
		a.Bytes("lib/modules/6.1.0/kernel/a.ko", 0o644, []byte("x")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func TestRoundTripAndParents(t *testing.T) {
	a := sample(t)
	var buf bytes.Buffer
	if err := a.WriteCPIO(&buf); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%512 != 0 {
		t.Fatalf("archive length %d is not a multiple of 512", buf.Len())
	}
	entries, err := Read(&buf, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string]Entry{}
	for _, e := range entries {
		names = append(names, e.Name)
		byName[e.Name] = e
	}
	want := "bin bin/sh dev dev/console etc etc/kiln etc/kiln/modules init lib lib/modules lib/modules/6.1.0 lib/modules/6.1.0/kernel lib/modules/6.1.0/kernel/a.ko proc"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("entries = %s\nwant      %s", got, want)
	}
	if e := byName["init"]; !e.IsRegular || e.Mode&0o777 != 0o755 || string(e.Data) != "#!/bin/sh\necho hi\n" {
		t.Fatalf("init = %+v", e)
	}
	if e := byName["dev/console"]; e.Mode&0o170000 != 0o020000 || e.RDevMaj != 5 || e.RDevMin != 1 {
		t.Fatalf("dev/console = %+v", e)
	}
	if e := byName["bin/sh"]; !e.IsLink || string(e.Data) != "../init" {
		t.Fatalf("bin/sh = %+v", e)
	}
	if e := byName["proc"]; !e.IsDir || e.Mode&0o777 != 0o555 {
		t.Fatalf("proc = %+v", e)
	}
}

func TestReproducible(t *testing.T) {
	var a, b bytes.Buffer
	if err := sample(t).WriteGzip(&a); err != nil {
		t.Fatal(err)
	}
	if err := sample(t).WriteGzip(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two builds of the same archive differ")
	}
	zr, err := gzip.NewReader(&a)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() && zr.ModTime.Unix() != 0 {
		t.Fatalf("gzip header carries name %q / time %v", zr.Name, zr.ModTime)
	}
	if _, err := Read(zr, 0); err != nil {
		t.Fatal(err)
	}
}

// TestGNUCpioReadsIt checks the stream against cpio(1) when it is installed.
func TestGNUCpioReadsIt(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	var buf bytes.Buffer
	if err := sample(t).WriteCPIO(&buf); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-i", "-d", "--no-absolute-filenames", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = &buf
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil && !strings.Contains(stderr.String(), "console") {
		// Creating device nodes may be refused in unprivileged sandboxes; anything else is a failure.
		t.Fatalf("cpio -i: %v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "etc/kiln/modules"))
	if err != nil || string(b) != "virtio_net\n" {
		t.Fatalf("extracted etc/kiln/modules = %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != "../init" {
		t.Fatalf("extracted bin/sh → %q, %v", l, err)
	}
}

func TestAddErrors(t *testing.T) {
	a := New()
	if err := a.Bytes("x", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Bytes("x", 0o644, nil); err == nil {
		t.Error("adding a file twice succeeded")
	}
	if err := a.Bytes("x/y", 0o644, nil); err == nil {
		t.Error("a file below a file was accepted")
	}
	if err := a.Dir("/", 0o755); err == nil {
		t.Error("an empty path was accepted")
	}
	if err := a.File("y", filepath.Join(t.TempDir(), "missing"), 0); err == nil {
		t.Error("a missing source file was accepted")
	}
}

func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	a := New()
	_ = a.Bytes("a/b", 0o644, []byte("hello"))
	_ = a.Symlink("c", "a/b")
	_ = a.WriteCPIO(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte("070701"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, _ := Read(bytes.NewReader(b), 1<<16)
		for _, e := range entries {
			if int64(len(e.Data)) > e.Size {
				t.Fatalf("entry %q has more data than its size", e.Name)
			}
		}
		_, _ = io.Copy(io.Discard, bytes.NewReader(b))
	})
}
