// Package validate checks a ClusterSpec against the Hardware.csv inventory it
// will be built from: enough machines for every node group, no machine
// claimed by two groups, and virtual IPs that no machine already uses.
package validate

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/kiln-dev/kiln/pkg/diag"
	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/spec"
)

// usage is one machine config with the node groups that draw machines from it.
type usage struct {
	mc     *spec.TinkerbellMachineConfig
	groups []string
	need   int
}

// Check runs the spec × hardware assertions and returns every problem.
func Check(s *spec.ClusterSpec, inv *hardware.Inventory) diag.List {
	var problems diag.List
	specProblem := func(kind, name, field, format string, args ...any) {
		doc, line := s.Position(kind, name, field)
		problems = append(problems, diag.Problem{Severity: diag.SeverityError, File: s.Path, Line: line, Document: doc, Field: field, Message: fmt.Sprintf(format, args...)})
	}

	usages := machineConfigUsage(s)
	for _, u := range usages {
		matched := matching(u.mc, inv)
		if len(matched) < u.need {
			found := "none"
			if len(matched) > 0 {
				found = strings.Join(hardware.Hostnames(matched), ", ")
			}
			specProblem(spec.KindTinkerbellMachineConfig, u.mc.Metadata.Name, selectorField(u.mc),
				"need %d machines with %s for %s, found %d: %s (label more rows in %s or lower the count)",
				u.need, u.mc.SelectorString(), strings.Join(u.groups, " and "), len(matched), found, inv.Path)
		}
	}

	// A machine matching two machine configs could be claimed by either group.
	for _, m := range inv.Machines {
		var claimants []string
		for _, u := range usages {
			if u.mc.Matches(m.Labels) {
				claimants = append(claimants, fmt.Sprintf("TinkerbellMachineConfig/%s (%s)", u.mc.Metadata.Name, u.mc.SelectorString()))
			}
		}
		if len(claimants) > 1 {
			problems = append(problems, diag.Problem{Severity: diag.SeverityError, File: inv.Path, Line: m.Line, Column: hardware.ColLabels,
				Message: fmt.Sprintf("machine %s matches the selectors of %s: a machine may match only one machine config; change its labels or the selectors", m.Hostname, strings.Join(claimants, " and "))})
		}
	}

	// The virtual IPs must be free.
	vips := []struct {
		kind, name, field, what, ip string
	}{
		{spec.KindCluster, s.Name(), "spec.controlPlaneConfiguration.endpoint.host", "controlPlaneConfiguration.endpoint.host", s.ControlPlaneEndpoint()},
	}
	if s.Datacenter != nil {
		vips = append(vips, struct{ kind, name, field, what, ip string }{spec.KindTinkerbellDatacenterConfig, s.Datacenter.Metadata.Name, "spec.tinkerbellIP", "tinkerbellIP", s.TinkerbellIP()})
	}
	for _, v := range vips {
		ip := net.ParseIP(v.ip)
		if ip == nil {
			continue
		}
		for _, m := range inv.Machines {
			if other := net.ParseIP(m.IPAddress); other != nil && other.Equal(ip) {
				specProblem(v.kind, v.name, v.field, "%s %s is the ip_address of machine %s (%s line %d): use an address no machine has", v.what, v.ip, m.Hostname, inv.Path, m.Line)
			}
			if other := net.ParseIP(m.BMCIP); other != nil && other.Equal(ip) {
				specProblem(v.kind, v.name, v.field, "%s %s is the bmc_ip of machine %s (%s line %d): use an address no BMC has", v.what, v.ip, m.Hostname, inv.Path, m.Line)
			}
		}
		if !onMachineSubnet(ip, inv) {
			doc, line := s.Position(v.kind, v.name, v.field)
			problems = append(problems, diag.Problem{Severity: diag.SeverityWarning, File: s.Path, Line: line, Document: doc, Field: v.field,
				Message: fmt.Sprintf("%s %s is outside every machine's subnet in %s: a virtual IP must be on the machines' network to be reachable", v.what, v.ip, inv.Path)})
		}
	}
	problems.Sort()
	return problems
}

