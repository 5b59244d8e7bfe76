// Package exitcode holds the process exit codes every kiln program (kiln,
// kiln-agent) uses, so scripts can tell bad input from a bad command line.
package exitcode

const (
	// OK: the command did what was asked.
	OK = 0
	// InvalidInput: the input was read but is not valid, or the operation failed.
	InvalidInput = 1
	// Usage: the command line itself is wrong.
	Usage = 2
)
