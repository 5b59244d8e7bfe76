package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestLayout(t *testing.T) {
	l, err := newLayout(64)
	if err != nil {
		t.Fatal(err)
	}
	if l.biosStart+l.biosSize > l.espStart || l.espStart+l.espSize > l.rootStart || l.rootStart+l.rootSize > l.total-2048 {
		t.Fatalf("overlapping layout %+v", l)
	}
	if _, err := newLayout(32); err == nil {
		t.Fatal("a 32 MiB disk was accepted")
	}
}

// TestBuild builds a real image (no boot; e2e/ boots it) and checks the
// partition table, the BIOS boot code patches, the ESP's loader and the root
// file system's files.
func TestBuild(t *testing.T) {
	if err := CheckTools(); err != nil {
		t.Skip(err)
	}
	if _, err := os.Stat("/usr/lib/grub/i386-pc/normal.mod"); err != nil {
		t.Skip("GRUB modules not installed (grub-pc-bin, grub-efi-amd64-bin)")
	}
	if _, err := filepath.Glob("/boot/vmlinuz-*"); err != nil {
		t.Skip("no kernel")
	}
	out := filepath.Join(t.TempDir(), "lab.raw")
	res, err := Build(context.Background(), Options{Output: out, KilnURL: "http://10.0.0.1:7080"})
	if err != nil {
		if strings.Contains(err.Error(), "no kernel") || strings.Contains(err.Error(), "busybox") {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(img)) != res.SizeBytes {
		t.Fatalf("image is %d bytes; result says %d", len(img), res.SizeBytes)
	}
	lay, _ := newLayout(64)
	// Protective MBR with GRUB's boot code pointing at the BIOS boot partition.
	if img[510] != 0x55 || img[511] != 0xaa || img[0x1be+4] != 0xee {
		t.Fatal("no protective MBR")
	}
	if got := binary.LittleEndian.Uint64(img[bootKernelSector:]); got != uint64(lay.biosStart) {
		t.Fatalf("boot.img kernel sector = %d; want %d", got, lay.biosStart)
	}
	core := img[lay.biosStart*sector:]
	if got := binary.LittleEndian.Uint64(core[blocklistStart:]); got != uint64(lay.biosStart+1) {
		t.Fatalf("diskboot blocklist start = %d", got)
	}
	if n := binary.LittleEndian.Uint16(core[blocklistLen:]); n == 0 || int64(n) >= lay.biosSize {
		t.Fatalf("diskboot blocklist length = %d", n)
	}
	// GPT: the three partitions with their types.
	dump, err := exec.Command("sfdisk", "--dump", out).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("start=%d,size=%d,type=%s", lay.espStart, lay.espSize, typeESP),
		fmt.Sprintf("start=%d,size=%d,type=%s", lay.rootStart, lay.rootSize, typeLinux),
		fmt.Sprintf("start=%d,size=%d,type=%s", lay.biosStart, lay.biosSize, typeBIOSBoot),
	} {
		if !strings.Contains(strings.ReplaceAll(string(dump), " ", ""), want) {
			t.Errorf("partition table lacks %q:\n%s", want, dump)
		}
	}
	// The ESP holds the removable-media UEFI loader.
	esp := filepath.Join(t.TempDir(), "esp.img")
	if err := os.WriteFile(esp, img[lay.espStart*sector:(lay.espStart+lay.espSize)*sector], 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("mdir", "-i", esp, "::/EFI/BOOT")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if b, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(bytes.ToUpper(b), []byte("BOOTX64")) {
		t.Fatalf("ESP lacks EFI/BOOT/BOOTX64.EFI: %v\n%s", err, b)
	}
	// The root file system carries kernel, initramfs, grub.cfg and kiln.env.
	fs := fmt.Sprintf("%s?offset=%d", out, res.RootOffset)
	for path, want := range map[string]string{"boot/grub/grub.cfg": "linux /boot/vmlinuz", EnvPath: "KILN_URL=http://10.0.0.1:7080"} {
		b, err := exec.Command("debugfs", "-R", "cat "+path, fs).Output()
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s in the root file system = %q, %v; want it to contain %q", path, b, err, want)
		}
	}
	if b, _ := exec.Command("debugfs", "-R", "ls -l boot", fs).Output(); !bytes.Contains(b, []byte("initrd.img")) || !bytes.Contains(b, []byte("vmlinuz")) {
		t.Errorf("/boot lacks the kernel or initramfs:\n%s", b)
	}
}
