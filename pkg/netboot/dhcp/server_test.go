package dhcp

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/syncbuf"
)

var (
	serverIP = net.IPv4(10, 77, 0, 1).To4()
	macKnown = net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0x00, 0x01}
	macOff   = net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0x00, 0x02}
	macOther = net.HardwareAddr{0x52, 0x54, 0x00, 0xbb, 0x00, 0x09}
)

type denyList map[string]bool

func (d denyList) NetbootAllowed(m hardware.Machine) bool { return !d[m.MAC] }

func testInventory() *hardware.Inventory {
	return &hardware.Inventory{Machines: []hardware.Machine{
		{Line: 2, Hostname: "cp-1", IPAddress: "10.77.0.11", Netmask: "255.255.255.0", Gateway: "10.77.0.254", Nameservers: []string{"10.77.0.53", "1.1.1.1"}, MAC: macKnown.String()},
		{Line: 3, Hostname: "wk-1", IPAddress: "10.77.0.12", Netmask: "255.255.255.0", Gateway: "10.77.0.254", MAC: "52:54:00:AA:00:02"},
	}}
}

func newTestServer(t *testing.T, mode Mode) *Server {
	t.Helper()
	s, err := New(Config{
		Mode: mode, ServerIP: serverIP, Machines: testInventory(), Policy: denyList{"52:54:00:AA:00:02": true},
		URLs: URLs{HTTPBase: "http://10.77.0.1:7080"}, LeaseTime: 2 * time.Hour, Domain: "lab.example", NTP: []net.IP{net.IPv4(10, 77, 0, 123)}, SyslogIP: serverIP,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Request builders.
type reqOpt func(*dhcpv4.DHCPv4)

func pxe(vc string, arch uint16) reqOpt {
	return func(d *dhcpv4.DHCPv4) {
		d.UpdateOption(dhcpv4.OptClassIdentifier(vc))
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{byte(arch >> 8), byte(arch)}))
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}))
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, make([]byte, 16)...)))
	}
}

func userClassRaw(s string) reqOpt {
	return func(d *dhcpv4.DHCPv4) { d.UpdateOption(dhcpv4.OptUserClass(s)) }
}

func userClassRFC(s string) reqOpt {
	return func(d *dhcpv4.DHCPv4) { d.UpdateOption(dhcpv4.OptRFC3004UserClass([]string{s})) }
}

func opt175() reqOpt {
	return func(d *dhcpv4.DHCPv4) {
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{19, 1, 1}))
	}
}

func guid(b []byte) reqOpt {
	return func(d *dhcpv4.DHCPv4) {
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, b))
	}
}

func relay(ip string) reqOpt {
	return func(d *dhcpv4.DHCPv4) { d.GatewayIPAddr = net.ParseIP(ip).To4() }
}

func requested(ip string) reqOpt {
	return func(d *dhcpv4.DHCPv4) { d.UpdateOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip))) }
}

func serverID(ip string) reqOpt {
	return func(d *dhcpv4.DHCPv4) { d.UpdateOption(dhcpv4.OptServerIdentifier(net.ParseIP(ip))) }
}

