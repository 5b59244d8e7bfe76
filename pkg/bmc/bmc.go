// Package bmc powers machines on and off and sets their next boot device
// through their baseboard management controllers, using bmclib (Redfish first,
// IPMI through ipmitool as the fallback). Every operation has a deadline, every
// error names the machine and its BMC, and credentials never reach a log line
// or an error message.
package bmc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/providers/ipmitool"
	"github.com/bmc-toolbox/bmclib/v2/providers/redfish"

	"github.com/kiln-dev/kiln/pkg/hardware"
)

// PowerState is a machine's power state as its BMC reports it.
type PowerState string

// Power states.
const (
	PowerOn      PowerState = "on"
	PowerOff     PowerState = "off"
	PowerUnknown PowerState = "unknown"
)

// BootDevice is a device a machine can be told to boot from next.
type BootDevice string

// Boot devices.
const (
	BootPXE  BootDevice = "pxe"
	BootDisk BootDevice = "disk"
)

// Protocols bmclib can speak, in kiln's default order of preference.
const (
	ProtocolRedfish = "redfish"
	ProtocolIPMI    = "ipmi"
)

// DefaultTimeout bounds one BMC operation when Config.Timeout is zero.
const DefaultTimeout = 60 * time.Second

// BMC is what kiln needs from a machine's management controller. The lab's
// virtual BMCs and real servers' BMCs are both driven through it.
type BMC interface {
	// PowerState reports whether the machine is on or off.
	PowerState(ctx context.Context) (PowerState, error)
	// PowerOn turns the machine on; a machine already on is left alone.
	PowerOn(ctx context.Context) error
	// PowerOff cuts power immediately (no graceful shutdown).
	PowerOff(ctx context.Context) error
	// PowerCycle restarts a running machine, or turns on one that is off.
	PowerCycle(ctx context.Context) error
	// SetNextBoot sets the device the machine boots from on its next start.
	SetNextBoot(ctx context.Context, dev BootDevice, opts BootOptions) error
}

// BootOptions refine SetNextBoot.
type BootOptions struct {
	// EFI asks for a UEFI boot rather than a legacy BIOS boot.
	EFI bool
	// Persistent keeps the device for every later boot, not only the next one.
	Persistent bool
}

// Config says how to reach one BMC.
type Config struct {
	// Name is the machine the BMC belongs to (its hostname), used in messages.
	Name string
	// Host is the BMC's address: an IP or DNS name, optionally with ":port".
	Host string
	// Port overrides the protocol's default port (443 Redfish, 623 IPMI).
	Port     int
	Username string
	// Password is never logged nor included in an error.
	Password string
	// Protocols lists the protocols to try, in order; empty means Redfish then IPMI.
	Protocols []string
	// Timeout bounds each operation; zero means DefaultTimeout.
	Timeout time.Duration
	// RootCAs, when set, makes Redfish verify the BMC's certificate against
	// these CAs. When nil the certificate is not verified: BMCs ship
	// self-signed certificates.
	RootCAs *x509.CertPool
	// PollInterval is how often power changes are verified; zero means 1s.
	PollInterval time.Duration
	// Dial, when set, opens the TCP connections to a Redfish BMC, e.g.
	// inside a network namespace.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// LogValue keeps the password out of structured logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("machine", c.Name),
		slog.String("host", c.Host),
		slog.String("user", c.Username),
		slog.Any("protocols", c.protocols()),
	)
}

// String keeps the password out of %v formatting.
func (c Config) String() string {
	return fmt.Sprintf("BMC %s of %s (user %s)", c.Host, c.Name, c.Username)
}

// FromMachine returns the BMC configuration of a Hardware.csv row.
func FromMachine(m hardware.Machine) Config {
	return Config{Name: m.Hostname, Host: m.BMCIP, Username: m.BMCUsername, Password: m.BMCPassword}
}

func (c Config) protocols() []string {
	if len(c.Protocols) == 0 {
		return []string{ProtocolRedfish, ProtocolIPMI}
	}
	return c.Protocols
}

