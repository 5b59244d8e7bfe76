// Package netboot runs kiln's netboot stack as one unit: DHCP (reservation
// or proxy), TFTP for the iPXE binaries, the single HTTP listener (iPXE
// scripts and binaries, the in-memory OS, OS images, EC2-style metadata,
// /healthz, /metrics, the per-machine journal and any handlers other
// capabilities mount) and the syslog receiver.
package netboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/metadata"
	"github.com/kiln-dev/kiln/pkg/netboot/binary"
	"github.com/kiln-dev/kiln/pkg/netboot/dhcp"
	"github.com/kiln-dev/kiln/pkg/netboot/files"
	"github.com/kiln-dev/kiln/pkg/netboot/ipxe"
	"github.com/kiln-dev/kiln/pkg/netboot/metrics"
	"github.com/kiln-dev/kiln/pkg/netboot/tftp"
	"github.com/kiln-dev/kiln/pkg/syslog"
)

// Default ports.
const (
	DefaultHTTPPort   = 7080
	DefaultTFTPPort   = 69
	DefaultSyslogPort = 514
	DefaultDHCPPort   = 67
)

// DHCPOff disables kiln's DHCP server (another server does the chain).
const DHCPOff = "off"

// Machines is the inventory view the services need; *hardware.Inventory
// implements it.
type Machines interface {
	ByMAC(mac string) (hardware.Machine, bool)
	ByIP(ip string) (hardware.Machine, bool)
}

// Policy says whether a machine may netboot now; nil means always.
type Policy interface {
	NetbootAllowed(m hardware.Machine) bool
}

// Mount is an extra handler on kiln's HTTP listener, e.g. the lab's
// phone-home endpoint or the workflow server's status pages. Prefix is a
// net/http ServeMux pattern such as "/phone-home/" or "GET /workflows/".
type Mount struct {
	Prefix  string
	Handler http.Handler
}

// Config configures the stack. Zero ports mean the defaults; set
// EphemeralPorts in tests to let the kernel pick HTTP, TFTP and syslog ports.
type Config struct {
	BindIP    net.IP
	Interface string // default: the interface that holds BindIP
	DHCPMode  string // reservation (default), proxy or off
	Machines  Machines
	Policy    Policy

	IPXEDir   string // default /usr/lib/ipxe
	BootFiles dhcp.BootFiles
	HookDir   string // vmlinuz-<arch>, initramfs-<arch>; served at /hook/
	ImageDir  string // OS images; served at /images/

	HTTPPort, TFTPPort, SyslogPort, DHCPPort int
	EphemeralPorts                           bool

	GRPCAuthority   string // default <BindIP>:42113
	TLS             bool
	InsecureTLS     bool
	ExtraKernelArgs []string

	LeaseTime      time.Duration
	Domain         string
	NTP            []net.IP
	TFTPBlockSize  int
	TFTPSinglePort bool

	Metadata metadata.Source
	Mounts   []Mount
	Log      *slog.Logger
	// RunIn, when set, wraps every service loop, e.g. netns.Namespace.Do
	// when kiln runs in-process inside a network namespace (tests, lab):
	// TFTP opens a socket per transfer, which must land in the same
	// namespace as the listener. Call Start itself inside the namespace too.
	RunIn func(fn func() error) error
}

// Server is a running netboot stack.
type Server struct {
	cfg      Config
	log      *slog.Logger
	Journal  *Journal
	Metrics  *metrics.Metrics
	httpAddr *net.TCPAddr
	tftpAddr *net.UDPAddr
	sysAddr  *net.UDPAddr
	handler  http.Handler
	wg       sync.WaitGroup
	errs     chan error
	cancel   context.CancelFunc
	done     <-chan struct{}
	closers  []func()
}