func build(t *testing.T, mt dhcpv4.MessageType, mac net.HardwareAddr, opts ...reqOpt) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(mt), dhcpv4.WithBroadcast(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(d)
	}
	// Round-trip through the wire format like a real request.
	d, err = dhcpv4.FromBytes(d.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		opts      []reqOpt
		mt        dhcpv4.MessageType
		netboot   bool
		ipxe      bool
		family    Family
		ctype     ClientType
		userClass string
	}{
		{name: "plain client", netboot: false},
		{name: "bios pxe", opts: []reqOpt{pxe("PXEClient:Arch:00000:UNDI:002001", 0)}, netboot: true, family: FamilyBIOS, ctype: ClientPXE},
		{name: "efi x64 pxe", opts: []reqOpt{pxe("PXEClient:Arch:00007:UNDI:003016", 7)}, netboot: true, family: FamilyEFIx64, ctype: ClientPXE},
		{name: "efi bc pxe", opts: []reqOpt{pxe("PXEClient", 9)}, netboot: true, family: FamilyEFIx64, ctype: ClientPXE},
		{name: "efi ia32 pxe", opts: []reqOpt{pxe("PXEClient", 6)}, netboot: true, family: FamilyEFIx64, ctype: ClientPXE},
		{name: "arm64 pxe", opts: []reqOpt{pxe("PXEClient:Arch:00011", 11)}, netboot: true, family: FamilyEFIArm, ctype: ClientPXE},
		{name: "x64 http boot", opts: []reqOpt{pxe("HTTPClient:Arch:00016:UNDI:003001", 16)}, netboot: true, family: FamilyEFIx64, ctype: ClientHTTP},
		{name: "arm64 http boot", opts: []reqOpt{pxe("HTTPClient", 19)}, netboot: true, family: FamilyEFIArm, ctype: ClientHTTP},
		{name: "bios http", opts: []reqOpt{pxe("HTTPClient", 20)}, netboot: true, family: FamilyBIOS, ctype: ClientHTTP},
		{name: "unknown arch", opts: []reqOpt{pxe("PXEClient", 99)}, netboot: true, family: FamilyUnknown, ctype: ClientPXE},
		{name: "ipxe raw user class", opts: []reqOpt{pxe("PXEClient", 0), userClassRaw("iPXE")}, netboot: true, ipxe: true, family: FamilyBIOS, ctype: ClientPXE, userClass: "iPXE"},
		{name: "ipxe rfc3004 user class", opts: []reqOpt{pxe("PXEClient", 7), userClassRFC("iPXE")}, netboot: true, ipxe: true, family: FamilyEFIx64, ctype: ClientPXE, userClass: "iPXE"},
		{name: "tinkerbell user class", opts: []reqOpt{pxe("PXEClient", 7), userClassRaw("Tinkerbell")}, netboot: true, ipxe: true, family: FamilyEFIx64, ctype: ClientPXE, userClass: "Tinkerbell"},
		{name: "ipxe by option 175 only", opts: []reqOpt{pxe("PXEClient", 0), opt175()}, netboot: true, ipxe: true, family: FamilyBIOS, ctype: ClientPXE},
		{name: "other user class", opts: []reqOpt{pxe("PXEClient", 0), userClassRaw("gPXE")}, netboot: true, family: FamilyBIOS, ctype: ClientPXE, userClass: "gPXE"},
		{name: "bad guid", opts: []reqOpt{pxe("PXEClient", 0), guid([]byte{1, 2, 3})}, netboot: false, family: FamilyBIOS, ctype: ClientPXE},
		{name: "guid with non-zero type", opts: []reqOpt{pxe("PXEClient", 0), guid(append([]byte{1}, make([]byte, 16)...))}, netboot: false, family: FamilyBIOS, ctype: ClientPXE},
		{name: "pxe on inform is not netboot", mt: dhcpv4.MessageTypeInform, opts: []reqOpt{pxe("PXEClient", 0)}, netboot: false, family: FamilyBIOS, ctype: ClientPXE},
		{name: "vendor class but no arch", opts: []reqOpt{func(d *dhcpv4.DHCPv4) { d.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient")) }}, netboot: false, ctype: ClientPXE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mt := tc.mt
			if mt == dhcpv4.MessageTypeNone {
				mt = dhcpv4.MessageTypeDiscover
			}
			c := Classify(build(t, mt, macKnown, tc.opts...))
			if c.Netboot != tc.netboot || c.IPXE != tc.ipxe || c.Family != tc.family || c.ClientType != tc.ctype || c.UserClass != tc.userClass {
				t.Fatalf("Classify = %+v, want netboot=%v ipxe=%v family=%q type=%q userClass=%q", c, tc.netboot, tc.ipxe, tc.family, tc.ctype, tc.userClass)
			}
			if !c.Netboot && c.NotNetbootReason == "" {
				t.Fatal("no reason given for a non-netboot client")
			}
		})
	}
}

