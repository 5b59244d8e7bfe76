package dhcp

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/kiln-dev/kiln/pkg/netns"
)

// lab is a DHCP server in one namespace and a client link in another.
type lab struct {
	pair *netns.Pair
}

func startLab(t *testing.T, mode Mode, clientCIDR string) *lab {
	t.Helper()
	p := netns.PairForTest(t, "kn3d", "10.77.0.1/24", clientCIDR)
	ctx, cancel := context.WithCancel(context.Background())
	s := newTestServer(t, mode)
	var conns []net.PacketConn
	err := p.Server.Do(func() error {
		c, err := Listen(p.ServerLink, dhcpv4.ServerPort)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		if mode == ModeProxy {
			c, err := Listen(p.ServerLink, PXEPort)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, len(conns))
	for _, c := range conns {
		go func() { done <- s.Serve(ctx, c) }()
	}
	t.Cleanup(func() {
		cancel()
		for range conns {
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	})
	return &lab{pair: p}
}

func (l *lab) setClientMAC(t *testing.T, mac net.HardwareAddr) {
	t.Helper()
	if err := l.pair.Client.IP(context.Background(), "link", "set", l.pair.ClientLink, "address", mac.String()); err != nil {
		t.Fatal(err)
	}
}

// udhcpc runs busybox udhcpc in the client namespace and returns the
// variables its script saw on "bound", or ok=false when no lease came.
func (l *lab) udhcpc(t *testing.T, extra ...string) (map[string]string, bool) {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (apt install busybox-static)")
	}
	script := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env | grep -E '^(ip|subnet|router|dns|hostname|domain|broadcast|lease|serverid|siaddr|boot_file|ntpsrv)='\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"udhcpc", "-i", l.pair.ClientLink, "-f", "-q", "-n", "-t", "2", "-T", "1", "-s", script, "-O", "ntpsrv"}, extra...)
	out, err := l.pair.Client.Output(ctx, bb, args...)
	if err != nil {
		return nil, false
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = strings.TrimSpace(v)
		}
	}
	return vars, vars["ip"] != ""
}

func TestUdhcpcGetsReservedAddress(t *testing.T) {
	l := startLab(t, ModeReservation, "")
	l.setClientMAC(t, macKnown)
	vars, ok := l.udhcpc(t)
	if !ok {
		t.Fatal("udhcpc got no lease for a known MAC")
	}
	want := map[string]string{"ip": "10.77.0.11", "subnet": "255.255.255.0", "router": "10.77.0.254", "dns": "10.77.0.53 1.1.1.1",
		"hostname": "cp-1", "domain": "lab.example", "broadcast": "10.77.0.255", "lease": "7200", "serverid": "10.77.0.1", "ntpsrv": "10.77.0.123"}
	for k, v := range want {
		if vars[k] != v {
			t.Errorf("udhcpc %s=%q, want %q", k, vars[k], v)
		}
	}
	if vars["boot_file"] != "" {
		t.Errorf("plain DHCP client got boot file %q", vars["boot_file"])
	}
}

func TestUdhcpcAsPXEClientGetsBootFile(t *testing.T) {
	l := startLab(t, ModeReservation, "")
	l.setClientMAC(t, macKnown)
	vars, ok := l.udhcpc(t, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000", "-x", "0x5e:010201")
	if !ok {
		t.Fatal("no lease")
	}
	if vars["ip"] != "10.77.0.11" || vars["boot_file"] != "undionly.kpxe" || vars["siaddr"] != "10.77.0.1" {
		t.Fatalf("got %v, want ip 10.77.0.11, boot_file undionly.kpxe, siaddr 10.77.0.1", vars)
	}
}

func TestUnknownMACGetsNothing(t *testing.T) {
	t.Parallel()
	l := startLab(t, ModeReservation, "")
	l.setClientMAC(t, macOther)
	if vars, ok := l.udhcpc(t); ok {
		t.Fatalf("unknown MAC got a lease: %v", vars)
	}
}

// nclient runs the dhcp library's client in the client namespace.
func (l *lab) discover(t *testing.T, mac net.HardwareAddr, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	t.Helper()
	var c *nclient4.Client
	if err := l.pair.Client.Do(func() error {
		var err error
		c, err = nclient4.New(l.pair.ClientLink, nclient4.WithHWAddr(mac), nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(1))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.DiscoverOffer(ctx, mods...)
}

func pxeMods(vc string, arch uint16, extra ...dhcpv4.Modifier) []dhcpv4.Modifier {
	return append([]dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vc)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{byte(arch >> 8), byte(arch)}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3, 16}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, []byte("0123456789abcdef")...)),
	}, extra...)
}

