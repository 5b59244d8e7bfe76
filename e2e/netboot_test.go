//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/netboot"
	"github.com/kiln-dev/kiln/pkg/netns"
	"github.com/kiln-dev/kiln/pkg/qemu"
)

// vmCase is one firmware booting one machine of the inventory.
type vmCase struct {
	name     string
	firmware qemu.Firmware
	noROM    bool     // firmware's own PXE client instead of QEMU's iPXE ROM
	extra    []string // journal events expected on top of the common ones
	mac, ip  string
}

var vmCases = []vmCase{
	// SeaBIOS runs Debian's iPXE ROM, which asks for the script directly.
	{name: "bios", firmware: qemu.BIOS, mac: "52:54:00:03:00:01", ip: "10.79.0.11"},
	// OVMF runs the iPXE EFI driver of the same ROM.
	{name: "uefi", firmware: qemu.UEFI, mac: "52:54:00:03:00:02", ip: "10.79.0.12"},
	// OVMF's own PXE client (like a vendor NIC): DHCP gives ipxe.efi, fetched
	// over TFTP, whose iPXE then asks DHCP again and gets the script.
	{name: "uefi-pxe", firmware: qemu.UEFI, noROM: true, mac: "52:54:00:03:00:03", ip: "10.79.0.13", extra: []string{"tftp ipxe.efi"}},
}

func need(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if _, err := exec.LookPath(path); err != nil {
			t.Skipf("%s missing: apt install %s", path, pkg)
		}
	}
}

func debianKernel(t *testing.T) string {
	t.Helper()
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(ks) == 0 {
		t.Skip("no kernel in /boot: apt install linux-image-amd64")
	}
	return ks[len(ks)-1]
}

// TestNetbootQEMU boots a legacy-BIOS VM (SeaBIOS + Debian's iPXE ROM) and
// a UEFI VM (OVMF) at the same time from kiln running in a network
// namespace. Each must get its reserved address, fetch its auto.ipxe, run
// it (the script's "started" marker reaches kiln from the reserved IP),
// load kernel+initramfs over HTTP and boot Linux with kiln's kernel args.
func TestNetbootQEMU(t *testing.T) {
	need(t, "qemu-system-x86_64", "qemu-system-x86")
	need(t, "/usr/lib/ipxe/undionly.kpxe", "ipxe")
	need(t, "/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu")
	need(t, "/bin/busybox", "busybox-static")
	if _, _, err := qemu.FindOVMF(); err != nil {
		t.Skip(err)
	}
	kernel := debianKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Network: one namespace with a bridge holding kiln's address and a tap per VM.
	ns := netns.ForTest(t, "kn3e")
	if err := netns.AddBridge(ctx, ns, "kn3br0"); err != nil {
		t.Fatal(err)
	}
	if err := netns.AddAddr(ctx, ns, "kn3br0", "10.79.0.1/24"); err != nil {
		t.Fatal(err)
	}
	for i := range vmCases {
		if err := netns.AddTap(ctx, ns, fmt.Sprintf("kn3tap%d", i), "kn3br0"); err != nil {
			t.Fatal(err)
		}
	}

	// The in-memory OS: Debian's kernel and a marker initramfs.
	hook := t.TempDir()
	k, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := markerInitramfs("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hook, "vmlinuz-x86_64"), k, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hook, "initramfs-x86_64"), initrd, 0o644); err != nil {
		t.Fatal(err)
	}

	inv := &hardware.Inventory{}
	for _, c := range vmCases {
		inv.Machines = append(inv.Machines, hardware.Machine{Hostname: "e2e-" + c.name, IPAddress: c.ip, Netmask: "255.255.255.0",
			Gateway: "10.79.0.1", Nameservers: []string{"10.79.0.1"}, MAC: c.mac})
	}
	logs := &lockedBuffer{}
	var srv *netboot.Server
	if err := ns.Do(func() error {
		var err error
		srv, err = netboot.Start(ctx, netboot.Config{
			BindIP: net.IPv4(10, 79, 0, 1), Machines: inv, HookDir: hook,
			LeaseTime: time.Hour, RunIn: ns.Do, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Shutdown()
		if t.Failed() {
			t.Logf("kiln log:\n%s", logs.String())
		}
	}()

	dir := t.TempDir()
	var wg sync.WaitGroup
	results := make([]error, len(vmCases))
	start := time.Now()
	for i, c := range vmCases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = bootOne(ctx, t, ns, dir, i, c, srv)
		}()
	}
	wg.Wait()
	t.Logf("all VMs booted in %s", time.Since(start).Round(time.Second))
	for i, err := range results {
		if err != nil {
			t.Errorf("%s: %v", vmCases[i].name, err)
		}
	}
}

func bootOne(ctx context.Context, t *testing.T, ns *netns.Namespace, dir string, i int, c vmCase, srv *netboot.Server) error {
	var stderr lockedBuffer
	vm, err := qemu.Start(ctx, qemu.Config{
		Name: "kn3-" + c.name, Firmware: c.firmware, MAC: c.mac, Tap: fmt.Sprintf("kn3tap%d", i), Netns: ns.Name,
		NoOptionROM: c.noROM, MemoryMiB: 512, SerialLog: filepath.Join(dir, c.name+"-serial.log"), QMPSocket: filepath.Join(dir, c.name+"-qmp.sock"),
	}, &stderr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer vm.Stop(5 * time.Second)
	bootCtx, cancel := context.WithTimeout(ctx, 210*time.Second)
	defer cancel()
	err = vm.WaitSerial(bootCtx, "KILN-E2E-BOOTED")
	serial, _ := vm.Serial()
	events := srv.Journal.Events(c.mac)
	t.Logf("%s journal: %v", c.name, events)
	if err != nil {
		return fmt.Errorf("%w\nqemu stderr: %s\nserial tail: %s", err, stderr.String(), tail(serial, 2000))
	}
	var missing []string
	for _, want := range append([]string{"dhcp ACK", "script", "script started", "http /hook/vmlinuz-x86_64", "http /hook/initramfs-x86_64"}, c.extra...) {
		if !srv.Journal.Has(c.mac, want) {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("journal lacks %v (hook fetches are recorded only from the reserved IP %s)", missing, c.ip)
	}
	line := serial[strings.Index(serial, "KILN-E2E-BOOTED"):]
	for _, want := range []string{"worker_id=" + c.mac, "hw_addr=" + c.mac, "grpc_authority=10.79.0.1:42113", "syslog_host=10.79.0.1",
		"tinkerbell_tls=false", "kiln_metadata_url=http://10.79.0.1:7080", "console=ttyS0,115200"} {
		if !strings.Contains(line, want) {
			return fmt.Errorf("kernel command line lacks %q: %s", want, tail(line, 600))
		}
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
