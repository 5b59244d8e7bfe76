// Package exitcode holds the process exit codes every kiln program (kiln,
// kiln-agent) uses, so scripts can tell bad input from a bad command line.
package exitcode

import (
	"errors"
	"fmt"
	"strings"
)

const (
	// OK: the command did what was asked.
	OK = 0
	// InvalidInput: the input was read but is not valid, or the operation failed.
	InvalidInput = 1
	// Usage: the command line itself is wrong.
	Usage = 2
)

// exitError carries the exit code an error ends the program with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return "" // the command printed its failure itself
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// With makes err end the program with code; err is printed (nil: nothing
// is, the command reported the failure itself).
func With(code int, err error) error { return &exitError{code: code, err: err} }

// Usagef is an error in the command line itself: it ends the program with
// Usage.
func Usagef(format string, args ...any) error {
	return With(Usage, fmt.Errorf(format, args...))
}

// Resolve returns the exit code a command's error ends the program with:
// the one With attached, Usage for the command-line errors cobra raises
// itself (unknown command or flag, wrong argument count...), InvalidInput
// for anything else.
func Resolve(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return OK
	case errors.As(err, &ee):
		return ee.code
	case cobraUsage(err.Error()):
		return Usage
	}
	return InvalidInput
}

func cobraUsage(msg string) bool {
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "flag needs an argument", "invalid argument", "required flag", "if any flags in the group"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
