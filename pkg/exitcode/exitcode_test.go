package exitcode

import (
	"errors"
	"fmt"
	"testing"
)

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code int
		msg  string
	}{
		{"no error", nil, OK, ""},
		{"attached code", With(InvalidInput, errors.New("bad file")), InvalidInput, "bad file"},
		{"attached code, wrapped", fmt.Errorf("run: %w", Usagef("--x %d", 3)), Usage, "run: --x 3"},
		{"failure already reported", With(InvalidInput, nil), InvalidInput, ""},
		{"cobra: unknown flag", errors.New("unknown flag: --nope"), Usage, "unknown flag: --nope"},
		{"cobra: argument count", errors.New("accepts 1 arg(s), received 2"), Usage, "accepts 1 arg(s), received 2"},
		{"anything else", errors.New("connection refused"), InvalidInput, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Resolve(tc.err); got != tc.code {
				t.Errorf("Resolve = %d, want %d", got, tc.code)
			}
			if tc.err != nil && tc.err.Error() != tc.msg {
				t.Errorf("message %q, want %q", tc.err.Error(), tc.msg)
			}
		})
	}
}
