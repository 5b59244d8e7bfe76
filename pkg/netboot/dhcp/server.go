// Package dhcp is kiln's DHCPv4 server for netbooting: reservation mode
// answers only machines in the inventory with their reserved address and
// boot information; proxy mode hands out boot information only, next to an
// existing DHCP server. Requests are classified from options 60, 77, 93, 94,
// 97 and 175 to pick the iPXE binary, its HTTP URL or the iPXE script.
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/kiln-dev/kiln/pkg/hardware"
)

// PXEPort is the PXE boot-server port iPXE and PXE ROMs send ProxyDHCP
// requests to after an offer from a proxy server.
const PXEPort = 4011

// Mode is how the server answers.
type Mode string

// DHCP modes.
const (
	ModeReservation Mode = "reservation"
	ModeProxy       Mode = "proxy"
)

// ParseMode checks a --dhcp-mode value ("off" is handled by the caller).
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeReservation, ModeProxy:
		return Mode(s), nil
	}
	return "", fmt.Errorf("DHCP mode %q is not reservation or proxy", s)
}

// Machines finds inventory machines by MAC; *hardware.Inventory implements it.
type Machines interface {
	ByMAC(mac string) (hardware.Machine, bool)
}

// Policy says whether a machine may netboot now (the workflow engine turns
// this off once a machine is installed). Nil means always.
type Policy interface {
	NetbootAllowed(m hardware.Machine) bool
}

// Observer is told about every reply sent (message type name) and every
// request ignored; nil is allowed.
type Observer interface {
	DHCPReply(mac, msgType string)
	DHCPIgnored(reason string)
}

// Config configures a Server.
type Config struct {
	Mode     Mode
	ServerIP net.IP // kiln's address on the boot network: server identifier, next-server, TFTP
	Machines Machines
	Policy   Policy
	Files    BootFiles
	URLs     URLs
	// LeaseTime is sent explicitly in every address reply (default 24h).
	LeaseTime time.Duration
	Domain    string   // option 15, when set
	NTP       []net.IP // option 42, when set
	SyslogIP  net.IP   // option 7, when set
	Observer  Observer
	Log       *slog.Logger
}

// Server answers DHCP requests.
type Server struct {
	cfg     Config
	log     *slog.Logger
	unknown *rateLimiter
}

// New checks cfg and returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.ServerIP.To4() == nil {
		return nil, fmt.Errorf("DHCP server IP %q is not an IPv4 address", cfg.ServerIP)
	}
	if cfg.Machines == nil {
		return nil, errors.New("DHCP server needs a machine inventory")
	}
	if _, err := ParseMode(string(cfg.Mode)); err != nil {
		return nil, err
	}
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = 24 * time.Hour
	}
	if cfg.Files == (BootFiles{}) {
		cfg.Files = DefaultBootFiles
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.ServerIP = cfg.ServerIP.To4()
	return &Server{cfg: cfg, log: cfg.Log.With("component", "dhcp"), unknown: newRateLimiter(time.Minute, 4096)}, nil
}

// Listen opens the DHCP socket on UDP port (67 normally) bound to ifname, so
// that requests arriving on other interfaces are never seen or answered.
func Listen(ifname string, port int) (net.PacketConn, error) {
	conn, err := server4.NewIPv4UDPConn(ifname, &net.UDPAddr{IP: net.IPv4zero, Port: port})
	if err != nil {
		return nil, fmt.Errorf("listen for DHCP on interface %q port %d: %w", ifname, port, err)
	}
	return conn, nil
}

// InterfaceForIP returns the name of the interface that holds ip.
func InterfaceForIP(ip net.IP) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return ifc.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no interface on this host has address %s: pass --bind-ip with one of this host's addresses or --interface", ip)
}

// Serve answers requests read from conn until ctx ends (then it closes conn).
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	s.log.Info("DHCP server listening", "addr", conn.LocalAddr(), "mode", s.cfg.Mode, "server_ip", s.cfg.ServerIP)
	unicastPort := false
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok && la.Port == PXEPort {
		unicastPort = true
	}
	buf := make([]byte, 4096)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read DHCP request: %w", err)
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.ignored("malformed packet", "peer", peer, "err", err)
			continue
		}
		reply, dst := s.Handle(req)
		if reply == nil {
			continue
		}
		if unicastPort {
			// Requests to the PXE proxy port (4011) are answered where they came from.
			dst, _ = peer.(*net.UDPAddr)
		}
		if _, err := conn.WriteTo(reply.ToBytes(), dst); err != nil {
			s.log.Warn("send DHCP reply", "mac", req.ClientHWAddr, "to", dst, "err", err)
			continue
		}
		if s.cfg.Observer != nil {
			s.cfg.Observer.DHCPReply(req.ClientHWAddr.String(), reply.MessageType().String())
		}
	}
}

