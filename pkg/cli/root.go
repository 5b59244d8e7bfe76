// Package cli wires kiln's cobra command tree: global flags, KILN_* environment
// binding, logging set-up and exit codes. Each command group lives in its own
// file and calls into the pkg/ package that does the work.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/cliout"
	"github.com/kiln-dev/kiln/pkg/exitcode"
	"github.com/kiln-dev/kiln/pkg/flagenv"
	"github.com/kiln-dev/kiln/pkg/proxy/gatewaycmd"
)

// Exit codes shared by every command (see pkg/exitcode).
const (
	ExitOK           = exitcode.OK
	ExitInvalidInput = exitcode.InvalidInput
	ExitUsage        = exitcode.Usage
)

// Streams are the standard streams a command reads and writes.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// globalOptions are the flags every command accepts.
type globalOptions struct {
	verbosity int
}

// withExitCode makes a command end with the given exit code; err is printed.
func withExitCode(code int, err error) error { return exitcode.With(code, err) }

// usageError marks err as a problem with the command line (exit 2).
func usageError(format string, args ...any) error { return exitcode.Usagef(format, args...) }

// Run executes kiln with args and returns the process exit code.
func Run(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	streams := Streams{In: in, Out: out, Err: errOut}
	root := NewRootCommand(streams)
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	if err.Error() != "" {
		fmt.Fprintf(errOut, "Error: %v\n", err)
	}
	return exitcode.Resolve(err)
}

// NewRootCommand builds the full kiln command tree.
func NewRootCommand(streams Streams) *cobra.Command {
	opts := &globalOptions{}
	root := &cobra.Command{
		Use:           "kiln",
		Short:         "Turn racks of bare-metal servers into a Kubernetes cluster with an API gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagenv.Bind(cmd); err != nil {
				return withExitCode(ExitUsage, err)
			}
			slog.SetDefault(cliout.Logger(streams.Err, opts.verbosity))
			return nil
		},
	}
	root.PersistentFlags().IntVarP(&opts.verbosity, "verbosity", "v", 0, "log detail: 0 warnings and progress, 1 info, 2+ debug (env KILN_VERBOSITY)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withExitCode(ExitUsage, err) })

	root.AddCommand(
		newVersionCommand(streams),
		newValidateCommand(streams),
		newGenerateCommand(streams),
		newServeCommand(streams),
		newBuildCommand(streams),
		newLabCommand(streams),
		newAgentCommand(streams),
		newWorkflowsCommand(streams),
		gatewaycmd.New("gateway", gatewaycmd.Streams{Out: streams.Out, Err: streams.Err}),
		newBootstrapCommand(streams),
		newInternalCommand(streams),
	)
	return root
}

// newGenerateCommand groups the commands that print starting files and
// Kubernetes objects. Each subcommand is one line in the list below.
func newGenerateCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate starting configuration and Kubernetes objects",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(
		newGenerateClusterConfigCommand(streams),
		newGenerateHardwareCommand(streams),
		newGenerateCAPICommand(streams),
	)
	return cmd
}

// newServeCommand groups kiln's long-running services (netboot, workflow
// server, gateway). Each subcommand is one line in the list below.
func newServeCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run kiln's provisioning services in the foreground",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(
		newServeNetbootCommand(streams),
		newServeWorkflowCommand(streams),
	)
	return cmd
}

// EnvName is the environment variable that sets the flag with the given name.
func EnvName(flag string) string { return flagenv.Name(flag) }
