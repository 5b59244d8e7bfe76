// Package hardware reads and validates the Hardware.csv machine inventory and
// answers look-ups on it (by MAC, by IP, by label selector).
package hardware

import (
	"net"
	"strings"

	"github.com/kiln-dev/kiln/pkg/diag"
)

// Machine is one row of Hardware.csv after normalisation: MACs lower-case,
// nameservers and labels split.
type Machine struct {
	// Line is the 1-based line of the row in its CSV file (the header is line 1).
	Line        int               `json:"line,omitempty"`
	Hostname    string            `json:"hostname"`
	IPAddress   string            `json:"ipAddress"`
	Netmask     string            `json:"netmask"`
	Gateway     string            `json:"gateway"`
	Nameservers []string          `json:"nameservers"`
	MAC         string            `json:"mac"`
	Disk        string            `json:"disk"`
	Labels      map[string]string `json:"labels,omitempty"`
	BMCIP       string            `json:"bmcIP,omitempty"`
	BMCUsername string            `json:"bmcUsername,omitempty"`
	BMCPassword string            `json:"-"`
	VLANID      string            `json:"vlanID,omitempty"`
}

// HasBMC reports whether the row names a BMC.
func (m Machine) HasBMC() bool { return m.BMCIP != "" }

// Inventory is the set of machines read from one Hardware.csv.
type Inventory struct {
	// Path is the file the inventory was read from, for messages.
	Path     string    `json:"path,omitempty"`
	Machines []Machine `json:"machines"`
	// Warnings are problems that do not make the file invalid (unknown columns).
	Warnings diag.List `json:"warnings,omitempty"`
}

// ByMAC returns the machine whose MAC equals mac (any case, any separator
// net.ParseMAC accepts).
func (inv *Inventory) ByMAC(mac string) (Machine, bool) {
	want := normalizeMAC(mac)
	for _, m := range inv.Machines {
		if normalizeMAC(m.MAC) == want {
			return m, true
		}
	}
	return Machine{}, false
}

// ByIP returns the machine whose ip_address equals ip.
func (inv *Inventory) ByIP(ip string) (Machine, bool) {
	want := net.ParseIP(ip)
	if want == nil {
		return Machine{}, false
	}
	for _, m := range inv.Machines {
		if got := net.ParseIP(m.IPAddress); got != nil && got.Equal(want) {
			return m, true
		}
	}
	return Machine{}, false
}

// ByHostname returns the machine with the given hostname.
func (inv *Inventory) ByHostname(name string) (Machine, bool) {
	for _, m := range inv.Machines {
		if m.Hostname == name {
			return m, true
		}
	}
	return Machine{}, false
}

func normalizeMAC(s string) string {
	if hw, err := net.ParseMAC(s); err == nil {
		return hw.String()
	}
	return strings.ToLower(s)
}

// Select returns the machines carrying every label in selector, in file
// order. An empty selector selects every machine.
func (inv *Inventory) Select(selector map[string]string) []Machine {
	var out []Machine
	for _, m := range inv.Machines {
		if m.Matches(selector) {
			out = append(out, m)
		}
	}
	return out
}

// Matches reports whether the machine carries every label in selector.
func (m Machine) Matches(selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := m.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Hostnames lists the machines' hostnames, in order.
func Hostnames(machines []Machine) []string {
	names := make([]string, len(machines))
	for i, m := range machines {
		names[i] = m.Hostname
	}
	return names
}