func (c *Config) defaults() error {
	if c.BindIP.To4() == nil {
		return fmt.Errorf("--bind-ip %q must be an IPv4 address of this host on the boot network", c.BindIP)
	}
	c.BindIP = c.BindIP.To4()
	if c.Machines == nil {
		return errors.New("netboot needs a machine inventory (--hardware-csv)")
	}
	if inv, ok := c.Machines.(*hardware.Inventory); ok {
		c.Machines = newIndex(inv)
	}
	if c.DHCPMode == "" {
		c.DHCPMode = string(dhcp.ModeReservation)
	}
	if c.DHCPMode != DHCPOff {
		if _, err := dhcp.ParseMode(c.DHCPMode); err != nil {
			return fmt.Errorf("--dhcp-mode: %w (or off)", err)
		}
	}
	if c.IPXEDir == "" {
		c.IPXEDir = binary.DefaultDir
	}
	if c.BootFiles == (dhcp.BootFiles{}) {
		c.BootFiles = dhcp.DefaultBootFiles
	}
	def := func(p *int, d int) {
		if *p == 0 && !c.EphemeralPorts {
			*p = d
		}
	}
	def(&c.HTTPPort, DefaultHTTPPort)
	def(&c.TFTPPort, DefaultTFTPPort)
	def(&c.SyslogPort, DefaultSyslogPort)
	if c.DHCPPort == 0 {
		c.DHCPPort = DefaultDHCPPort
	}
	if c.GRPCAuthority == "" {
		c.GRPCAuthority = net.JoinHostPort(c.BindIP.String(), strconv.Itoa(ipxe.DefaultGRPCPort))
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return nil
}

// Start checks cfg, loads the iPXE binaries, opens every socket (so a port
// in use or a missing file fails here, with the reason) and starts serving
// until ctx ends or Shutdown is called.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	log := cfg.Log
	bins, missing, err := binary.Load(cfg.IPXEDir, []string{cfg.BootFiles.BIOS, cfg.BootFiles.EFIx64}, []string{cfg.BootFiles.EFIArm, "snponly.efi"})
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		log.Warn("optional iPXE binaries not found; clients that need them get no boot file", "dir", cfg.IPXEDir, "missing", missing)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Server{cfg: cfg, log: log, Journal: NewJournal(64), Metrics: metrics.New(), errs: make(chan error, 8), cancel: cancel, done: ctx.Done()}
	ok := false
	defer func() {
		if !ok {
			s.Shutdown()
		}
	}()
	bind := cfg.BindIP.String()

	// Sockets first: their real addresses go into URLs.
	httpLn, err := net.Listen("tcp4", net.JoinHostPort(bind, strconv.Itoa(cfg.HTTPPort)))
	if err != nil {
		return nil, fmt.Errorf("listen for HTTP on %s:%d: %w", bind, cfg.HTTPPort, err)
	}
	s.closers = append(s.closers, func() { _ = httpLn.Close() })
	s.httpAddr = httpLn.Addr().(*net.TCPAddr)
	tftpConn, err := tftp.Listen(net.JoinHostPort(bind, strconv.Itoa(cfg.TFTPPort)))
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { _ = tftpConn.Close() })
	s.tftpAddr = tftpConn.LocalAddr().(*net.UDPAddr)
	sysConn, err := syslog.Listen(net.JoinHostPort(bind, strconv.Itoa(cfg.SyslogPort)))
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { _ = sysConn.Close() })
	s.sysAddr = sysConn.LocalAddr().(*net.UDPAddr)

	base := "http://" + s.httpAddr.String()
	script, err := ipxe.NewScript(ipxe.ScriptConfig{
		HTTPBase: base, GRPCAuthority: cfg.GRPCAuthority, SyslogIP: bind,
		TLS: cfg.TLS, InsecureTLS: cfg.InsecureTLS, ExtraKernelArgs: cfg.ExtraKernelArgs,
	})
	if err != nil {
		return nil, err
	}
	if s.handler, err = s.buildHandler(script, bins); err != nil {
		return nil, err
	}

	var dhcpConns []net.PacketConn
	if cfg.DHCPMode != DHCPOff {
		ifname := cfg.Interface
		if ifname == "" {
			if ifname, err = dhcp.InterfaceForIP(cfg.BindIP); err != nil {
				return nil, err
			}
		}
		d, err := dhcp.New(dhcp.Config{
			Mode: dhcp.Mode(cfg.DHCPMode), ServerIP: cfg.BindIP, Machines: cfg.Machines, Policy: cfg.Policy,
			Files: cfg.BootFiles, URLs: dhcp.URLs{HTTPBase: base}, LeaseTime: cfg.LeaseTime, Domain: cfg.Domain,
			NTP: cfg.NTP, SyslogIP: cfg.BindIP, Observer: observer{s}, Log: log,
		})
		if err != nil {
			return nil, err
		}
		ports := []int{cfg.DHCPPort}
		if cfg.DHCPMode == string(dhcp.ModeProxy) {
			ports = append(ports, dhcp.PXEPort)
		}
		for _, p := range ports {
			c, err := dhcp.Listen(ifname, p)
			if err != nil {
				return nil, fmt.Errorf("%w (is another DHCP server such as dnsmasq running? use --dhcp-mode proxy or off next to it)", err)
			}
			s.closers = append(s.closers, func() { _ = c.Close() })
			dhcpConns = append(dhcpConns, c)
		}
		for _, c := range dhcpConns {
			s.run("dhcp", func() error { return d.Serve(ctx, c) })
		}
	}
	t, err := tftp.New(tftp.Config{Files: bins, BlockSize: cfg.TFTPBlockSize, SinglePort: cfg.TFTPSinglePort, Observer: observer{s}, Log: log})
	if err != nil {
		return nil, err
	}
	s.run("tftp", func() error { return t.Serve(ctx, tftpConn) })
	sl := &syslog.Server{Machines: cfg.Machines, Observer: s.Metrics, Log: log}
	s.run("syslog", func() error { return sl.Serve(ctx, sysConn) })
	hs := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.run("http", func() error {
		if err := hs.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) && ctx.Err() == nil {
			return err
		}
		return nil
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = hs.Shutdown(sctx)
	}()
	log.Info("netboot stack running", "bind_ip", bind, "dhcp", cfg.DHCPMode, "http", s.httpAddr, "tftp", s.tftpAddr, "syslog", s.sysAddr, "ipxe_dir", cfg.IPXEDir, "binaries", bins.Names())
	ok = true
	return s, nil
}

