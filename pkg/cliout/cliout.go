// Package cliout holds the console conventions every kiln program shares
// (kiln, kiln-gateway): one line per finished step of long work, the
// structured logger the -v flag selects, and the root command's wiring
// (KILN_* variables, exit codes, errors printed once).
package cliout

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/exitcode"
	"github.com/kiln-dev/kiln/pkg/flagenv"
)

// Progress prints one finished step of a long-running command: ✓ or ✗,
// what was done, the detail (after a colon, on success only) and how long it
// took. Every command's progress output goes through it.
func Progress(w io.Writer, what, detail string, took time.Duration, err error) {
	mark := "✓"
	if err != nil {
		mark, detail = "✗", ""
	}
	if detail != "" {
		what += ": " + detail
	}
	fmt.Fprintf(w, "%s %s (%s)\n", mark, what, took.Round(time.Millisecond))
}

// Logger returns a structured text logger at the level -v asks for: 0
// warnings, 1 info, 2 and more debug.
func Logger(w io.Writer, verbosity int) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: Level(verbosity)}))
}

// Level is the log level -v asks for: 0 warnings, 1 info, 2 and more
// debug.
func Level(verbosity int) slog.Level {
	switch {
	case verbosity >= 2:
		return slog.LevelDebug
	case verbosity == 1:
		return slog.LevelInfo
	}
	return slog.LevelWarn
}

// Root gives a program's root command what every kiln program has: -v
// (KILN_VERBOSITY) setting the default logger's level, KILN_* variables
// bound to unset flags before any command runs, command-line errors ending
// with exit code 2, and errors left to Execute to print.
func Root(root *cobra.Command, errOut io.Writer) {
	var verbosity int
	root.SilenceUsage, root.SilenceErrors = true, true
	root.PersistentFlags().IntVarP(&verbosity, "verbosity", "v", 0, "log detail: 0 warnings and progress, 1 info, 2+ debug (env KILN_VERBOSITY)")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := flagenv.Bind(cmd); err != nil {
			return exitcode.With(exitcode.Usage, err)
		}
		slog.SetDefault(Logger(errOut, verbosity))
		return nil
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitcode.With(exitcode.Usage, err) })
}

// Execute runs a root command set up by Root and returns the program's
// exit code (pkg/exitcode), printing the error, if any, to errOut.
func Execute(ctx context.Context, root *cobra.Command, errOut io.Writer) int {
	err := root.ExecuteContext(ctx)
	if err != nil && err.Error() != "" {
		fmt.Fprintf(errOut, "Error: %v\n", err)
	}
	return exitcode.Resolve(err)
}
