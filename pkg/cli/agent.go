package cli

import (
	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/agent/agentcmd"
)

// InitArgs returns the arguments kiln runs with: when the binary is the
// in-memory OS's /init (PID 1 or started under the name "init") it runs
// `kiln agent --init` whatever the kernel passed; otherwise argv[1:].
func InitArgs(argv []string) []string {
	if agentcmd.InitMode(argv) {
		return []string{"agent", "--init"}
	}
	if len(argv) == 0 {
		return nil
	}
	return argv[1:]
}

// newAgentCommand is `kiln agent`, the command cmd/kiln-agent runs on its
// own; its failures end kiln with ExitInvalidInput.
func newAgentCommand(streams Streams) *cobra.Command {
	cmd := agentcmd.New("agent", streams.Err)
	runE := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := runE(cmd, args); err != nil {
			return withExitCode(ExitInvalidInput, err)
		}
		return nil
	}
	return cmd
}
