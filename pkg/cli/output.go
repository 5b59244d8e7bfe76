package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Output formats accepted by -o on commands that print results.
const (
	OutputText = "text"
	OutputJSON = "json"
	OutputYAML = "yaml"
)

// addOutputFlag registers -o/--output on cmd with the allowed formats.
func addOutputFlag(cmd *cobra.Command, target *string, allowed ...string) {
	cmd.Flags().StringVarP(target, "output", "o", allowed[0], fmt.Sprintf("output format: %v", allowed))
}

// checkOutput returns a usage error when format is not one of allowed.
func checkOutput(format string, allowed ...string) error {
	for _, a := range allowed {
		if format == a {
			return nil
		}
	}
	return usageError("--output %q is not supported here; use one of %v", format, allowed)
}

// writeJSON prints v as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