type want struct {
	noReply   bool
	msgType   dhcpv4.MessageType
	yiaddr    string
	file      string
	classID   string
	pxeVendor bool
	dst       string
}

func TestHandle(t *testing.T) {
	script := "http://10.77.0.1:7080/ipxe/52:54:00:aa:00:01/auto.ipxe"
	disc, req := dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest
	tests := []struct {
		name string
		mode Mode
		mt   dhcpv4.MessageType
		mac  net.HardwareAddr
		opts []reqOpt
		want want
	}{
		// Reservation mode.
		{name: "plain client gets its address only", mode: ModeReservation, mt: disc, mac: macKnown,
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "10.77.0.11", dst: "255.255.255.255:68"}},
		{name: "bios pxe rom gets undionly.kpxe", mode: ModeReservation, mt: disc, mac: macKnown, opts: []reqOpt{pxe("PXEClient:Arch:00000", 0)},
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "10.77.0.11", file: "undionly.kpxe", classID: "PXEClient", pxeVendor: true, dst: "255.255.255.255:68"}},
		{name: "uefi x64 pxe gets ipxe.efi", mode: ModeReservation, mt: req, mac: macKnown, opts: []reqOpt{pxe("PXEClient:Arch:00007", 7)},
			want: want{msgType: dhcpv4.MessageTypeAck, yiaddr: "10.77.0.11", file: "ipxe.efi", classID: "PXEClient", pxeVendor: true, dst: "255.255.255.255:68"}},
		{name: "uefi arm64 pxe gets snp-arm64.efi", mode: ModeReservation, mt: disc, mac: macKnown, opts: []reqOpt{pxe("PXEClient", 11)},
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "10.77.0.11", file: "snp-arm64.efi", classID: "PXEClient", pxeVendor: true, dst: "255.255.255.255:68"}},
		{name: "uefi http boot gets an http url", mode: ModeReservation, mt: disc, mac: macKnown, opts: []reqOpt{pxe("HTTPClient:Arch:00016", 16)},
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "10.77.0.11", file: "http://10.77.0.1:7080/ipxe/binary/52:54:00:aa:00:01/ipxe.efi", classID: "HTTPClient", dst: "255.255.255.255:68"}},
		{name: "arm64 http boot", mode: ModeReservation, mt: disc, mac: macKnown, opts: []reqOpt{pxe("HTTPClient", 19)},
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "10.77.0.11", file: "http://10.77.0.1:7080/ipxe/binary/52:54:00:aa:00:01/snp-arm64.efi", classID: "HTTPClient", dst: "255.255.255.255:68"}},
		{name: "ipxe rom gets the script, never a binary", mode: ModeReservation, mt: disc, mac: macKnown, opts: []reqOpt{pxe("PXEClient", 0), userClassRaw("iPXE")},
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "10.77.0.11", file: script, classID: "PXEClient", dst: "255.255.255.255:68"}},
		{name: "ipxe uefi gets the script", mode: ModeReservation, mt: req, mac: macKnown, opts: []reqOpt{pxe("PXEClient", 7), userClassRaw("iPXE")},
			want: want{msgType: dhcpv4.MessageTypeAck, yiaddr: "10.77.0.11", file: script, classID: "PXEClient", dst: "255.255.255.255:68"}},
		{name: "ipxe by option 175", mode: ModeReservation, mt: disc, mac: macKnown, opts: []reqOpt{pxe("PXEClient", 7), opt175()},
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "10.77.0.11", file: script, classID: "PXEClient", dst: "255.255.255.255:68"}},
		{name: "unknown arch gets an address only", mode: ModeReservation, mt: disc, mac: macKnown, opts: []reqOpt{pxe("PXEClient", 99)},
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "10.77.0.11", dst: "255.255.255.255:68"}},
		{name: "netboot disabled gets an address only", mode: ModeReservation, mt: disc, mac: macOff, opts: []reqOpt{pxe("PXEClient", 0)},
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "10.77.0.12", dst: "255.255.255.255:68"}},
		{name: "unknown mac gets nothing", mode: ModeReservation, mt: disc, mac: macOther, opts: []reqOpt{pxe("PXEClient", 0)}, want: want{noReply: true}},
		{name: "relayed request goes to the relay", mode: ModeReservation, mt: disc, mac: macKnown, opts: []reqOpt{relay("10.99.0.1"), pxe("PXEClient", 7)},
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "10.77.0.11", file: "ipxe.efi", classID: "PXEClient", pxeVendor: true, dst: "10.99.0.1:67"}},
		{name: "request for the reserved ip is acked", mode: ModeReservation, mt: req, mac: macKnown, opts: []reqOpt{requested("10.77.0.11"), serverID("10.77.0.1")},
			want: want{msgType: dhcpv4.MessageTypeAck, yiaddr: "10.77.0.11", dst: "255.255.255.255:68"}},
		{name: "request for another ip is nakked", mode: ModeReservation, mt: req, mac: macKnown, opts: []reqOpt{requested("10.77.0.99")},
			want: want{msgType: dhcpv4.MessageTypeNak, yiaddr: "0.0.0.0", dst: "255.255.255.255:68"}},
		{name: "request to another server is ignored", mode: ModeReservation, mt: req, mac: macKnown, opts: []reqOpt{serverID("10.77.0.2")}, want: want{noReply: true}},
		{name: "renewal is unicast to the client", mode: ModeReservation, mt: req, mac: macKnown, opts: []reqOpt{func(d *dhcpv4.DHCPv4) { d.ClientIPAddr = net.IPv4(10, 77, 0, 11) }},
			want: want{msgType: dhcpv4.MessageTypeAck, yiaddr: "10.77.0.11", dst: "10.77.0.11:68"}},
		{name: "release is ignored", mode: ModeReservation, mt: dhcpv4.MessageTypeRelease, mac: macKnown, want: want{noReply: true}},
		// Proxy mode.
		{name: "proxy: bios pxe gets boot info, no address", mode: ModeProxy, mt: disc, mac: macKnown, opts: []reqOpt{pxe("PXEClient", 0)},
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "0.0.0.0", file: "undionly.kpxe", classID: "PXEClient", pxeVendor: true, dst: "255.255.255.255:68"}},
		{name: "proxy: ipxe gets the script", mode: ModeProxy, mt: req, mac: macKnown, opts: []reqOpt{pxe("PXEClient", 7), userClassRaw("iPXE")},
			want: want{msgType: dhcpv4.MessageTypeAck, yiaddr: "0.0.0.0", file: script, classID: "PXEClient", dst: "255.255.255.255:68"}},
		{name: "proxy: http boot", mode: ModeProxy, mt: disc, mac: macKnown, opts: []reqOpt{pxe("HTTPClient", 16)},
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "0.0.0.0", file: "http://10.77.0.1:7080/ipxe/binary/52:54:00:aa:00:01/ipxe.efi", classID: "HTTPClient", dst: "255.255.255.255:68"}},
		{name: "proxy: plain client is left to the other server", mode: ModeProxy, mt: disc, mac: macKnown, want: want{noReply: true}},
		{name: "proxy: unknown mac ignored", mode: ModeProxy, mt: disc, mac: macOther, opts: []reqOpt{pxe("PXEClient", 0)}, want: want{noReply: true}},
		{name: "proxy: netboot disabled ignored", mode: ModeProxy, mt: disc, mac: macOff, opts: []reqOpt{pxe("PXEClient", 0)}, want: want{noReply: true}},
		{name: "proxy: relayed", mode: ModeProxy, mt: disc, mac: macKnown, opts: []reqOpt{relay("10.99.0.1"), pxe("PXEClient", 7)},
			want: want{msgType: dhcpv4.MessageTypeOffer, yiaddr: "0.0.0.0", file: "ipxe.efi", classID: "PXEClient", pxeVendor: true, dst: "10.99.0.1:67"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, tc.mode)
			r := build(t, tc.mt, tc.mac, tc.opts...)
			reply, dst := s.Handle(r)
			if tc.want.noReply {
				if reply != nil {
					t.Fatalf("got a reply, want none:\n%s", reply.Summary())
				}
				return
			}
			if reply == nil {
				t.Fatal("no reply")
			}
			checkReply(t, r, reply, dst, tc.mode, tc.want)
		})
	}
}

