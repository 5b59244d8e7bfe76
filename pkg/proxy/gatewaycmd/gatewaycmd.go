// Package gatewaycmd builds the API gateway's command line (`run`,
// `gen-cert`). Both `kiln gateway` (pkg/cli) and the slim cmd/kiln-gateway
// binary, the data plane's image, use it, so the gateway has one command
// definition; it imports only the gateway's own packages, never kiln's
// provisioning or Kubernetes code.
package gatewaycmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/buildinfo"
	"github.com/kiln-dev/kiln/pkg/cliout"
	"github.com/kiln-dev/kiln/pkg/exitcode"
	"github.com/kiln-dev/kiln/pkg/flagenv"
)

// Streams are where the gateway commands write: Out takes the access log
// when it goes to stdout, Err progress lines and logs.
type Streams struct {
	Out io.Writer
	Err io.Writer
}

// New returns the gateway command group named use ("gateway" under kiln,
// "kiln-gateway" on its own) with its run and gen-cert subcommands. Their
// errors carry exit codes (pkg/exitcode): Usage for a wrong command line,
// InvalidInput for the rest.
func New(use string, streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: "Run kiln's Kong-compatible API gateway",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newRunCommand(streams), newGenCertCommand(streams))
	return cmd
}

// Run runs the gateway as its own program (cmd/kiln-gateway) with argv[1:]
// and returns the process exit code. It binds KILN_* variables to the
// flags and sets up logging (-v) as kiln's root command does.
func Run(ctx context.Context, argv []string, streams Streams) int {
	root := New("kiln-gateway", streams)
	root.SilenceUsage, root.SilenceErrors = true, true
	// As a program's root, cobra's own check names an unknown command.
	root.Args = nil
	info := buildinfo.Get()
	root.Version = fmt.Sprintf("%s (commit %s, built %s, %s)", info.Version, info.Commit, info.BuildDate, info.GoVersion)
	var verbosity int
	root.PersistentFlags().IntVarP(&verbosity, "verbosity", "v", 0, "log detail: 0 warnings and progress, 1 info, 2+ debug (env KILN_VERBOSITY)")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := flagenv.Bind(cmd); err != nil {
			return exitcode.With(exitcode.Usage, err)
		}
		slog.SetDefault(cliout.Logger(streams.Err, verbosity))
		return nil
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitcode.With(exitcode.Usage, err) })
	if len(argv) > 1 {
		root.SetArgs(argv[1:])
	} else {
		root.SetArgs([]string{})
	}
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	err := root.ExecuteContext(ctx)
	if err != nil && err.Error() != "" {
		fmt.Fprintf(streams.Err, "Error: %v\n", err)
	}
	return exitcode.Resolve(err)
}
