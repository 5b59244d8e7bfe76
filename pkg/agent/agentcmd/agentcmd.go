// Package agentcmd builds the provisioning agent's command line: its flags,
// the kernel-command-line glue and the PID-1 behaviour of the in-memory OS's
// /init. Both `kiln agent` (pkg/cli) and the slim cmd/kiln-agent binary use
// it, so the agent has one command definition; it imports only the agent's
// own packages, never kiln's control-plane code.
package agentcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/agent"
	"github.com/kiln-dev/kiln/pkg/agent/actions"
	"github.com/kiln-dev/kiln/pkg/exitcode"
	"github.com/kiln-dev/kiln/pkg/flagenv"
	"github.com/kiln-dev/kiln/pkg/workerapi"
)

// InitMode reports whether the process is the in-memory OS's /init: PID 1,
// or started under the name "init". The kernel's arguments are then not
// the agent's flags, and the agent runs with --init.
func InitMode(argv []string) bool {
	return os.Getpid() == 1 || (len(argv) > 0 && filepath.Base(argv[0]) == "init")
}

type options struct {
	cfg         agent.Config
	sec         workerapi.ClientSecurity
	init        bool
	fromCmdline bool
	reboot      bool
	tempDir     string
}

// New returns the agent command named use ("agent" under kiln, "kiln-agent"
// on its own). Its errors are the operator's to fix (exit code 1); the
// caller maps them to its exit codes. Console output goes to errOut.
func New(use string, errOut io.Writer) *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   use,
		Short: "Run the provisioning agent: poll the worker API and run workflow actions on this machine",
		Long: `Run the provisioning agent. It asks the worker API for the next action of this
machine (its worker id is the MAC), runs kiln's built-in action for the image
(image2disk, writefile, cexec, kexec, reboot) with the action's environment and
timeout, streams the output to the server and reports the result.

As the in-memory OS's /init (PID 1), the agent runs with --init: it mounts
/proc, /sys and /dev, reads worker_id, hw_addr, grpc_authority, syslog_host,
tinkerbell_tls, tinkerbell_insecure_tls and kiln_modules from the kernel
command line, loads the modules, brings up the interface with MAC hw_addr by
DHCP and then polls. Flags override kernel arguments.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), cmd, errOut, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cfg.WorkerID, "worker-id", "", "agent id the server knows this machine by, its MAC (kernel arg worker_id)")
	f.StringVar(&o.cfg.HWAddr, "hw-addr", "", "MAC of the provisioning interface to configure with DHCP in --init mode (kernel arg hw_addr)")
	f.StringVar(&o.cfg.Authority, "grpc-authority", "", "worker API address ip:port, default port 42113 (kernel arg grpc_authority)")
	f.StringVar(&o.cfg.SyslogHost, "syslog-host", "", "send the agent log to this syslog receiver over UDP (kernel arg syslog_host)")
	f.BoolVar(&o.sec.TLS, "tinkerbell-tls", false, "connect with TLS (kernel arg tinkerbell_tls)")
	f.BoolVar(&o.sec.InsecureSkipVerify, "tinkerbell-insecure-tls", false, "with TLS, do not verify the server certificate (kernel arg tinkerbell_insecure_tls)")
	f.StringVar(&o.sec.CAFile, "ca-file", "", "verify the server against this CA certificate (PEM)")
	f.StringVar(&o.sec.CertFile, "cert-file", "", "client certificate for mutual TLS (PEM)")
	f.StringVar(&o.sec.KeyFile, "key-file", "", "client key for mutual TLS (PEM)")
	f.StringVar(&o.sec.Token, "token", "", "bearer token the server requires (its --grpc-token)")
	f.BoolVar(&o.init, "init", false, "run as PID 1 of the in-memory OS (mount, modules, DHCP); automatic when the binary is /init")
	f.BoolVar(&o.fromCmdline, "from-cmdline", false, "read unset settings from /proc/cmdline (implied by --init)")
	f.BoolVar(&o.reboot, "reboot", false, "let reboot/kexec actions reboot this machine (implied by --init)")
	f.StringVar(&o.tempDir, "temp-dir", "", "where actions create mount points (default the system temp dir)")
	return cmd
}

// usageError marks a command-line problem (exit code 2) for Run.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Run runs the agent as its own program (cmd/kiln-agent) and returns the
// process exit code: as /init (see InitMode) it runs with --init whatever the
// kernel passed, otherwise with argv[1:].
func Run(ctx context.Context, argv []string, out, errOut io.Writer) int {
	cmd := New("kiln-agent", errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.Args = func(_ *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("kiln-agent takes no arguments, got %q", args)}
		}
		return nil
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	// Under kiln, the root command binds KILN_* variables; on its own the
	// agent does it here (KILN_WORKER_ID, KILN_GRPC_AUTHORITY, ...).
	cmd.PersistentPreRunE = func(c *cobra.Command, _ []string) error {
		if err := flagenv.Bind(c); err != nil {
			return usageError{err}
		}
		return nil
	}
	args := []string{"--init"}
	if !InitMode(argv) {
		args = nil
		if len(argv) > 1 {
			args = argv[1:]
		}
	}
	cmd.SetArgs(args)
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitcode.OK
	}
	fmt.Fprintf(errOut, "Error: %v\n", err)
	if errors.As(err, new(usageError)) {
		return exitcode.Usage
	}
	return exitcode.InvalidInput
}

func run(ctx context.Context, cmd *cobra.Command, errOut io.Writer, o *options) error {
	console := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := agent.Config{}
	switch {
	case o.init:
		booted, err := agent.Boot(ctx, console)
		if err != nil {
			return pid1Fatal(ctx, console, o, fmt.Errorf("boot: %w", err))
		}
		cfg = booted
	case o.fromCmdline:
		raw, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return err
		}
		if cfg, err = agent.ParseCmdline(string(raw)); err != nil {
			return err
		}
	}
	f := cmd.Flags()
	override := func(name string, dst *string, v string) {
		if f.Changed(name) || *dst == "" {
			*dst = v
		}
	}
	override("worker-id", &cfg.WorkerID, o.cfg.WorkerID)
	override("hw-addr", &cfg.HWAddr, o.cfg.HWAddr)
	override("grpc-authority", &cfg.Authority, o.cfg.Authority)
	override("syslog-host", &cfg.SyslogHost, o.cfg.SyslogHost)
	sec := o.sec
	if !f.Changed("tinkerbell-tls") {
		sec.TLS = sec.TLS || cfg.TLS
	}
	if !f.Changed("tinkerbell-insecure-tls") {
		sec.InsecureSkipVerify = sec.InsecureSkipVerify || cfg.InsecureTLS
	}

	log, closeLog, err := agent.NewLogger(errOut, cfg.SyslogHost, slog.LevelInfo)
	if err != nil {
		console.Warn("syslog disabled", "err", err)
	}
	defer closeLog()
	rt := actions.Runtime{TempDir: o.tempDir}
	if o.reboot || o.init {
		rt.Reboot = agent.SystemReboot
	}
	a, err := agent.New(agent.Options{Config: cfg, Security: sec, Runtime: rt, Logger: log})
	if err != nil {
		return pid1Fatal(ctx, log, o, err)
	}
	defer a.Close()
	return a.Run(ctx)
}

// pid1Fatal keeps PID 1 alive (its exit would panic the kernel and hide the
// message) after logging why the agent cannot start.
func pid1Fatal(ctx context.Context, log *slog.Logger, o *options, err error) error {
	if !o.init || os.Getpid() != 1 {
		return err
	}
	log.Error("kiln agent cannot start; fix the kernel command line and reboot", "err", err)
	<-ctx.Done()
	select {} // PID 1 must not exit
}
