package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/buildinfo"
)

func newVersionCommand(streams Streams) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print kiln's version, commit and build date",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if err := checkOutput(output, OutputText, OutputJSON); err != nil {
				return err
			}
			info := buildinfo.Get()
			if output == OutputJSON {
				return writeJSON(streams.Out, info)
			}
			_, err := fmt.Fprintf(streams.Out, "kiln %s\ncommit: %s\nbuilt:  %s\ngo:     %s\n", info.Version, info.Commit, info.BuildDate, info.GoVersion)
			return err
		},
	}
	addOutputFlag(cmd, &output, OutputText, OutputJSON)
	return cmd
}
