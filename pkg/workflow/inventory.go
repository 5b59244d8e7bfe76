package workflow

import (
	"errors"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/pkg/hardware"
)

// ForInventory renders the template once per machine and returns one PENDING
// workflow per machine, named after the machine's hostname. Every machine's
// rendering error is reported, each naming the machine and its CSV line.
func ForInventory(inv *hardware.Inventory, templateName string, src []byte, values map[string]string, namespace string, now time.Time) ([]*Workflow, error) {
	var out []*Workflow
	var errs []error
	for _, m := range inv.Machines {
		tpl, err := RenderTemplate(templateName, src, RenderInput{Machine: m, Values: values})
		if err != nil {
			where := m.Hostname
			if m.Line > 0 {
				where = fmt.Sprintf("%s (%s line %d)", m.Hostname, inv.Path, m.Line)
			}
			errs = append(errs, fmt.Errorf("machine %s: %w", where, err))
			continue
		}
		out = append(out, New(namespace, m.Hostname, m.Hostname, templateName, tpl, now))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