func (s *Server) buildHandler(script *ipxe.Script, bins *binary.Set) (http.Handler, error) {
	mux := http.NewServeMux()
	mux.Handle("/ipxe/", &ipxe.Handler{Script: script, Machines: s.cfg.Machines, Policy: s.cfg.Policy, Binaries: bins, Recorder: s.Journal, Log: s.log.With("component", "http")})
	for _, d := range []struct{ dir, prefix string }{{s.cfg.HookDir, "/hook/"}, {s.cfg.ImageDir, "/images/"}} {
		if d.dir == "" {
			continue
		}
		fd, err := files.Open(d.dir, d.prefix, s.Metrics, s.log)
		if err != nil {
			return nil, fmt.Errorf("serve %s: %w", d.prefix, err)
		}
		s.closers = append(s.closers, func() { _ = fd.Close() })
		if d.prefix == "/hook/" {
			for _, n := range []string{"vmlinuz-x86_64", "initramfs-x86_64"} {
				if !fd.Has(n) {
					s.log.Warn("in-memory OS artifact missing: x86_64 machines will fail to boot until it exists", "dir", d.dir, "file", n)
				}
			}
		}
		mux.Handle(d.prefix, s.recordHook(d.prefix, fd))
	}
	mux.Handle("/"+metadata.Version+"/", &metadata.Handler{Machines: s.cfg.Machines, Source: s.cfg.Metadata, Log: s.log.With("component", "metadata")})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("GET /metrics", s.Metrics.Handler())
	mux.Handle("GET /netboot/machines", s.Journal)
	for _, m := range s.cfg.Mounts {
		if err := safeHandle(mux, m); err != nil {
			return nil, err
		}
	}
	return s.countRequests(mux), nil
}

func safeHandle(mux *http.ServeMux, m Mount) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot mount HTTP handler at %q: %v", m.Prefix, r)
		}
	}()
	mux.Handle(m.Prefix, m.Handler)
	return nil
}

// recordHook notes in the journal which in-memory OS files a machine fetched.
func (s *Server) recordHook(prefix string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			if m, ok := s.cfg.Machines.ByIP(host); ok {
				s.Journal.Record(m.MAC, "http "+prefix+strings.TrimPrefix(r.URL.Path, prefix))
			}
		}
		h.ServeHTTP(w, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(c int) { w.code = c; w.ResponseWriter.WriteHeader(c) }

// Unwrap lets http.ResponseController and sendfile reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) countRequests(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		mux.ServeHTTP(sw, r)
		_, route := mux.Handler(r)
		if route == "" {
			route = "unmatched"
		}
		s.Metrics.HTTPRequest(route, strconv.Itoa(sw.code))
	})
}

func (s *Server) run(name string, fn func() error) {
	if s.cfg.RunIn != nil {
		inner := fn
		fn = func() error { return s.cfg.RunIn(inner) }
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil {
			s.errs <- fmt.Errorf("%s: %w", name, err)
			s.cancel()
		}
	}()
}

// Handler is the HTTP handler kiln serves (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// HTTPAddr, TFTPAddr and SyslogAddr are the addresses actually listened on.
func (s *Server) HTTPAddr() *net.TCPAddr   { return s.httpAddr }
func (s *Server) TFTPAddr() *net.UDPAddr   { return s.tftpAddr }
func (s *Server) SyslogAddr() *net.UDPAddr { return s.sysAddr }

// Done is closed when the stack is stopping: its context ended, Shutdown
// was called or a service failed (Wait then returns the error).
func (s *Server) Done() <-chan struct{} { return s.done }

// Wait blocks until every service stopped and returns the first error.
func (s *Server) Wait() error {
	s.wg.Wait()
	select {
	case err := <-s.errs:
		return err
	default:
		return nil
	}
}

// Shutdown stops every service and waits for them.
func (s *Server) Shutdown() {
	s.cancel()
	for _, c := range s.closers {
		c()
	}
	s.wg.Wait()
}

// observer feeds DHCP and TFTP events to the metrics and the journal.
type observer struct{ s *Server }

func (o observer) DHCPReply(mac, msgType string) {
	o.s.Metrics.DHCPReply(mac, msgType)
	o.s.Journal.Record(mac, "dhcp "+msgType)
}

func (o observer) DHCPIgnored(reason string) { o.s.Metrics.DHCPIgnored(reason) }

func (o observer) TFTPTransfer(peer net.IP, mac, file string, n int64) {
	o.s.Metrics.BytesServed("tftp", n)
	if mac == "" && peer != nil {
		if m, ok := o.s.cfg.Machines.ByIP(peer.String()); ok {
			mac = m.MAC
		}
	}
	if mac != "" {
		o.s.Journal.Record(mac, "tftp "+file)
	}
}
