package cli

import (
	"fmt"
	"io"
	"time"
)

// progressLine prints one finished step of a long-running command: ✓ or ✗,
// what was done, the detail (after a colon, on success only) and how long it
// took. Every command's progress output goes through it.
func progressLine(w io.Writer, what, detail string, took time.Duration, err error) {
	mark := "✓"
	if err != nil {
		mark, detail = "✗", ""
	}
	if detail != "" {
		what += ": " + detail
	}
	fmt.Fprintf(w, "%s %s (%s)\n", mark, what, took.Round(time.Millisecond))
}

// progress runs steps and prints one progressLine for each.
type progress struct{ w io.Writer }

// step runs fn, prints its line (with the detail fn returns) and passes its
// error on.
func (p progress) step(name string, fn func() (string, error)) error {
	start := time.Now()
	detail, err := fn()
	progressLine(p.w, name, detail, time.Since(start), err)
	return err
}