// machineConfigUsage lists the machine configs the node groups use, in node
// group order, with the number of machines each must supply.
func machineConfigUsage(s *spec.ClusterSpec) []*usage {
	var out []*usage
	byName := map[string]*usage{}
	for _, g := range s.NodeGroups() {
		if g.MachineConfig == nil {
			continue
		}
		u, ok := byName[g.MachineConfig.Metadata.Name]
		if !ok {
			u = &usage{mc: g.MachineConfig}
			byName[g.MachineConfig.Metadata.Name] = u
			out = append(out, u)
		}
		what := "the control plane"
		if !g.ControlPlane {
			what = "worker group " + g.Name
		}
		u.groups = append(u.groups, fmt.Sprintf("%s (count %d)", what, g.Count))
		u.need += g.Count
	}
	return out
}

func matching(mc *spec.TinkerbellMachineConfig, inv *hardware.Inventory) []hardware.Machine {
	var out []hardware.Machine
	for _, m := range inv.Machines {
		if mc.Matches(m.Labels) {
			out = append(out, m)
		}
	}
	return out
}

func selectorField(mc *spec.TinkerbellMachineConfig) string {
	if len(mc.Spec.HardwareSelector) > 0 {
		return "spec.hardwareSelector"
	}
	return "spec.hardwareAffinity"
}

// onMachineSubnet reports whether ip is inside the ip_address/netmask subnet
// of at least one machine.
func onMachineSubnet(ip net.IP, inv *hardware.Inventory) bool {
	for _, m := range inv.Machines {
		mip, mask := net.ParseIP(m.IPAddress), net.ParseIP(m.Netmask)
		if mip == nil || mask == nil || mask.To4() == nil {
			continue
		}
		n := &net.IPNet{IP: mip.Mask(net.IPMask(mask.To4())), Mask: net.IPMask(mask.To4())}
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Result is the outcome of validating a ClusterSpec and Hardware.csv pair.
type Result struct {
	// Spec and Inventory are nil when their file has errors.
	Spec      *spec.ClusterSpec
	Inventory *hardware.Inventory
	// Problems holds every error and warning of both files and of the
	// spec × hardware checks, sorted by file and line.
	Problems diag.List
	// CrossChecked is false when the spec × hardware checks were skipped
	// because one of the files has errors of its own.
	CrossChecked bool
}

// Valid reports whether no problem is an error.
func (r *Result) Valid() bool { return !r.Problems.HasErrors() }

// Files loads the ClusterSpec and Hardware.csv at the given paths and runs
// every static check: the checks of each file, then the spec × hardware
// assertions when both files are valid on their own. Unreadable files are
// reported as problems too.
func Files(specPath, hardwarePath string) *Result {
	r := &Result{}
	s, err := spec.LoadFile(specPath)
	r.Problems = append(r.Problems, asProblems(specPath, err)...)
	if s != nil {
		r.Spec = s
		r.Problems = append(r.Problems, s.Warnings...)
	}
	inv, err := hardware.ReadFile(hardwarePath)
	r.Problems = append(r.Problems, asProblems(hardwarePath, err)...)
	if inv != nil {
		r.Inventory = inv
		r.Problems = append(r.Problems, inv.Warnings...)
	}
	if r.Spec != nil && r.Inventory != nil {
		r.CrossChecked = true
		r.Problems = append(r.Problems, Check(r.Spec, r.Inventory)...)
	}
	r.Problems.Sort()
	return r
}

// asProblems turns a loader error into problems: a diag.List as is, anything
// else (an unreadable file) as one file-level problem.
func asProblems(path string, err error) diag.List {
	if err == nil {
		return nil
	}
	var list diag.List
	if errors.As(err, &list) {
		return list
	}
	return diag.List{{Severity: diag.SeverityError, File: path, Message: err.Error()}}
}