// Handle computes the reply to req (nil: no reply) and where to send it.
func (s *Server) Handle(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) != 6 {
		s.ignored("not a BOOTREQUEST from an Ethernet client")
		return nil, nil
	}
	mt := req.MessageType()
	if mt != dhcpv4.MessageTypeDiscover && mt != dhcpv4.MessageTypeRequest {
		if mt == dhcpv4.MessageTypeDecline {
			s.log.Warn("client declined its address (another host uses it?)", "mac", req.ClientHWAddr, "ip", req.RequestedIPAddress())
		}
		s.ignored("message type " + mt.String())
		return nil, nil
	}
	// A REQUEST naming another server means the client picked that server.
	if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(s.cfg.ServerIP) && mt == dhcpv4.MessageTypeRequest {
		s.ignored("request for another server", "mac", req.ClientHWAddr, "server", sid)
		return nil, nil
	}
	mac := req.ClientHWAddr.String()
	m, known := s.cfg.Machines.ByMAC(mac)
	client := Classify(req)
	if !known {
		if s.unknown.allow(mac) {
			// A machine trying to netboot that kiln does not know is most
			// likely a Hardware.csv typo: say so at the default level.
			level := slog.LevelDebug
			if client.Netboot {
				level = slog.LevelWarn
			}
			s.log.Log(context.Background(), level, "ignoring DHCP from a MAC that is not in Hardware.csv (logged once a minute per MAC)",
				"mac", mac, "type", mt.String(), "vendor_class", req.ClassIdentifier(), "netboot", client.Netboot)
		}
		s.ignored("unknown MAC")
		return nil, nil
	}
	allowed := s.cfg.Policy == nil || s.cfg.Policy.NetbootAllowed(m)
	boot, bootOK := Decide(client, s.cfg.Files, s.cfg.URLs)
	if client.Netboot && !allowed {
		boot, bootOK = Boot{Description: "netboot disabled for this machine"}, false
	}
	var reply *dhcpv4.DHCPv4
	var err error
	switch s.cfg.Mode {
	case ModeProxy:
		if !client.Netboot || !bootOK {
			s.log.Debug("proxy DHCP: no boot information for client", "mac", mac, "host", m.Hostname, "why", boot.Description)
			s.ignored("proxy: no boot information")
			return nil, nil
		}
		reply, err = s.proxyReply(req, boot)
	default:
		reply, err = s.reservationReply(req, m, boot, bootOK)
	}
	if err != nil {
		s.log.Warn("cannot answer DHCP request", "mac", mac, "host", m.Hostname, "line", m.Line, "err", err)
		s.ignored("bad inventory row")
		return nil, nil
	}
	s.log.Info("DHCP reply", "mac", mac, "host", m.Hostname, "request", mt.String(), "reply", reply.MessageType().String(),
		"ip", reply.YourIPAddr, "arch", client.Arch, "user_class", client.UserClass, "boot_file", reply.BootFileName, "why", boot.Description)
	return reply, destination(req, reply)
}

func (s *Server) reservationReply(req *dhcpv4.DHCPv4, m hardware.Machine, boot Boot, bootOK bool) (*dhcpv4.DHCPv4, error) {
	ip := net.ParseIP(m.IPAddress).To4()
	if ip == nil {
		return nil, fmt.Errorf("Hardware.csv line %d: ip_address %q is not an IPv4 address", m.Line, m.IPAddress)
	}
	mask := parseMask(m.Netmask)
	if mask == nil {
		return nil, fmt.Errorf("Hardware.csv line %d: netmask %q is not a dotted IPv4 netmask", m.Line, m.Netmask)
	}
	msgType := dhcpv4.MessageTypeOffer
	if req.MessageType() == dhcpv4.MessageTypeRequest {
		msgType = dhcpv4.MessageTypeAck
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		if want != nil && !want.IsUnspecified() && !want.Equal(ip) {
			return dhcpv4.NewReplyFromRequest(req,
				dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP)),
				dhcpv4.WithOption(dhcpv4.OptMessage(fmt.Sprintf("%s is reserved for %s", ip, req.ClientHWAddr))))
		}
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(msgType),
		dhcpv4.WithYourIP(ip),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP)),
		dhcpv4.WithNetmask(mask),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(s.cfg.LeaseTime)),
		dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(broadcast(ip, mask))),
	}
	if gw := net.ParseIP(m.Gateway).To4(); gw != nil {
		mods = append(mods, dhcpv4.WithRouter(gw))
	}
	var dns []net.IP
	for _, n := range m.Nameservers {
		if a := net.ParseIP(n).To4(); a != nil {
			dns = append(dns, a)
		}
	}
	if len(dns) > 0 {
		mods = append(mods, dhcpv4.WithDNS(dns...))
	}
	if m.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(m.Hostname)))
	}
	if s.cfg.Domain != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(s.cfg.Domain)))
	}
	if len(s.cfg.NTP) > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptNTPServers(s.cfg.NTP...)))
	}
	if s.cfg.SyslogIP.To4() != nil {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionLogServer, s.cfg.SyslogIP.To4()))
	}
	if bootOK {
		mods = append(mods, s.bootModifiers(req, boot)...)
	}
	return dhcpv4.NewReplyFromRequest(req, mods...)
}

