//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/netboot"
	"github.com/kiln-dev/kiln/pkg/netns"
	"github.com/kiln-dev/kiln/pkg/qemu"
	"github.com/kiln-dev/kiln/pkg/syncbuf"
)

// vmCase is one firmware booting one machine of the inventory.
type vmCase struct {
	name     string
	firmware qemu.Firmware
	noROM    bool     // firmware's own PXE client instead of QEMU's iPXE ROM
	extra    []string // journal events expected on top of the common ones
	proxy    bool     // kiln in proxy mode: the address comes from another server
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

	hook := hookDir(t, kernel)

	inv := &hardware.Inventory{}
	for _, c := range vmCases {
		inv.Machines = append(inv.Machines, hardware.Machine{Hostname: "e2e-" + c.name, IPAddress: c.ip, Netmask: "255.255.255.0",
			Gateway: "10.79.0.1", Nameservers: []string{"10.79.0.1"}, MAC: c.mac})
	}
	srv, _ := startKiln(ctx, t, ns, netboot.Config{BindIP: net.IPv4(10, 79, 0, 1), Machines: inv, HookDir: hook, LeaseTime: time.Hour}, nil)

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
	// The counters operators scrape saw the same boots. (The handler is
	// called directly: net/http dials from goroutines outside the namespace.)
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	metrics := rec.Body.String()
	for _, re := range []string{`kiln_dhcp_replies_total\{type="ACK"\} ([4-9]|\d\d)`, `kiln_bytes_served_total\{protocol="tftp"\} [1-9]`,
		`kiln_bytes_served_total\{protocol="http"\} [1-9]`, `kiln_http_requests_total\{code="200",route="/ipxe/"\} [1-9]`} {
		if !regexp.MustCompile(re).MatchString(metrics) {
			t.Errorf("/metrics does not match %s:\n%s", re, metrics)
		}
	}
}

// startKiln starts the netboot stack inside ns (sockets and service loops)
// with an info-level log that is printed if the test fails, together with
// extra().
func startKiln(ctx context.Context, t *testing.T, ns *netns.Namespace, cfg netboot.Config, extra func() string) (*netboot.Server, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	cfg.RunIn = ns.Do
	cfg.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var srv *netboot.Server
	if err := ns.Do(func() error {
		var err error
		srv, err = netboot.Start(ctx, cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		if t.Failed() {
			msg := "kiln log:\n" + logs.String()
			if extra != nil {
				msg += "\n" + extra()
			}
			t.Log(msg)
		}
	})
	return srv, logs
}

// hookDir writes the in-memory OS: Debian's kernel and a marker initramfs.
func hookDir(t *testing.T, kernel string) string {
	t.Helper()
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
	return hook
}

func bootOne(ctx context.Context, t *testing.T, ns *netns.Namespace, dir string, i int, c vmCase, srv *netboot.Server) error {
	var stderr syncbuf.Buffer
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
	dhcpEvent := "dhcp ACK"
	if c.proxy {
		// iPXE boots straight from kiln's ProxyDHCP offer.
		dhcpEvent = "dhcp OFFER"
	}
	for _, want := range append([]string{dhcpEvent, "script", "script started", "http /hook/vmlinuz-x86_64", "http /hook/initramfs-x86_64"}, c.extra...) {
		if !srv.Journal.Has(c.mac, want) {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("journal lacks %v (hook fetches are recorded only from the reserved IP %s)", missing, c.ip)
	}
	line := serial[strings.Index(serial, "KILN-E2E-BOOTED"):]
	for _, want := range []string{"worker_id=" + c.mac, "hw_addr=" + c.mac, "grpc_authority=" + srv.HTTPAddr().IP.String() + ":42113", "syslog_host=" + srv.HTTPAddr().IP.String(),
		"tinkerbell_tls=false", "kiln_metadata_url=http://" + srv.HTTPAddr().String(), "console=ttyS0,115200"} {
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

// TestProxyNextToDnsmasq runs kiln in proxy mode beside a site DHCP server
// (dnsmasq in its own namespace, handing out the addresses with no boot
// options). A legacy-BIOS VM must get its address from dnsmasq and its
// script from kiln's proxy offer, and boot.
func TestProxyNextToDnsmasq(t *testing.T) {
	need(t, "qemu-system-x86_64", "qemu-system-x86")
	need(t, "/usr/lib/ipxe/undionly.kpxe", "ipxe")
	need(t, "/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu")
	need(t, "/bin/busybox", "busybox-static")
	need(t, "dnsmasq", "dnsmasq")
	kernel := debianKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	ns := netns.ForTest(t, "kn3p")
	site := netns.ForTest(t, "kn3p")
	for _, step := range []error{
		netns.AddBridge(ctx, ns, "kn3br1"),
		netns.AddAddr(ctx, ns, "kn3br1", "10.82.0.1/24"),
		netns.AddTap(ctx, ns, "kn3tap9", "kn3br1"),
		netns.AddVeth(ctx, "kn3pv0", ns, "kn3pv1", site),
		netns.SetMaster(ctx, ns, "kn3pv0", "kn3br1"),
		netns.AddAddr(ctx, site, "kn3pv1", "10.82.0.254/24"),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	c := vmCase{name: "bios-proxy", firmware: qemu.BIOS, proxy: true, mac: "52:54:00:03:00:09", ip: "10.82.0.21"}
	dnsmasq := site.Command(ctx, "dnsmasq", "--no-daemon", "--port=0", "--interface=kn3pv1", "--bind-interfaces", "--leasefile-ro",
		"--dhcp-range=10.82.0.100,10.82.0.150,1h", "--dhcp-host="+c.mac+","+c.ip, "--dhcp-option=3,10.82.0.254")
	var dnsmasqOut syncbuf.Buffer
	dnsmasq.Stdout, dnsmasq.Stderr = &dnsmasqOut, &dnsmasqOut
	if err := dnsmasq.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dnsmasq.Process.Kill(); _ = dnsmasq.Wait() }()

	inv := &hardware.Inventory{Machines: []hardware.Machine{{Hostname: "e2e-proxy", IPAddress: c.ip, Netmask: "255.255.255.0",
		Gateway: "10.82.0.254", Nameservers: []string{"10.82.0.254"}, MAC: c.mac}}}
	srv, logs := startKiln(ctx, t, ns, netboot.Config{BindIP: net.IPv4(10, 82, 0, 1), DHCPMode: "proxy", Machines: inv, HookDir: hookDir(t, kernel)},
		func() string { return "dnsmasq:\n" + dnsmasqOut.String() })
	start := time.Now()
	if err := bootOne(ctx, t, ns, t.TempDir(), 9, c, srv); err != nil {
		t.Fatal(err)
	}
	t.Logf("booted through proxy DHCP in %s", time.Since(start).Round(time.Second))
	if l := logs.String(); !strings.Contains(l, "reply=OFFER ip=0.0.0.0") || strings.Contains(l, "ip=10.82.0.21 arch") {
		t.Error("kiln's proxy replies carried an address")
	}
}
