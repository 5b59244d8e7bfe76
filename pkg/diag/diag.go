// Package diag holds the problem lists kiln's validators return: every problem
// found in an input file, each located by file, line and column or field, so an
// operator can fix everything in one pass.
package diag

import (
	"fmt"
	"sort"
	"strings"
)

// Severity tells whether a problem makes the input invalid.
type Severity string

// Severities. Warnings are reported but do not make an input invalid.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Problem is one thing wrong with an input file.
type Problem struct {
	Severity Severity `json:"severity"`
	// File is the path of the input as the operator named it.
	File string `json:"file"`
	// Line is the 1-based line the problem is on; 0 when it concerns the whole file.
	Line int `json:"line"`
	// Column is the CSV column name the problem is in (empty for YAML inputs).
	Column string `json:"column"`
	// Document names the YAML document, e.g. "TinkerbellMachineConfig/mgmt-cp".
	Document string `json:"document,omitempty"`
	// Field is the YAML field path inside the document, e.g. "spec.users[0].name".
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// String renders the problem as one operator-readable line:
//
//	Hardware.csv:3: column mac: "zz" is not a MAC address
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	} else if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	if p.Document != "" {
		b.WriteString(p.Document)
		b.WriteString(": ")
	}
	if p.Column != "" {
		fmt.Fprintf(&b, "column %s: ", p.Column)
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// List is a set of problems. A List holding at least one error-severity
// problem is itself an error (see Err).
type List []Problem

// Error joins every problem, one per line.
func (l List) Error() string {
	lines := make([]string, len(l))
	for i, p := range l {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Errors returns only the error-severity problems.
func (l List) Errors() List { return l.filter(SeverityError) }

// Warnings returns only the warning-severity problems.
func (l List) Warnings() List { return l.filter(SeverityWarning) }

func (l List) filter(s Severity) List {
	var out List
	for _, p := range l {
		if p.Severity == s {
			out = append(out, p)
		}
	}
	return out
}

// HasErrors reports whether any problem is an error.
func (l List) HasErrors() bool { return len(l.Errors()) > 0 }

// Err returns the list as an error when it holds an error-severity problem,
// and nil otherwise.
func (l List) Err() error {
	if l.HasErrors() {
		return l
	}
	return nil
}

// Sort orders problems by file, then line, keeping the order in which
// problems on the same line were found.
func (l List) Sort() {
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].File != l[j].File {
			return l[i].File < l[j].File
		}
		return l[i].Line < l[j].Line
	})
}
