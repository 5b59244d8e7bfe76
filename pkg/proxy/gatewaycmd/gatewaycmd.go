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
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/buildinfo"
	"github.com/kiln-dev/kiln/pkg/cliout"
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
// and returns the process exit code. Its root command is wired as kiln's
// (cliout.Root: -v, KILN_* variables, exit codes).
func Run(ctx context.Context, argv []string, streams Streams) int {
	root := New("kiln-gateway", streams)
	// As a program's root, cobra's own check names an unknown command.
	root.Args = nil
	info := buildinfo.Get()
	root.Version = fmt.Sprintf("%s (commit %s, built %s, %s)", info.Version, info.Commit, info.BuildDate, info.GoVersion)
	for _, c := range root.Commands() {
		// The help shows this program's own command lines.
		c.Long = strings.ReplaceAll(c.Long, "kiln gateway ", "kiln-gateway ")
		c.Example = strings.ReplaceAll(c.Example, "kiln gateway ", "kiln-gateway ")
	}
	cliout.Root(root, streams.Err)
	root.SetArgs(argv[min(1, len(argv)):])
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	return cliout.Execute(ctx, root, streams.Err)
}