func TestCraftedNetbootRequests(t *testing.T) {
	l := startLab(t, ModeReservation, "")
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
		file string
	}{
		{"uefi pxe", pxeMods("PXEClient:Arch:00007:UNDI:003016", 7), "ipxe.efi"},
		{"bios pxe", pxeMods("PXEClient:Arch:00000:UNDI:002001", 0), "undionly.kpxe"},
		{"ipxe", pxeMods("PXEClient:Arch:00000:UNDI:002001", 0, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE"))), "http://10.77.0.1:7080/ipxe/52:54:00:aa:00:01/auto.ipxe"},
		{"http client", pxeMods("HTTPClient:Arch:00016:UNDI:003001", 16), "http://10.77.0.1:7080/ipxe/binary/52:54:00:aa:00:01/ipxe.efi"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			offer, err := l.discover(t, macKnown, tc.mods...)
			if err != nil {
				t.Fatal(err)
			}
			if offer.BootFileName != tc.file || offer.YourIPAddr.String() != "10.77.0.11" {
				t.Fatalf("offer file=%q yiaddr=%s, want %q 10.77.0.11", offer.BootFileName, offer.YourIPAddr, tc.file)
			}
		})
	}
}

func TestProxyModeGivesNoAddress(t *testing.T) {
	t.Parallel()
	l := startLab(t, ModeProxy, "")
	offer, err := l.discover(t, macKnown, pxeMods("PXEClient:Arch:00007:UNDI:003016", 7)...)
	if err != nil {
		t.Fatal(err)
	}
	if !offer.YourIPAddr.IsUnspecified() || offer.BootFileName != "ipxe.efi" || offer.ClassIdentifier() != "PXEClient" {
		t.Fatalf("proxy offer yiaddr=%s file=%q class=%q", offer.YourIPAddr, offer.BootFileName, offer.ClassIdentifier())
	}
	// A plain client gets nothing: the site's own DHCP server serves it.
	l.setClientMAC(t, macKnown)
	if vars, ok := l.udhcpc(t); ok {
		t.Fatalf("proxy mode handed out a lease: %v", vars)
	}
}

// TestRelayedRequestAnsweredToRelay plays a relay agent at 10.77.0.2: the
// server must answer it unicast on port 67.
func TestRelayedRequestAnsweredToRelay(t *testing.T) {
	l := startLab(t, ModeReservation, "10.77.0.2/24")
	var conn *net.UDPConn
	if err := l.pair.Client.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 77, 0, 2), Port: dhcpv4.ServerPort})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, err := dhcpv4.NewDiscovery(macKnown, append(pxeMods("PXEClient", 7), dhcpv4.WithRelay(net.IPv4(10, 77, 0, 2)))...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 77, 0, 1), Port: dhcpv4.ServerPort}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := conn.ReadFrom(buf)
	if err != nil {
		t.Fatalf("relay got no answer: %v", err)
	}
	reply, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if reply.TransactionID != req.TransactionID || reply.YourIPAddr.String() != "10.77.0.11" || reply.BootFileName != "ipxe.efi" || !reply.GatewayIPAddr.Equal(net.IPv4(10, 77, 0, 2)) {
		t.Fatalf("relay reply from %s: %s", from, reply.Summary())
	}
}

// TestOnlyAnswersOnBoundInterface puts a second client link on the server
// namespace that the server is not bound to: nothing may answer there.
func TestOnlyAnswersOnBoundInterface(t *testing.T) {
	t.Parallel()
	l := startLab(t, ModeReservation, "")
	other := netns.ForTest(t, "kn3d")
	ctx := context.Background()
	if err := netns.AddVeth(ctx, "kn3dx0", l.pair.Server, "kn3dy0", other); err != nil {
		t.Fatal(err)
	}
	if err := netns.AddAddr(ctx, l.pair.Server, "kn3dx0", "10.78.0.1/24"); err != nil {
		t.Fatal(err)
	}
	if err := other.IP(ctx, "link", "set", "kn3dy0", "address", macKnown.String()); err != nil {
		t.Fatal(err)
	}
	ol := &lab{pair: &netns.Pair{Server: l.pair.Server, Client: other, ServerLink: "kn3dx0", ClientLink: "kn3dy0"}}
	if vars, ok := ol.udhcpc(t); ok {
		t.Fatalf("server answered on an interface it is not bound to: %v", vars)
	}
}
