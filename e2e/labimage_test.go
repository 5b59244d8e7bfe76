//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/lab/image"
	"github.com/kiln-dev/kiln/pkg/lab/phonehome"
)

// metadataAndPhoneHome serves an EC2-style hostname and the phone-home
// handler on loopback; QEMU user networking shows it to the guest as
// 10.0.2.2:port.
func metadataAndPhoneHome(t *testing.T, hostname string) (*phonehome.Store, int) {
	t.Helper()
	store, err := phonehome.NewStore("", nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2009-04-04/meta-data/hostname", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, hostname) })
	mux.Handle(phonehome.Path, store)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return store, ln.Addr().(*net.TCPAddr).Port
}

// writeEnv puts etc/kiln/kiln.env into the image's root partition the way
// a workflow's writefile action does, with debugfs on the partition offset.
func writeEnv(t *testing.T, img string, rootOffset int64, content string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "kiln.env")
	if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := fmt.Sprintf("%s?offset=%d", img, rootOffset)
	for _, req := range []string{"mkdir etc/kiln", "rm " + image.EnvPath, "write " + src + " " + image.EnvPath} {
		_ = exec.Command("debugfs", "-w", "-R", req, fs).Run()
	}
	out, err := exec.Command("debugfs", "-R", "cat "+image.EnvPath, fs).Output()
	if err != nil || string(out) != content {
		t.Fatalf("kiln.env in the image = %q, %v", out, err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLabImageBootsFromDisk builds the lab image once and boots a copy of it
// from disk under SeaBIOS and under OVMF; each must take its hostname from
// the metadata service and phone home.
func TestLabImageBootsFromDisk(t *testing.T) {
	t.Parallel() // one single-CPU VM each; they overlap with each other, not with the provisioning test
	ctx := testContext(t, 7*time.Minute)
	dir := t.TempDir()
	built := filepath.Join(dir, "lab.raw")
	start := time.Now()
	res, err := image.Build(ctx, image.Options{Output: built})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lab image: %d MiB raw, kernel %s, built in %s", res.SizeBytes>>20, res.KernelVersion, time.Since(start).Round(100*time.Millisecond))

	for _, fw := range []struct {
		name string
		uefi bool
		mac  string
	}{{"bios", false, "52:54:00:6b:35:01"}, {"uefi", true, "52:54:00:6b:35:02"}} {
		t.Run(fw.name, func(t *testing.T) {
			t.Parallel()
			hostname := "lab-" + fw.name
			store, port := metadataAndPhoneHome(t, hostname)
			disk := filepath.Join(t.TempDir(), "disk.raw")
			copyFile(t, built, disk)
			writeEnv(t, disk, res.RootOffset, fmt.Sprintf("KILN_URL=http://10.0.2.2:%d\n", port))
			args := []string{"-m", "512", "-drive", "file=" + disk + ",format=raw,if=virtio",
				"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,mac=" + fw.mac}
			if fw.uefi {
				vars := filepath.Join(t.TempDir(), "vars.fd")
				copyFile(t, "/usr/share/OVMF/OVMF_VARS_4M.fd", vars)
				args = append(args, "-machine", "q35",
					"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
					"-drive", "if=pflash,format=raw,unit=1,file="+vars)
			} else {
				args = append(args, "-machine", "pc")
			}
			v := startVM(t, ctx, fw.name, args...)
			_, grubAt := v.waitLine(ctx, 0, "GRUB", contains("kiln-lab: GRUB loading the kernel"))
			_, kernelAt := v.waitLine(ctx, 0, "the kernel starting", contains("Linux version"))
			_, initAt := v.waitLine(ctx, 0, "the test OS starting", contains("kiln-lab: booting kernel"))
			rep, err := store.Wait(ctx, func(r phonehome.Report) bool { return true })
			if err != nil {
				t.Fatal(err)
			}
			homeAt := time.Since(v.start)
			if rep.Hostname != hostname || rep.MAC != fw.mac || rep.IP != "10.0.2.15" || rep.Boot != 1 {
				t.Fatalf("phone-home = %+v; want hostname %s, mac %s, ip 10.0.2.15, boot 1", rep, hostname, fw.mac)
			}
			t.Logf("%s: GRUB at %s, kernel at %s, OS init at %s, phoned home at %s", fw.name, grubAt.Round(100*time.Millisecond),
				kernelAt.Round(100*time.Millisecond), initAt.Round(100*time.Millisecond), homeAt.Round(100*time.Millisecond))
		})
	}
}
