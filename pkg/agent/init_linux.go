package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/insomniacslk/dhcp/netboot"
	"github.com/jsimonetti/rtnetlink/rtnl"
	"golang.org/x/sys/unix"
)

// MountKernelFS mounts /proc, /sys, /dev (devtmpfs), /run and /tmp as PID 1
// needs them; already-mounted file systems are left alone.
func MountKernelFS() error {
	mounts := []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	}
	var errs []error
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mounting %s on %s: %w", m.fstype, m.dst, err))
		}
	}
	return errors.Join(errs...)
}

// ModuleList is where kiln's in-memory OS image (pkg/hook) lists the modules
// it carries: one path per line relative to /lib/modules/<release>,
// dependencies first.
const ModuleList = "/etc/kiln/modules"

func moduleDir() (string, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "", err
	}
	return filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:])), nil
}

// LoadModuleList loads every module listed in the file at path (see
// ModuleList), in order. A missing file is not an error. Modules that fail
// to load (no such hardware, CPU feature missing) are reported together; the
// rest still load.
func LoadModuleList(path string, log *slog.Logger) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dir, err := moduleDir()
	if err != nil {
		return err
	}
	var errs []error
	loaded := 0
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := loadModuleFile(filepath.Join(dir, filepath.Clean("/"+line))); err != nil {
			errs = append(errs, err)
			continue
		}
		loaded++
	}
	log.Info("modules loaded", "list", path, "loaded", loaded, "failed", len(errs))
	return errors.Join(errs...)
}

// LoadModules loads each named module (in order; list dependencies first)
// from /lib/modules/<release>/ with finit_module. Compressed modules
// (.ko.xz, .ko.zst, .ko.gz) are handed to the kernel to decompress.
func LoadModules(names []string, log *slog.Logger) error {
	if len(names) == 0 {
		return nil
	}
	dir, err := moduleDir()
	if err != nil {
		return err
	}
	found := map[string]string{}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		base := d.Name()
		if i := strings.Index(base, ".ko"); i > 0 {
			name := strings.ReplaceAll(base[:i], "-", "_")
			if _, dup := found[name]; !dup {
				found[name] = path
			}
		}
		return nil
	})
	var errs []error
	for _, n := range names {
		path, ok := found[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			errs = append(errs, fmt.Errorf("module %s: not found under %s", n, dir))
			continue
		}
		if err := loadModuleFile(path); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("module loaded", "module", n)
	}
	return errors.Join(errs...)
}

// loadModuleFile loads one module file; an already loaded module is fine.
func loadModuleFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(path, ".ko") {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("loading module %s: %w", path, err)
	}
	return nil
}

