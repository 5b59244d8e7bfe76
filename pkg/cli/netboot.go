package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/cliout"
	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/metadata"
	"github.com/kiln-dev/kiln/pkg/netboot"
	"github.com/kiln-dev/kiln/pkg/netboot/binary"
	"github.com/kiln-dev/kiln/pkg/netboot/dhcp"
)

type netbootOptions struct {
	hardwareCSV    string
	bindIP         string
	iface          string
	dhcpMode       string
	hookDir        string
	imageDir       string
	ipxeDir        string
	httpPort       int
	tftpPort       int
	syslogPort     int
	grpcAuthority  string
	tls            bool
	insecureTLS    bool
	leaseTime      time.Duration
	domain         string
	ntp            []string
	tftpBlockSize  int
	tftpSinglePort bool
	kernelArgs     []string
	sshKeyFiles    []string
	noNetboot      []string
}

func newServeNetbootCommand(streams Streams) *cobra.Command {
	o := &netbootOptions{}
	cmd := &cobra.Command{
		Use:   "netboot",
		Short: "Run DHCP, TFTP, iPXE over HTTP, metadata and syslog for the machines in Hardware.csv",
		Long: `Run kiln's netboot stack in the foreground until SIGINT/SIGTERM:
DHCP (reservation: only Hardware.csv MACs get their reserved address; proxy:
boot information only, next to an existing DHCP server; off), TFTP for the
iPXE binaries, one HTTP listener for the per-machine iPXE script, the
in-memory OS (--hook-dir), OS images (--image-dir), EC2-style metadata,
/healthz and /metrics, and a syslog receiver. See docs/netboot.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServeNetboot(cmd.Context(), streams, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.hardwareCSV, "hardware-csv", "", "machine inventory (required)")
	f.StringVar(&o.bindIP, "bind-ip", "", "this host's IPv4 address on the boot network (required)")
	f.StringVar(&o.iface, "interface", "", "interface DHCP binds to (default: the one holding --bind-ip)")
	f.StringVar(&o.dhcpMode, "dhcp-mode", string(dhcp.ModeReservation), "reservation, proxy or off")
	f.StringVar(&o.hookDir, "hook-dir", "", "directory with vmlinuz-<arch> and initramfs-<arch> of the in-memory OS, served at /hook/")
	f.StringVar(&o.imageDir, "image-dir", "", "directory of OS images, served at /images/")
	f.StringVar(&o.ipxeDir, "ipxe-dir", binary.DefaultDir, "directory with undionly.kpxe and ipxe.efi (Debian package ipxe)")
	f.IntVar(&o.httpPort, "http-port", netboot.DefaultHTTPPort, "HTTP port (0: any free port)")
	f.IntVar(&o.tftpPort, "tftp-port", netboot.DefaultTFTPPort, "TFTP port (PXE ROMs only use 69)")
	f.IntVar(&o.syslogPort, "syslog-port", netboot.DefaultSyslogPort, "syslog UDP port")
	f.StringVar(&o.grpcAuthority, "grpc-authority", "", "workflow server ip:port put on the kernel command line (default <bind-ip>:42113)")
	f.BoolVar(&o.tls, "tinkerbell-tls", false, "tell the agent to use TLS to the workflow server")
	f.BoolVar(&o.insecureTLS, "tinkerbell-insecure-tls", false, "tell the agent to skip TLS verification")
	f.DurationVar(&o.leaseTime, "lease-time", 24*time.Hour, "DHCP lease time sent to every machine")
	f.StringVar(&o.domain, "domain", "", "DHCP domain name (option 15)")
	f.StringSliceVar(&o.ntp, "ntp", nil, "NTP server IPs (option 42)")
	f.IntVar(&o.tftpBlockSize, "tftp-block-size", 1468, "largest TFTP block size agreed with clients (512-65456)")
	f.BoolVar(&o.tftpSinglePort, "tftp-single-port", false, "serve every TFTP transfer from port 69 (NAT, strict firewalls)")
	f.StringSliceVar(&o.kernelArgs, "extra-kernel-args", nil, "extra kernel arguments for the in-memory OS (key=value)")
	f.StringSliceVar(&o.noNetboot, "disable-netboot", nil, "MACs or hostnames that get their address but no boot file (they boot from disk)")
	f.StringSliceVar(&o.sshKeyFiles, "ssh-public-key-file", nil, "public key file(s) served as metadata public-keys")
	return cmd
}

func runServeNetboot(ctx context.Context, streams Streams, o *netbootOptions) error {
	if o.hardwareCSV == "" {
		return usageError("--hardware-csv is required")
	}
	ip := net.ParseIP(o.bindIP).To4()
	if ip == nil {
		return usageError("--bind-ip %q must be an IPv4 address of this host on the boot network", o.bindIP)
	}
	if o.dhcpMode != netboot.DHCPOff {
		if _, err := dhcp.ParseMode(o.dhcpMode); err != nil {
			return usageError("--dhcp-mode: %v (or off)", err)
		}
	}
	var ntp []net.IP
	for _, s := range o.ntp {
		n := net.ParseIP(s).To4()
		if n == nil {
			return usageError("--ntp %q is not an IPv4 address", s)
		}
		ntp = append(ntp, n)
	}
	start := time.Now()
	inv, err := hardware.ReadFile(o.hardwareCSV)
	cliout.Progress(streams.Out, fmt.Sprintf("read %s", o.hardwareCSV), "", time.Since(start), err)
	if err != nil {
		return withExitCode(ExitInvalidInput, err)
	}
	policy := netboot.NewToggle(true)
	for _, name := range o.noNetboot {
		m, ok := inv.ByMAC(name)
		if !ok {
			m, ok = inv.ByHostname(name)
		}
		if !ok {
			return usageError("--disable-netboot %q is neither a MAC nor a hostname in %s", name, o.hardwareCSV)
		}
		policy.Set(m.MAC, false)
	}
	var keys []string
	for _, p := range o.sshKeyFiles {
		b, err := os.ReadFile(p)
		if err != nil {
			return withExitCode(ExitInvalidInput, fmt.Errorf("--ssh-public-key-file: %w", err))
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				keys = append(keys, line)
			}
		}
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	start = time.Now()
	srv, err := netboot.Start(ctx, netboot.Config{
		BindIP: ip, Interface: o.iface, DHCPMode: o.dhcpMode, Machines: inv, Policy: policy,
		IPXEDir: o.ipxeDir, HookDir: o.hookDir, ImageDir: o.imageDir,
		HTTPPort: o.httpPort, TFTPPort: o.tftpPort, SyslogPort: o.syslogPort, EphemeralPorts: true,
		GRPCAuthority: o.grpcAuthority, TLS: o.tls, InsecureTLS: o.insecureTLS, ExtraKernelArgs: o.kernelArgs,
		LeaseTime: o.leaseTime, Domain: o.domain, NTP: ntp, TFTPBlockSize: o.tftpBlockSize, TFTPSinglePort: o.tftpSinglePort,
		Metadata: metadata.Static{Keys: keys}, Log: slog.Default(),
	})
	cliout.Progress(streams.Out, fmt.Sprintf("start netboot for %d machines (dhcp %s)", len(inv.Machines), o.dhcpMode), "", time.Since(start), err)
	if err != nil {
		return withExitCode(ExitInvalidInput, err)
	}
	fmt.Fprintf(streams.Out, "  http://%s  tftp %s  syslog %s; stop with Ctrl-C\n", srv.HTTPAddr(), srv.TFTPAddr(), srv.SyslogAddr())
	<-srv.Done()
	start = time.Now()
	srv.Shutdown()
	err = srv.Wait()
	cliout.Progress(streams.Out, "stop netboot", "", time.Since(start), err)
	if err != nil {
		return withExitCode(ExitInvalidInput, err)
	}
	return nil
}
