package diag

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{Severity: SeverityError, File: "Hardware.csv", Line: 3, Column: "mac", Message: "bad"}, "Hardware.csv:3: column mac: bad"},
		{Problem{Severity: SeverityWarning, File: "Hardware.csv", Line: 1, Column: "x", Message: "ignored"}, "Hardware.csv:1: warning: column x: ignored"},
		{Problem{Severity: SeverityError, File: "c.yml", Line: 7, Document: "Cluster/a", Field: "spec.count", Message: "odd"}, "c.yml:7: Cluster/a: spec.count: odd"},
		{Problem{Severity: SeverityError, File: "c.yml", Message: "empty"}, "c.yml: empty"},
		{Problem{Severity: SeverityError, Line: 2, Message: "m"}, "line 2: m"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestListAsError(t *testing.T) {
	warnOnly := List{{Severity: SeverityWarning, Message: "w"}}
	if warnOnly.Err() != nil || warnOnly.HasErrors() {
		t.Errorf("a list of warnings is an error")
	}
	l := List{{Severity: SeverityError, File: "b", Line: 2, Message: "x"}, {Severity: SeverityWarning, File: "a", Line: 9, Message: "y"}, {Severity: SeverityError, File: "b", Line: 1, Message: "z"}}
	l.Sort()
	if l[0].File != "a" || l[1].Line != 1 || l[2].Line != 2 {
		t.Errorf("Sort: %v", l)
	}
	err := fmt.Errorf("load: %w", l.Err())
	var got List
	if !errors.As(err, &got) || len(got.Errors()) != 2 || len(got.Warnings()) != 1 {
		t.Errorf("errors.As through wrapping: %v", got)
	}
	data, _ := json.Marshal(l[1])
	if string(data) != `{"severity":"error","file":"b","line":1,"column":"","message":"z"}` {
		t.Errorf("JSON = %s", data)
	}
}