// InterfaceByMAC returns the name of the interface with the given MAC.
func InterfaceByMAC(mac string) (string, error) {
	want, err := net.ParseMAC(mac)
	if err != nil {
		return "", fmt.Errorf("hw_addr %q: %w", mac, err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	var seen []string
	for _, i := range ifs {
		if i.HardwareAddr.String() == want.String() {
			return i.Name, nil
		}
		if len(i.HardwareAddr) > 0 {
			seen = append(seen, i.Name+"="+i.HardwareAddr.String())
		}
	}
	return "", fmt.Errorf("no interface has MAC %s (found %s); is its driver built in or listed in kiln_modules?", want, strings.Join(seen, ", "))
}

// BringUpDHCP brings the interface with MAC hwAddr up, obtains a DHCPv4
// lease on it and configures its address and default route, and writes the
// lease's name servers to resolvConf (skipped when empty). It retries until
// ctx ends (links can take a while, drivers load late).
func BringUpDHCP(ctx context.Context, hwAddr, resolvConf string, log *slog.Logger) (net.IP, error) {
	if lo, err := net.InterfaceByName("lo"); err == nil {
		if rt, err := rtnl.Dial(nil); err == nil {
			_ = rt.LinkUp(lo)
			_ = rt.Close()
		}
	}
	wait := time.Second
	for {
		ip, err := dhcpOnce(ctx, hwAddr, resolvConf, log)
		if err == nil {
			return ip, nil
		}
		log.Warn("network not ready; retrying", "hw_addr", hwAddr, "err", err)
		if !sleep(ctx, wait) {
			return nil, fmt.Errorf("bringing up %s: %w", hwAddr, err)
		}
		wait = min(2*wait, 10*time.Second)
	}
}

func dhcpOnce(ctx context.Context, hwAddr, resolvConf string, log *slog.Logger) (net.IP, error) {
	ifname, err := InterfaceByMAC(hwAddr)
	if err != nil {
		return nil, err
	}
	if _, err := netboot.IfUp(ifname, 20*time.Second); err != nil {
		return nil, err
	}
	c, err := nclient4.New(ifname, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return nil, fmt.Errorf("DHCP client on %s: %w", ifname, err)
	}
	defer c.Close()
	ack, err := dora(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("DHCP on %s: %w", ifname, err)
	}
	nc, err := netboot.GetNetConfFromPacketv4(ack)
	if err != nil {
		return nil, fmt.Errorf("DHCP reply on %s: %w", ifname, err)
	}
	if err := configure(ifname, nc, resolvConf); err != nil {
		return nil, fmt.Errorf("configuring %s: %w", ifname, err)
	}
	ip := ack.YourIPAddr
	log.Info("network up", "interface", ifname, "address", ip, "dhcp_server", ack.ServerIdentifier(), "routers", nc.Routers)
	return ip, nil
}

// dora runs DISCOVER/OFFER/REQUEST/ACK. It builds the packets itself because
// the library's constructors draw the transaction id from the kernel's
// CSPRNG, which blocks for minutes early in the boot of a VM without a
// hardware RNG (seen under QEMU TCG); a DHCP transaction id needs no
// cryptographic strength, so the runtime's non-blocking generator is used.
func dora(ctx context.Context, c *nclient4.Client) (*dhcpv4.DHCPv4, error) {
	var xid dhcpv4.TransactionID
	binary.BigEndian.PutUint32(xid[:], mrand.Uint32())
	params := dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainName, dhcpv4.OptionDomainNameServer)
	size := dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize))
	discover := packet(xid, dhcpv4.WithHwAddr(c.InterfaceAddr()), params, size, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	offer, err := c.SendAndRead(ctx, c.RemoteAddr(), discover, nclient4.IsMessageType(dhcpv4.MessageTypeOffer))
	if err != nil {
		return nil, fmt.Errorf("no DHCP offer: %w", err)
	}
	request := packet(xid, dhcpv4.WithReply(offer), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(offer.ClientIPAddr), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOptionCopied(offer, dhcpv4.OptionServerIdentifier), params, size)
	ack, err := c.SendAndRead(ctx, c.RemoteAddr(), request, nclient4.IsAll(
		nclient4.IsCorrectServer(offer.ServerIdentifier()),
		nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)))
	if err != nil {
		return nil, fmt.Errorf("no DHCP acknowledgement: %w", err)
	}
	if ack.MessageType() == dhcpv4.MessageTypeNak {
		return nil, fmt.Errorf("DHCP server %s refused the address %s: %s", offer.ServerIdentifier(), offer.YourIPAddr, ack.Message())
	}
	return ack, nil
}

// packet is a BOOTREQUEST with the given transaction id and modifiers.
func packet(xid dhcpv4.TransactionID, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode: dhcpv4.OpcodeBootRequest, HWType: iana.HWTypeEthernet, ClientHWAddr: make(net.HardwareAddr, 6),
		TransactionID: xid, ClientIPAddr: net.IPv4zero, YourIPAddr: net.IPv4zero, ServerIPAddr: net.IPv4zero,
		GatewayIPAddr: net.IPv4zero, Options: make(dhcpv4.Options),
	}
	for _, m := range mods {
		m(d)
	}
	return d
}

// configure applies a DHCP lease: addresses, default route via the first
// router, and name servers.
func configure(ifname string, nc *netboot.NetConf, resolvConf string) error {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	rt, err := rtnl.Dial(nil)
	if err != nil {
		return err
	}
	defer rt.Close()
	for _, a := range nc.Addresses {
		ipn := a.IPNet
		if err := rt.AddrAdd(iface, &ipn); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("adding %s: %w", ipn.String(), err)
		}
	}
	if len(nc.Routers) > 0 && len(nc.Addresses) > 0 {
		src := nc.Addresses[0].IPNet
		dst := net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if err := rt.RouteReplace(iface, dst, nc.Routers[0], rtnl.WithRouteSrc(&src)); err != nil {
			return fmt.Errorf("default route via %s: %w", nc.Routers[0], err)
		}
	}
	if resolvConf == "" || len(nc.DNSServers) == 0 {
		return nil
	}
	var b strings.Builder
	for _, ns := range nc.DNSServers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(nc.DNSSearchList) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(nc.DNSSearchList, " "))
	}
	return os.WriteFile(resolvConf, []byte(b.String()), 0o644)
}
