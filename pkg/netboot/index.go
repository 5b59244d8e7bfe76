package netboot

import (
	"net"
	"strings"

	"github.com/kiln-dev/kiln/pkg/hardware"
)

// index answers MAC and IP look-ups on a fixed inventory in O(1): the DHCP
// server does one per packet, and a linear scan of a large Hardware.csv
// would cap its rate.
type index struct {
	byMAC map[string]hardware.Machine
	byIP  map[string]hardware.Machine
}

func newIndex(inv *hardware.Inventory) *index {
	ix := &index{byMAC: make(map[string]hardware.Machine, len(inv.Machines)), byIP: make(map[string]hardware.Machine, len(inv.Machines))}
	for _, m := range inv.Machines {
		if hw, err := net.ParseMAC(m.MAC); err == nil {
			ix.byMAC[hw.String()] = m
		} else {
			ix.byMAC[strings.ToLower(m.MAC)] = m
		}
		if ip := net.ParseIP(m.IPAddress); ip != nil {
			ix.byIP[ip.String()] = m
		}
	}
	return ix
}

func (ix *index) ByMAC(mac string) (hardware.Machine, bool) {
	if hw, err := net.ParseMAC(mac); err == nil {
		mac = hw.String()
	}
	m, ok := ix.byMAC[strings.ToLower(mac)]
	return m, ok
}

func (ix *index) ByIP(ip string) (hardware.Machine, bool) {
	p := net.ParseIP(ip)
	if p == nil {
		return hardware.Machine{}, false
	}
	m, ok := ix.byIP[p.String()]
	return m, ok
}