// Client drives one BMC through bmclib. Each operation opens a fresh
// connection and closes it again, so a Client holds no session between calls
// and is safe for concurrent use.
type Client struct {
	cfg  Config
	host string
	port int
	log  *slog.Logger
}

var _ BMC = (*Client)(nil)

// New validates cfg and returns a client for it. log may be nil.
func New(cfg Config, log *slog.Logger) (*Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, port := cfg.Host, cfg.Port
	if h, p, err := net.SplitHostPort(cfg.Host); err == nil {
		n, perr := strconv.Atoi(p)
		if perr != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("machine %s: BMC address %q has an invalid port; use host or host:port", cfg.Name, cfg.Host)
		}
		host = h
		if port == 0 {
			port = n
		}
	}
	if host == "" {
		return nil, fmt.Errorf("machine %s: no BMC address; set bmc_ip in Hardware.csv", cfg.Name)
	}
	if cfg.Username == "" {
		return nil, fmt.Errorf("machine %s: BMC %s has no username; set bmc_username in Hardware.csv", cfg.Name, cfg.Host)
	}
	for _, p := range cfg.protocols() {
		if p != ProtocolRedfish && p != ProtocolIPMI {
			return nil, fmt.Errorf("machine %s: BMC protocol %q is not supported; use %q or %q", cfg.Name, p, ProtocolRedfish, ProtocolIPMI)
		}
	}
	return &Client{cfg: cfg, host: host, port: port, log: log.With("bmc", cfg)}, nil
}

// PowerState implements BMC.
func (c *Client) PowerState(ctx context.Context) (PowerState, error) {
	var st PowerState
	err := c.do(ctx, "read power state", func(ctx context.Context, cl *bmclib.Client) error {
		raw, err := cl.GetPowerState(ctx)
		if err != nil {
			return err
		}
		st = ParsePowerState(raw)
		return nil
	})
	return st, err
}

// PowerOn implements BMC and waits until the BMC reports the machine on.
func (c *Client) PowerOn(ctx context.Context) error {
	return c.setPower(ctx, "power on", "on", PowerOn)
}

// PowerOff implements BMC and waits until the BMC reports the machine off.
func (c *Client) PowerOff(ctx context.Context) error {
	return c.setPower(ctx, "power off", "off", PowerOff)
}

// PowerCycle implements BMC.
func (c *Client) PowerCycle(ctx context.Context) error {
	return c.do(ctx, "power cycle", func(ctx context.Context, cl *bmclib.Client) error {
		raw, err := cl.GetPowerState(ctx)
		if err != nil {
			return err
		}
		if ParsePowerState(raw) == PowerOff {
			// A cycle of a machine that is off is refused by most BMCs; turn it on.
			return setAndWait(ctx, cl, "on", PowerOn, c.pollInterval())
		}
		ok, err := cl.SetPowerState(ctx, "cycle")
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("the BMC did not accept the power cycle")
		}
		return nil
	})
}

// SetNextBoot implements BMC.
func (c *Client) SetNextBoot(ctx context.Context, dev BootDevice, opts BootOptions) error {
	if dev != BootPXE && dev != BootDisk {
		return fmt.Errorf("machine %s: boot device %q is not supported; use %q or %q", c.cfg.Name, dev, BootPXE, BootDisk)
	}
	return c.do(ctx, fmt.Sprintf("set next boot to %s", dev), func(ctx context.Context, cl *bmclib.Client) error {
		ok, err := cl.SetBootDevice(ctx, string(dev), opts.Persistent, opts.EFI)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("the BMC did not accept the boot device")
		}
		return nil
	})
}

func (c *Client) setPower(ctx context.Context, what, action string, want PowerState) error {
	return c.do(ctx, what, func(ctx context.Context, cl *bmclib.Client) error {
		return setAndWait(ctx, cl, action, want, c.pollInterval())
	})
}

