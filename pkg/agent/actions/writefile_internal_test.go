package actions

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteIntoStaysInsideTheFileSystem checks that DEST_PATH, "..", and
// symbolic links in the target file system cannot make writefile write
// outside the mounted partition.
func TestWriteIntoStaysInsideTheFileSystem(t *testing.T) {
	outside := t.TempDir()
	mnt := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(mnt, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(mnt, "abs")); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	for _, dest := range []string{"/escape/owned", "/abs/kn4-owned", "escape/sub/owned"} {
		if err := writeInto(mnt, dest, []byte("x"), 0o644, 0o755, uid, gid); err == nil {
			t.Errorf("DEST_PATH %s through a symlink out of the file system was written", dest)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("files written outside the mount: %v", entries)
	}
	if _, err := os.Stat("/etc/kn4-owned"); err == nil {
		t.Fatal("wrote into the host's /etc")
	}
	// ".." is cleaned against the root of the file system.
	if err := writeInto(mnt, "/../../inside/file", []byte("ok"), 0o600, 0o700, uid, gid); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "inside/file"))
	if err != nil || string(got) != "ok" {
		t.Fatalf("inside/file = %q, %v", got, err)
	}
	fi, _ := os.Stat(filepath.Join(mnt, "inside"))
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("created directory mode %v, want DIRMODE 0700", fi.Mode().Perm())
	}
	if err := writeInto(mnt, "/", nil, 0o644, 0o755, uid, gid); err == nil || !strings.Contains(err.Error(), "root directory") {
		t.Errorf("DEST_PATH / : %v", err)
	}
}
