package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/cliout"
	"github.com/kiln-dev/kiln/pkg/hook"
	"github.com/kiln-dev/kiln/pkg/lab/image"
)

// newBuildCommand groups the commands that build boot artifacts.
func newBuildCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build boot artifacts (the in-memory OS, the lab's test disk image)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBuildHookCommand(streams), newBuildLabImageCommand(streams))
	return cmd
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func newBuildHookCommand(streams Streams) *cobra.Command {
	var (
		opts    hook.Options
		modules []string
		output  string
	)
	cmd := &cobra.Command{
		Use:   "hook",
		Short: "Build the in-memory OS: vmlinuz-x86_64 and initramfs-x86_64 with kiln-agent as /init",
		Long: `Builds kiln's in-memory OS into --output-dir: the kernel (copied as vmlinuz-x86_64)
and a reproducible gzip cpio initramfs (initramfs-x86_64) whose /init is the static
kiln-agent binary (make agent builds bin/kiln-agent), plus the kernel modules the agent needs (with their dependencies from
modules.dep) under /lib/modules/<version> and their load order in /etc/kiln/modules.

By default the newest /boot/vmlinuz-* (Debian: linux-image-amd64) and its
/lib/modules/<version> are used; --kernel and --modules-dir point at another kernel.
Without --agent-binary, kiln-agent is looked for next to this kiln, then on PATH;
if there is none, this kiln itself becomes /init (it runs the same agent, but
makes the initramfs several times larger).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, OutputText, OutputJSON); err != nil {
				return err
			}
			if opts.Init == "" {
				agentBin, fallback, err := findAgentBinary()
				if err != nil {
					return withExitCode(ExitInvalidInput, err)
				}
				if fallback {
					fmt.Fprintf(streams.Err, "note: no kiln-agent next to kiln or on PATH; using the full kiln %s as /init (build bin/kiln-agent with make agent, or pass --agent-binary)\n", agentBin)
				}
				opts.Init = agentBin
			}
			if cmd.Flags().Changed("modules") {
				opts.Modules = modules
			} else {
				opts.SkipMissing = true
			}
			out := streams.Err
			if output == OutputText {
				out = streams.Out
			}
			var res *hook.Result
			err := progress{out}.step("build in-memory OS", func() (string, error) {
				var err error
				res, err = hook.Build(cmd.Context(), opts)
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("kernel %s, %d modules", res.KernelVersion, len(res.Modules)), nil
			})
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			if output == OutputJSON {
				return writeJSON(streams.Out, res)
			}
			if len(res.MissingModules) > 0 {
				fmt.Fprintf(streams.Out, "  note: kernel %s has no modules %s (skipped)\n", res.KernelVersion, strings.Join(res.MissingModules, ", "))
			}
			fmt.Fprintf(streams.Out, "  %s  %s\n  %s  %s (%s unpacked, sha256 %s)\n",
				res.Kernel, mib(res.KernelBytes), res.Initramfs, mib(res.InitramfsBytes), mib(res.UncompressedBytes), res.InitramfsSHA256[:16])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Kernel, "kernel", "", "kernel image (bzImage); default the newest /boot/vmlinuz-*")
	f.StringVar(&opts.ModulesDir, "modules-dir", "", "the kernel's module tree; default /lib/modules/<version read from the kernel>")
	f.StringVar(&opts.Init, "agent-binary", "", "static kiln-agent binary to use as /init; default kiln-agent next to this kiln or on PATH")
	f.StringVar(&opts.Init, "kiln-binary", "", "static binary to use as /init")
	_ = f.MarkDeprecated("kiln-binary", "use --agent-binary (with bin/kiln-agent from make agent)")
	f.StringSliceVar(&modules, "modules", hook.DefaultModules, "kernel modules to include, with dependencies (unknown names are an error when given)")
	f.StringVar(&opts.CACerts, "ca-certs", "", `CA bundle for the agent; default the host's /etc/ssl/certs/ca-certificates.crt, "-" for none`)
	f.StringVar(&opts.OutputDir, "output-dir", filepath.Join("out", "hook"), "directory for vmlinuz-x86_64 and initramfs-x86_64")
	addOutputFlag(cmd, &output, OutputText, OutputJSON)
	return cmd
}

// findAgentBinary returns the kiln-agent to use as /init: the one next to
// the running kiln, else the one on PATH; fallback is true when there is
// neither and the running kiln itself is returned.
func findAgentBinary() (path string, fallback bool, err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", false, fmt.Errorf("find the running kiln binary: %w; pass --agent-binary", err)
	}
	beside := filepath.Join(filepath.Dir(exe), "kiln-agent")
	if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() {
		return beside, false, nil
	}
	if p, err := exec.LookPath("kiln-agent"); err == nil {
		return p, false, nil
	}
	return exe, true, nil
}

func newBuildLabImageCommand(streams Streams) *cobra.Command {
	var (
		opts   image.Options
		output string
	)
	cmd := &cobra.Command{
		Use:   "lab-image",
		Short: "Build the lab's test OS disk image (boots from disk under BIOS and UEFI, phones home)",
		Long: `Builds a small raw GPT disk image that boots on its own under legacy BIOS and UEFI
(GRUB i386-pc in a BIOS boot partition and GRUB x86_64-efi as \EFI\BOOT\BOOTX64.EFI),
with the Debian kernel and a busybox userland. On every boot it brings up its network
(DHCP, or KILN_IP), reads its hostname from kiln's metadata service at
KILN_URL/2009-04-04/meta-data/hostname and POSTs a report to KILN_URL/phone-home.
KILN_URL comes from /etc/kiln/kiln.env on partition 2 (a workflow's writefile action
writes it) or from --kiln-url, which bakes a default into the image.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, OutputText, OutputJSON); err != nil {
				return err
			}
			out := streams.Err
			if output == OutputText {
				out = streams.Out
			}
			opts.Log = func(step string, took time.Duration) { cliout.Progress(out, step, "", took, nil) }
			start := time.Now()
			res, err := image.Build(cmd.Context(), opts)
			if err != nil {
				cliout.Progress(out, "build lab image", "", time.Since(start), err)
				return withExitCode(ExitInvalidInput, err)
			}
			if output == OutputJSON {
				return writeJSON(streams.Out, res)
			}
			fmt.Fprintf(streams.Out, "  %s  %s, kernel %s\n", res.Path, mib(res.SizeBytes), res.KernelVersion)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Output, "output-file", filepath.Join("out", "lab-image.raw"), "raw disk image to write")
	f.IntVar(&opts.SizeMiB, "size", 64, "disk size in MiB")
	f.StringVar(&opts.Kernel, "kernel", "", "kernel image; default the newest /boot/vmlinuz-*")
	f.StringVar(&opts.ModulesDir, "modules-dir", "", "the kernel's module tree; default /lib/modules/<version>")
	f.StringVar(&opts.Busybox, "busybox", "/bin/busybox", "static busybox (Debian: busybox-static)")
	f.StringVar(&opts.KilnURL, "kiln-url", "", "default kiln base URL baked into /etc/kiln/kiln.env (usually written by the workflow)")
	f.StringVar(&opts.Cmdline, "cmdline", "", "extra kernel command-line arguments")
	addOutputFlag(cmd, &output, OutputText, OutputJSON)
	return cmd
}