func (s *Server) proxyReply(req *dhcpv4.DHCPv4, boot Boot) (*dhcpv4.DHCPv4, error) {
	msgType := dhcpv4.MessageTypeOffer
	if req.MessageType() == dhcpv4.MessageTypeRequest {
		msgType = dhcpv4.MessageTypeAck
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(msgType),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP)),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier),
	}
	mods = append(mods, s.bootModifiers(req, boot)...)
	reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, err
	}
	reply.YourIPAddr = net.IPv4zero
	// The proxy offer is iPXE's only source of the script URL: no
	// no-pxedhcp here, iPXE must still take (and confirm on 4011) this offer.
	reply.Options.Del(dhcpv4.GenericOptionCode(175))
	// PXE ROMs must see a class identifier even if the boot file is HTTP.
	if boot.ClassID == "" {
		reply.UpdateOption(dhcpv4.OptClassIdentifier(string(ClientPXE)))
	}
	return reply, nil
}

func (s *Server) bootModifiers(_ *dhcpv4.DHCPv4, boot Boot) []dhcpv4.Modifier {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithServerIP(s.cfg.ServerIP),
		func(d *dhcpv4.DHCPv4) {
			d.BootFileName = boot.File
			d.ServerHostName = s.cfg.ServerIP.String()
		},
	}
	if boot.ClassID != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(boot.ClassID)))
	}
	if boot.IPXE {
		// Option 175 (iPXE encapsulated), sub-option 176 no-pxedhcp = 1:
		// do not wait for ProxyDHCP offers, boot the script now.
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{176, 1, 1}))
	}
	if boot.PXEVendor {
		// Option 43, sub-option 6 (PXE_DISCOVERY_CONTROL) = 8: boot the
		// file named in this reply, skip boot-server discovery.
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
	}
	return mods
}

// destination follows RFC 2131 4.1: to the relay when giaddr is set, to
// the client's address when it has one, else broadcast.
func destination(req, reply *dhcpv4.DHCPv4) *net.UDPAddr {
	if gi := req.GatewayIPAddr; gi != nil && !gi.IsUnspecified() {
		return &net.UDPAddr{IP: gi, Port: dhcpv4.ServerPort}
	}
	if ci := req.ClientIPAddr; ci != nil && !ci.IsUnspecified() && reply.MessageType() != dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: ci, Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

func (s *Server) ignored(reason string, args ...any) {
	if len(args) > 0 {
		s.log.Debug("DHCP request ignored: "+reason, args...)
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.DHCPIgnored(reason)
	}
}

func parseMask(s string) net.IPMask {
	ip := net.ParseIP(s).To4()
	if ip == nil {
		return nil
	}
	m := net.IPMask(ip)
	if ones, bits := m.Size(); ones == 0 && bits == 0 {
		return nil
	}
	return m
}

func broadcast(ip net.IP, mask net.IPMask) net.IP {
	b := make(net.IP, 4)
	for i := range b {
		b[i] = ip[i] | ^mask[i]
	}
	return b
}

// rateLimiter lets one event per key through per interval, remembering at
// most max keys (it forgets all of them when full).
type rateLimiter struct {
	mu       sync.Mutex
	interval time.Duration
	max      int
	last     map[string]time.Time
}

func newRateLimiter(interval time.Duration, maxKeys int) *rateLimiter {
	return &rateLimiter{interval: interval, max: maxKeys, last: map[string]time.Time{}}
}

func (r *rateLimiter) allow(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if t, ok := r.last[key]; ok && now.Sub(t) < r.interval {
		return false
	}
	if len(r.last) >= r.max {
		clear(r.last)
	}
	r.last[key] = now
	return true
}
