// Package cli wires kiln's cobra command tree: global flags, KILN_* environment
// binding, logging set-up and exit codes. Each command group lives in its own
// file and calls into the pkg/ package that does the work.
package cli

import (
	"context"
	"io"

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
	return cliout.Execute(ctx, root, errOut)
}

// NewRootCommand builds the full kiln command tree.
func NewRootCommand(streams Streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "kiln",
		Short: "Turn racks of bare-metal servers into a Kubernetes cluster with an API gateway",
	}
	cliout.Root(root, streams.Err)

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
