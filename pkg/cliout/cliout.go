// Package cliout holds the console conventions every kiln program shares
// (kiln, kiln-gateway): one line per finished step of long work, and the
// structured logger the -v flag selects.
package cliout

import (
	"fmt"
	"io"
	"log/slog"
	"time"
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
	level := slog.LevelWarn
	switch {
	case verbosity >= 2:
		level = slog.LevelDebug
	case verbosity == 1:
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