// setAndWait asks for a power state and polls until the BMC reports it, as
// BMCs acknowledge a request before the machine has changed state.
func setAndWait(ctx context.Context, cl *bmclib.Client, action string, want PowerState, every time.Duration) error {
	raw, err := cl.GetPowerState(ctx)
	if err == nil && ParsePowerState(raw) == want {
		return nil
	}
	ok, err := cl.SetPowerState(ctx, action)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the BMC did not accept power %s", action)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := PowerUnknown
	for {
		raw, err := cl.GetPowerState(ctx)
		if err == nil {
			last = ParsePowerState(raw)
			if last == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the machine is still %s after asking for power %s: %w", last, action, ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Client) pollInterval() time.Duration {
	if c.cfg.PollInterval > 0 {
		return c.cfg.PollInterval
	}
	return time.Second
}

// do opens a connection limited to the configured protocols, runs fn and
// closes the connection, all within the operation's timeout.
func (c *Client) do(ctx context.Context, what string, fn func(context.Context, *bmclib.Client) error) error {
	timeout := c.cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()

	cl := c.newBMCLib()
	err := cl.Open(ctx)
	if err == nil {
		err = fn(ctx, cl)
		closeCtx, closeCancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if cerr := cl.Close(closeCtx); cerr != nil {
			c.log.Debug("closing BMC connection failed", "err", c.redact(cerr))
		}
		closeCancel()
	}
	md := cl.GetMetadata()
	if err != nil {
		err = c.redact(err)
		c.log.Debug("BMC operation failed", "op", what, "providers", md.ProvidersAttempted, "took", time.Since(start), "err", err)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("machine %s: BMC %s: %s: no answer within %s (is the BMC reachable and are the protocols %v right?): %w", c.cfg.Name, c.cfg.Host, what, timeout, c.cfg.protocols(), err)
		}
		return fmt.Errorf("machine %s: BMC %s: %s: %w", c.cfg.Name, c.cfg.Host, what, err)
	}
	c.log.Debug("BMC operation done", "op", what, "provider", md.SuccessfulProvider, "took", time.Since(start))
	return nil
}

func (c *Client) newBMCLib() *bmclib.Client {
	var opts []bmclib.Option
	if c.port != 0 {
		p := strconv.Itoa(c.port)
		opts = append(opts, bmclib.WithRedfishPort(p), bmclib.WithIpmitoolPort(p))
	}
	if c.cfg.Dial != nil {
		tr := &http.Transport{
			DialContext:           c.cfg.Dial,
			TLSClientConfig:       &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // BMCs use self-signed certificates; RootCAs turns verification on
			DisableKeepAlives:     true,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
		}
		opts = append(opts, bmclib.WithHTTPClient(&http.Client{Transport: tr, Timeout: 2 * time.Minute}))
	}
	if c.cfg.RootCAs != nil {
		opts = append(opts, bmclib.WithSecureTLS(c.cfg.RootCAs))
	}
	cl := bmclib.NewClient(c.host, c.cfg.Username, c.cfg.Password, opts...)
	// Keep only the drivers of the configured protocols, in the configured order.
	var names []string
	for _, p := range c.cfg.protocols() {
		switch p {
		case ProtocolRedfish:
			names = append(names, redfish.ProviderName)
		case ProtocolIPMI:
			names = append(names, ipmitool.ProviderName)
		}
	}
	var keep = cl.Registry.Drivers[:0:0]
	for _, n := range names {
		keep = append(keep, cl.Registry.For(n)...)
	}
	cl.Registry.Drivers = keep
	return cl
}

// redact removes the password from an error's text; provider errors may
// quote command lines or request bodies.
func (c *Client) redact(err error) error {
	if err == nil || c.cfg.Password == "" || !strings.Contains(err.Error(), c.cfg.Password) {
		return err
	}
	// Deliberately not wrapping err: its text is what must not escape.
	return errors.New(strings.ReplaceAll(err.Error(), c.cfg.Password, "<redacted>"))
}

// ParsePowerState maps the power strings BMCs return ("On", "Off",
// "PoweringOn", "Chassis Power is on", …) to a PowerState.
func ParsePowerState(raw string) PowerState {
	s := strings.ToLower(strings.TrimSpace(raw))
	if i := strings.LastIndexAny(s, " \t"); i >= 0 {
		s = s[i+1:]
	}
	switch s {
	case "on", "poweringoff":
		return PowerOn
	case "off", "poweringon":
		return PowerOff
	}
	return PowerUnknown
}