func checkReply(t *testing.T, req, reply *dhcpv4.DHCPv4, dst *net.UDPAddr, mode Mode, w want) {
	t.Helper()
	if reply.MessageType() != w.msgType {
		t.Errorf("message type %s, want %s", reply.MessageType(), w.msgType)
	}
	if reply.TransactionID != req.TransactionID || reply.ClientHWAddr.String() != req.ClientHWAddr.String() {
		t.Errorf("reply does not match the request's xid/chaddr")
	}
	if got := reply.YourIPAddr.String(); got != w.yiaddr {
		t.Errorf("yiaddr %s, want %s", got, w.yiaddr)
	}
	if reply.BootFileName != w.file {
		t.Errorf("file %q, want %q", reply.BootFileName, w.file)
	}
	if got := reply.ClassIdentifier(); got != w.classID && !(w.classID == "" && mode == ModeProxy && got == "PXEClient") {
		t.Errorf("option 60 %q, want %q", got, w.classID)
	}
	if got := reply.Options.Get(dhcpv4.OptionVendorSpecificInformation) != nil; got != w.pxeVendor {
		t.Errorf("option 43 present=%v, want %v", got, w.pxeVendor)
	}
	if dst.String() != w.dst {
		t.Errorf("sent to %s, want %s", dst, w.dst)
	}
	if !reply.ServerIdentifier().Equal(serverIP) {
		t.Errorf("server identifier %s", reply.ServerIdentifier())
	}
	if w.file != "" && !reply.ServerIPAddr.Equal(serverIP) {
		t.Errorf("siaddr %s, want %s", reply.ServerIPAddr, serverIP)
	}
	if w.file == "" && !reply.ServerIPAddr.IsUnspecified() {
		t.Errorf("siaddr %s set without a boot file", reply.ServerIPAddr)
	}
	if got := reply.Options.Has(dhcpv4.GenericOptionCode(175)); got != (mode == ModeReservation && strings.HasSuffix(w.file, "auto.ipxe")) {
		t.Errorf("option 175 (no-pxedhcp) present=%v in %s mode for file %q", got, mode, w.file)
	}
	if mode == ModeProxy {
		if reply.Options.Get(dhcpv4.OptionIPAddressLeaseTime) != nil || reply.SubnetMask() != nil {
			t.Error("proxy reply carries address options")
		}
		if g := reply.Options.Get(dhcpv4.OptionClientMachineIdentifier); req.Options.Get(dhcpv4.OptionClientMachineIdentifier) != nil && g == nil {
			t.Error("proxy reply does not echo option 97")
		}
		return
	}
	if w.msgType == dhcpv4.MessageTypeNak {
		if !strings.Contains(reply.Message(), "reserved") {
			t.Errorf("NAK message %q", reply.Message())
		}
		return
	}
	// Address options of a reservation.
	if got := reply.IPAddressLeaseTime(0); got != 2*time.Hour {
		t.Errorf("lease time %s", got)
	}
	if got := net.IP(reply.SubnetMask()).String(); got != "255.255.255.0" {
		t.Errorf("netmask %s", got)
	}
	if r := reply.Router(); len(r) != 1 || r[0].String() != "10.77.0.254" {
		t.Errorf("router %v", r)
	}
	if got := reply.BroadcastAddress().String(); got != "10.77.0.255" {
		t.Errorf("broadcast %s", got)
	}
	if reply.DomainName() != "lab.example" {
		t.Errorf("domain %q", reply.DomainName())
	}
	if n := reply.NTPServers(); len(n) != 1 || n[0].String() != "10.77.0.123" {
		t.Errorf("ntp %v", n)
	}
	if w.yiaddr == "10.77.0.11" {
		if reply.HostName() != "cp-1" {
			t.Errorf("hostname %q", reply.HostName())
		}
		if d := reply.DNS(); len(d) != 2 || d[0].String() != "10.77.0.53" {
			t.Errorf("dns %v", d)
		}
	}
	if got := net.IP(reply.Options.Get(dhcpv4.OptionLogServer)); !got.Equal(serverIP) {
		t.Errorf("log server %v", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New(Config{Mode: ModeReservation, ServerIP: net.ParseIP("::1"), Machines: testInventory()}); err == nil {
		t.Error("IPv6 server IP accepted")
	}
	if _, err := New(Config{Mode: "dynamic", ServerIP: serverIP, Machines: testInventory()}); err == nil {
		t.Error("unknown mode accepted")
	}
	if _, err := New(Config{Mode: ModeProxy, ServerIP: serverIP}); err == nil {
		t.Error("missing inventory accepted")
	}
}

func TestBadInventoryRowGetsNoReply(t *testing.T) {
	inv := &hardware.Inventory{Machines: []hardware.Machine{{Line: 7, MAC: macKnown.String(), IPAddress: "10.0.0.5", Netmask: "bogus"}}}
	s, err := New(Config{Mode: ModeReservation, ServerIP: serverIP, Machines: inv})
	if err != nil {
		t.Fatal(err)
	}
	if reply, _ := s.Handle(build(t, dhcpv4.MessageTypeDiscover, macKnown)); reply != nil {
		t.Fatal("answered with a bad netmask")
	}
}

func TestRateLimiter(t *testing.T) {
	r := newRateLimiter(time.Hour, 2)
	if !r.allow("a") || r.allow("a") || !r.allow("b") {
		t.Fatal("first event per key must pass, repeats must not")
	}
	if !r.allow("c") { // full: forgets everything
		t.Fatal("new key refused when full")
	}
}

// FuzzHandle feeds arbitrary bytes through parsing and both modes: nothing
// may panic, and any reply must be for the requesting MAC and parse back.
func FuzzHandle(f *testing.F) {
	for _, d := range []*dhcpv4.DHCPv4{
		mustNew(f, macKnown, pxe("PXEClient", 0)), mustNew(f, macKnown, pxe("HTTPClient", 16)),
		mustNew(f, macKnown, userClassRaw("iPXE"), opt175()), mustNew(f, macOther),
	} {
		f.Add(d.ToBytes())
	}
	res, _ := New(Config{Mode: ModeReservation, ServerIP: serverIP, Machines: testInventory(), URLs: URLs{HTTPBase: "http://x"}})
	prox, _ := New(Config{Mode: ModeProxy, ServerIP: serverIP, Machines: testInventory(), URLs: URLs{HTTPBase: "http://x"}})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		_ = Classify(req)
		for _, s := range []*Server{res, prox} {
			reply, dst := s.Handle(req)
			if reply == nil {
				continue
			}
			if dst == nil || reply.ClientHWAddr.String() != req.ClientHWAddr.String() {
				t.Fatalf("reply to the wrong client or nowhere: %v", dst)
			}
			if _, err := dhcpv4.FromBytes(reply.ToBytes()); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
		}
	})
}

func mustNew(f *testing.F, mac net.HardwareAddr, opts ...reqOpt) *dhcpv4.DHCPv4 {
	d, err := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	if err != nil {
		f.Fatal(err)
	}
	for _, o := range opts {
		o(d)
	}
	return d
}

func TestUnknownNetbootMACWarnsOncePerMinute(t *testing.T) {
	var buf syncbuf.Buffer
	s, err := New(Config{Mode: ModeReservation, ServerIP: serverIP, Machines: testInventory(), Log: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r, _ := s.Handle(build(t, dhcpv4.MessageTypeDiscover, macOther, pxe("PXEClient", 7))); r != nil {
			t.Fatal("answered an unknown MAC")
		}
	}
	s.Handle(build(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{2, 0, 0, 0, 0, 1})) // plain client: debug only
	out := buf.String()
	if n := strings.Count(out, "not in Hardware.csv"); n != 1 || !strings.Contains(out, "level=WARN") || !strings.Contains(out, macOther.String()) {
		t.Fatalf("want one warning for %s, got:\n%s", macOther, out)
	}
}
