package cli

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/bmc"
	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/lab"
	"github.com/kiln-dev/kiln/pkg/lab/phonehome"
	"github.com/kiln-dev/kiln/pkg/qemu"
)

// PhoneHomePort is where `kiln lab up` serves the phone-home endpoint on the
// lab's admin address when no kiln HTTP server mounts it.
const labPhoneHomePort = 7171

func newLabCommand(streams Streams) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A rack in a box: QEMU machines with virtual BMCs (Redfish or IPMI) on an isolated network",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", "lab", "the lab's directory (state, disks, consoles, Hardware.csv, ClusterSpec.yml)")
	cmd.AddCommand(newLabUpCommand(streams, &dir), newLabDownCommand(streams, &dir), newLabStatusCommand(streams, &dir), newLabConsoleCommand(streams, &dir), newLabPowerCommand(streams, &dir))
	return cmd
}

func newLabUpCommand(streams Streams, dir *string) *cobra.Command {
	var (
		opts     lab.Options
		uefi     bool
		firmware []string
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create the lab and keep it running until interrupted (or `kiln lab down`)",
		Long: `Creates an isolated network (namespace <prefix> with bridge <prefix>br, joined to this
host by the veth <prefix>h carrying the admin address .1 and one address per BMC .101+),
N powered-off QEMU machines (software emulation unless --kvm) each with a raw disk and
a MAC on a tap, and one virtual BMC per machine that powers the machine and sets its
next boot device: Redfish on <bmc address>:443 (--bmc redfish, the default) or IPMI
v2.0 over RMCP+ on <bmc address>:623/udp (--bmc ipmi; ipmitool -I lanplus, cipher
suites 3 and 17). Writes Hardware.csv and a matching
ClusterSpec.yml into --dir, serves the phone-home endpoint on <admin address>:7171,
and runs until SIGINT/SIGTERM, then removes everything it created.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Dir = *dir
			if opts.BMC != lab.BMCRedfish && opts.BMC != lab.BMCIPMI {
				return usageError("--bmc %q: use %s or %s", opts.BMC, lab.BMCRedfish, lab.BMCIPMI)
			}
			if uefi && len(firmware) > 0 {
				return usageError("use --uefi or --firmware, not both")
			}
			if uefi {
				opts.Firmware = []qemu.Firmware{qemu.UEFI}
			}
			for _, f := range firmware {
				switch qemu.Firmware(strings.ToLower(f)) {
				case qemu.BIOS, qemu.UEFI:
					opts.Firmware = append(opts.Firmware, qemu.Firmware(strings.ToLower(f)))
				default:
					return usageError("--firmware %q: use bios or uefi", f)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p := progress{streams.Out}
			var l *lab.Lab
			err := p.step("create lab", func() (string, error) {
				var err error
				l, err = lab.Up(ctx, opts)
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%d machines on %s in %s", len(l.State.Machines), l.State.Subnet, l.Dir), nil
			})
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			defer func() {
				_ = p.step("remove lab", func() (string, error) {
					c, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					return "", l.Close(c)
				})
			}()
			ln, err := net.Listen("tcp", net.JoinHostPort(l.State.AdminIP, fmt.Sprint(labPhoneHomePort)))
			if err != nil {
				return withExitCode(ExitInvalidInput, fmt.Errorf("phone-home endpoint: %w", err))
			}
			mux := http.NewServeMux()
			mux.Handle(phonehome.Path, l.PhoneHome)
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()

			tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MACHINE\tMAC\tIP\tBMC\tFIRMWARE")
			for _, m := range l.State.Machines {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.MAC, m.IP, labBMCAddress(l.State.BMC, m.BMCIP), m.Firmware)
			}
			tw.Flush()
			fmt.Fprintf(streams.Out, "Hardware.csv:    %s\nClusterSpec.yml: %s\nkiln's address:  %s (phone-home on :%d%s)\nBMC user %s; the password is in Hardware.csv.\nRunning; Ctrl-C or `kiln lab down --dir %s` removes the lab.\n",
				l.State.HardwareCSV, l.State.ClusterSpec, l.State.AdminIP, labPhoneHomePort, phonehome.Path, l.State.BMCUser, *dir)
			<-ctx.Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Machines, "machines", 2, "number of machines")
	f.StringVar(&opts.BMC, "bmc", lab.BMCRedfish, "kind of virtual BMC per machine: redfish (HTTPS :443) or ipmi (IPMI v2.0 RMCP+ :623/udp)")
	f.BoolVar(&uefi, "uefi", false, "boot every machine with UEFI (OVMF) instead of legacy BIOS")
	f.StringSliceVar(&firmware, "firmware", nil, "firmware per machine, cycled (e.g. bios,uefi)")
	f.IntVar(&opts.MemoryMiB, "memory", lab.DefaultMemory, "memory per machine in MiB")
	f.IntVar(&opts.DiskGiB, "disk", lab.DefaultDiskGiB, "disk size per machine in GiB (sparse)")
	f.BoolVar(&opts.KVM, "kvm", false, "use KVM instead of software emulation (only where KVM works)")
	f.StringVar(&opts.Prefix, "prefix", lab.DefaultPrefix, "name prefix of the namespace, bridge, veth and taps (≤9 characters)")
	f.StringVar(&opts.Subnet, "subnet", lab.DefaultSubnet, "the lab network")
	f.StringVar(&opts.ClusterName, "cluster-name", "lab", "cluster name in ClusterSpec.yml; machines are <name>-01…")
	f.StringVar(&opts.SSHPublicKeyFile, "ssh-public-key-file", "", "SSH public key for ClusterSpec.yml; default: a key pair generated into --dir")
	return cmd
}

func newLabDownCommand(streams Streams, dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove every VM, tap, bridge, namespace and process of the lab (safe to run twice)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return progress{streams.Out}.step("remove lab in "+*dir, func() (string, error) {
				found, err := lab.Down(cmd.Context(), *dir)
				if err != nil {
					return "", withExitCode(ExitInvalidInput, err)
				}
				if !found {
					return "nothing to remove", nil
				}
				return "", nil
			})
		},
	}
}

func newLabStatusCommand(streams Streams, dir *string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's machines: power, boots and phone-homes",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if err := checkOutput(output, OutputText, OutputJSON); err != nil {
				return err
			}
			s, err := lab.ReadStatus(*dir)
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			if output == OutputJSON {
				return writeJSON(streams.Out, s)
			}
			state := "running"
			if !s.Running {
				state = "not running (kiln lab up has exited; kiln lab down cleans up)"
			}
			fmt.Fprintf(streams.Out, "lab %s: %s, pid %d, network %s, kiln at %s\n", s.Dir, state, s.PID, s.Subnet, s.AdminIP)
			tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MACHINE\tFIRMWARE\tPOWER\tBOOTS\tPHONED HOME")
			for _, m := range s.Machines {
				home := "-"
				if r := m.PhoneHome; r != nil {
					home = fmt.Sprintf("%s as %s from %s (boot %d)", r.ReceivedAt.Local().Format(time.TimeOnly), r.Hostname, r.IP, r.Boot)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", m.Name, m.Firmware, m.Power, m.Boots, home)
			}
			return tw.Flush()
		},
	}
	addOutputFlag(cmd, &output, OutputText, OutputJSON)
	return cmd
}

func newLabConsoleCommand(streams Streams, dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "console NAME",
		Short: "Print a machine's serial console log (every boot)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if err := lab.Console(*dir, args[0], streams.Out); err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			return nil
		},
	}
}

func newLabPowerCommand(streams Streams, dir *string) *cobra.Command {
	var pxe, persistent bool
	cmd := &cobra.Command{
		Use:   "power NAME on|off|cycle|status",
		Short: "Drive a lab machine through its virtual BMC (Redfish or IPMI, as kiln does for real servers)",
		Long: `Powers a lab machine on or off, power-cycles it or prints its power state through
its virtual BMC (Redfish, or IPMI through ipmitool for a lab started with --bmc ipmi),
with kiln's BMC client (bmclib) and the credentials in the lab's Hardware.csv. --pxe makes the next boot a network boot (UEFI or legacy as the
machine's firmware), like a provisioning run does.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := lab.ReadState(*dir)
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			inv, err := hardware.ReadFile(st.HardwareCSV)
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			m, ok := inv.ByHostname(args[0])
			if !ok {
				return withExitCode(ExitInvalidInput, fmt.Errorf("%s has no machine %q", st.HardwareCSV, args[0]))
			}
			cfg := bmc.FromMachine(m)
			cfg.Protocols = []string{bmc.ProtocolRedfish}
			if st.BMC == lab.BMCIPMI {
				cfg.Protocols = []string{bmc.ProtocolIPMI}
			}
			b, err := bmc.New(cfg, nil)
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			uefi := m.Labels["firmware"] == string(qemu.UEFI)
			p := progress{streams.Out}
			if pxe {
				if err := p.step("next boot from the network", func() (string, error) {
					return "", b.SetNextBoot(ctx, bmc.BootPXE, bmc.BootOptions{EFI: uefi, Persistent: persistent})
				}); err != nil {
					return withExitCode(ExitInvalidInput, err)
				}
			}
			var op func(context.Context) error
			switch args[1] {
			case "on":
				op = b.PowerOn
			case "off":
				op = b.PowerOff
			case "cycle":
				op = b.PowerCycle
			case "status":
				s, err := b.PowerState(ctx)
				if err != nil {
					return withExitCode(ExitInvalidInput, err)
				}
				_, err = fmt.Fprintln(streams.Out, s)
				return err
			default:
				return usageError("power action %q: use on, off, cycle or status", args[1])
			}
			if err := p.step("power "+args[1]+" "+m.Hostname, func() (string, error) { return "", op(ctx) }); err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&pxe, "pxe", false, "boot from the network next time")
	cmd.Flags().BoolVar(&persistent, "persistent", false, "with --pxe: every boot, not only the next one")
	return cmd
}

// labBMCAddress shows how to reach a lab machine's virtual BMC.
func labBMCAddress(kind, ip string) string {
	if kind == lab.BMCIPMI {
		return "ipmi://" + net.JoinHostPort(ip, "623")
	}
	return "https://" + ip
}
