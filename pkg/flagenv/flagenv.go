// Package flagenv lets every flag of a kiln program be set from a KILN_*
// environment variable (--hardware-csv ↔ KILN_HARDWARE_CSV), so CI pipelines
// can configure kiln and kiln-agent without building command lines.
package flagenv

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Prefix is prepended to a flag's upper-snake-case name to form the
// environment variable that sets it.
const Prefix = "KILN_"

// Name is the environment variable that sets the flag with the given name.
func Name(flag string) string {
	return Prefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Bind fills every flag of cmd (its own and the inherited ones) that the
// command line did not set from its environment variable, if present. A
// value the flag does not accept is an error naming the variable and flag;
// every such problem is reported, not just the first.
func Bind(cmd *cobra.Command) error {
	return bind(cmd, os.LookupEnv)
}

func bind(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	var errs []error
	visit := func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := Name(f.Name)
		val, ok := lookup(name)
		if !ok {
			return
		}
		if err := f.Value.Set(val); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s=%q is not a valid value for --%s: %w", name, val, f.Name, err))
			return
		}
		f.Changed = true
	}
	// Once cobra has parsed the command line, Flags holds the command's own
	// flags and every persistent flag it inherits.
	cmd.Flags().VisitAll(visit)
	return errors.Join(errs...)
}
