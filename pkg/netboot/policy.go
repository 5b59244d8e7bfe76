package netboot

import (
	"net"
	"strings"
	"sync"

	"github.com/kiln-dev/kiln/pkg/hardware"
)

// Toggle is a Policy whose per-machine answer can change while kiln runs:
// the workflow engine disables netboot once a machine is installed (so it
// boots from disk next time) and enables it to reprovision.
type Toggle struct {
	mu       sync.RWMutex
	def      bool
	override map[string]bool
}

// NewToggle returns a Toggle answering defaultAllowed for machines without
// an override.
func NewToggle(defaultAllowed bool) *Toggle {
	return &Toggle{def: defaultAllowed, override: map[string]bool{}}
}

// Set overrides the answer for the machine with this MAC.
func (t *Toggle) Set(mac string, allowed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.override[normMAC(mac)] = allowed
}

// NetbootAllowed implements Policy.
func (t *Toggle) NetbootAllowed(m hardware.Machine) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if v, ok := t.override[normMAC(m.MAC)]; ok {
		return v
	}
	return t.def
}

func normMAC(s string) string {
	if hw, err := net.ParseMAC(s); err == nil {
		return hw.String()
	}
	return strings.ToLower(s)
}
