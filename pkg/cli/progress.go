package cli

import (
	"io"
	"time"

	"github.com/kiln-dev/kiln/pkg/cliout"
)

// progress runs steps and prints one cliout.Progress line for each.
type progress struct{ w io.Writer }

// step runs fn, prints its line (with the detail fn returns) and passes its
// error on.
func (p progress) step(name string, fn func() (string, error)) error {
	start := time.Now()
	detail, err := fn()
	cliout.Progress(p.w, name, detail, time.Since(start), err)
	return err
}
