package hardware

import (
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kiln-dev/kiln/pkg/diag"
)

// Disk paths kiln accepts: a kernel device name (/dev/sda, /dev/nvme0n1) or a
// stable udev link under /dev/disk/by-id or /dev/disk/by-path.
var (
	diskDeviceRE = regexp.MustCompile(`^/dev/[A-Za-z0-9_-]+$`)
	diskLinkRE   = regexp.MustCompile(`^/dev/disk/(by-id|by-path)/[A-Za-z0-9_.:+@\\-]+$`)
)

// rowChecker collects the problems of one row.
type rowChecker struct {
	file     string
	line     int
	columns  map[string]bool
	problems diag.List
}

func (c *rowChecker) errorf(column, format string, args ...any) {
	c.problems = append(c.problems, diag.Problem{Severity: diag.SeverityError, File: c.file, Line: c.line, Column: column, Message: fmt.Sprintf(format, args...)})
}

// required reports an empty value in a column the header has (a missing
// column was already reported once for the header).
func (c *rowChecker) required(column, value, what string) bool {
	if value != "" {
		return true
	}
	if c.columns[column] {
		c.errorf(column, "%s is empty: every machine needs %s", column, what)
	}
	return false
}

func (c *rowChecker) ipv4(column, value string) net.IP {
	ip := net.ParseIP(value)
	if ip == nil {
		c.errorf(column, "%q is not an IP address (write an IPv4 address such as 10.10.50.11)", value)
		return nil
	}
	if ip.To4() == nil {
		c.errorf(column, "%q is an IPv6 address: kiln provisions machines over IPv4", value)
		return nil
	}
	return ip.To4()
}

// machines validates every row and converts the valid ones, then runs the
// cross-row checks (duplicates).
func (t *table) machines(file string) (*Inventory, diag.List) {
	inv := &Inventory{Path: file}
	var problems diag.List
	for i, row := range t.rows {
		c := &rowChecker{file: file, line: t.lines[i], columns: t.columns}
		m := c.check(row)
		problems = append(problems, c.problems...)
		inv.Machines = append(inv.Machines, m)
	}
	problems = append(problems, duplicates(file, inv.Machines)...)
	return inv, problems
}

// check validates one row and returns it normalised. Every column is checked,
// so a row with several mistakes reports all of them.
func (c *rowChecker) check(r csvRow) Machine {
	m := Machine{
		Line:        c.line,
		Hostname:    r.Hostname,
		IPAddress:   r.IPAddress,
		Netmask:     r.Netmask,
		Gateway:     r.Gateway,
		MAC:         strings.ToLower(r.MAC),
		Disk:        r.Disk,
		BMCIP:       r.BMCIP,
		BMCUsername: r.BMCUsername,
		BMCPassword: r.BMCPassword,
		VLANID:      r.VLANID,
	}

	if c.required(ColHostname, r.Hostname, "a hostname") {
		if errs := validation.IsDNS1123Subdomain(r.Hostname); len(errs) > 0 {
			c.errorf(ColHostname, "%q is not a valid hostname: %s", r.Hostname, strings.Join(errs, "; "))
		}
	}

	var ip net.IP
	if c.required(ColIPAddress, r.IPAddress, "the IP address it gets on its provisioning interface") {
		if ip = c.ipv4(ColIPAddress, r.IPAddress); ip != nil {
			m.IPAddress = ip.String()
		}
	}

	var mask net.IPMask
	if c.required(ColNetmask, r.Netmask, "a netmask such as 255.255.255.0") {
		mask = c.netmask(r.Netmask)
		if mask != nil {
			m.Netmask = net.IP(mask).String()
		}
	}

	if c.required(ColGateway, r.Gateway, "a default gateway") {
		if gw := c.ipv4(ColGateway, r.Gateway); gw != nil {
			m.Gateway = gw.String()
			if ip != nil && mask != nil {
				subnet := &net.IPNet{IP: ip.Mask(mask), Mask: mask}
				ones, _ := mask.Size()
				switch {
				case !subnet.Contains(gw):
					c.errorf(ColGateway, "gateway %s is outside the machine's subnet %s/%d (ip_address %s, netmask %s): fix the gateway or the netmask", gw, subnet.IP, ones, ip, r.Netmask)
				case gw.Equal(ip):
					c.errorf(ColGateway, "gateway %s is the machine's own ip_address", gw)
				}
			}
		}
	}

	if c.required(ColNameservers, r.Nameservers, "at least one nameserver (separate several with |)") {
		for _, ns := range strings.Split(r.Nameservers, "|") {
			ns = strings.TrimSpace(ns)
			if ns == "" {
				c.errorf(ColNameservers, "%q has an empty entry: separate nameservers with a single | and no trailing |", r.Nameservers)
				continue
			}
			if nsIP := net.ParseIP(ns); nsIP == nil {
				c.errorf(ColNameservers, "%q is not an IP address (nameservers are IP addresses separated by |)", ns)
			} else {
				m.Nameservers = append(m.Nameservers, nsIP.String())
			}
		}
	}

	if c.required(ColMAC, r.MAC, "the MAC address of the interface it network-boots from") {
		hw, err := net.ParseMAC(r.MAC)
		switch {
		case err != nil:
			c.errorf(ColMAC, "%q is not a MAC address (write six hex pairs such as cc:48:3a:00:00:01)", r.MAC)
		case len(hw) != 6:
			c.errorf(ColMAC, "%q is a %d-byte hardware address: kiln needs an Ethernet (6-byte) MAC", r.MAC, len(hw))
		default:
			m.MAC = hw.String()
		}
	}

	if c.required(ColDisk, r.Disk, "the disk the OS is written to") {
		if !diskDeviceRE.MatchString(r.Disk) && !diskLinkRE.MatchString(r.Disk) {
			c.errorf(ColDisk, "%q is not a supported disk path: use /dev/<name> (e.g. /dev/sda, /dev/nvme0n1), /dev/disk/by-id/<id> or /dev/disk/by-path/<path>", r.Disk)
		}
	}

	m.Labels = c.labels(r.Labels)
	c.bmc(r)

	if r.VLANID != "" {
		v, err := strconv.Atoi(r.VLANID)
		switch {
		case err != nil:
			c.errorf(ColVLANID, "%q is not a number: vlan_id is an integer from 1 to 4094, or empty", r.VLANID)
		case v < 1 || v > 4094:
			c.errorf(ColVLANID, "%d is out of range: vlan_id must be from 1 to 4094", v)
		default:
			m.VLANID = strconv.Itoa(v)
		}
	}
	return m
}

// netmask parses a dotted-quad netmask and requires it to be contiguous.
func (c *rowChecker) netmask(s string) net.IPMask {
	ip := net.ParseIP(s)
	if ip == nil || ip.To4() == nil || strings.Contains(s, ":") {
		c.errorf(ColNetmask, "%q is not a netmask: write it dotted, e.g. 255.255.255.0 for a /24", s)
		return nil
	}
	mask := net.IPMask(ip.To4())
	ones, bits := mask.Size()
	if bits == 0 {
		c.errorf(ColNetmask, "%q is not a contiguous netmask (its one-bits must all come first, e.g. 255.255.254.0)", s)
		return nil
	}
	if ones == 0 {
		c.errorf(ColNetmask, "netmask %q would put every address on-link: use the subnet's real mask, e.g. 255.255.255.0", s)
		return nil
	}
	return mask
}

// labels parses "k=v|k=v" and validates keys and values as Kubernetes labels.
func (c *rowChecker) labels(s string) map[string]string {
	if s == "" {
		return nil
	}
	labels := map[string]string{}
	for _, pair := range strings.Split(s, "|") {
		k, v, ok := strings.Cut(pair, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			c.errorf(ColLabels, "%q is not a key=value pair (separate labels with |, e.g. type=cp|rack=r1)", pair)
			continue
		}
		bad := false
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			c.errorf(ColLabels, "label key %q is invalid: %s", k, strings.Join(errs, "; "))
			bad = true
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			c.errorf(ColLabels, "label %s has an invalid value %q: %s", k, v, strings.Join(errs, "; "))
			bad = true
		}
		if _, dup := labels[k]; dup {
			c.errorf(ColLabels, "label key %q is given twice", k)
			continue
		}
		if !bad {
			labels[k] = v
		}
	}
	return labels
}

// bmc checks that the BMC columns are all set or all empty and that the BMC
// address is an IP.
func (c *rowChecker) bmc(r csvRow) {
	set := map[string]bool{ColBMCIP: r.BMCIP != "", ColBMCUsername: r.BMCUsername != "", ColBMCPassword: r.BMCPassword != ""}
	var given, missing []string
	for _, col := range []string{ColBMCIP, ColBMCUsername, ColBMCPassword} {
		if set[col] {
			given = append(given, col)
		} else {
			missing = append(missing, col)
		}
	}
	if len(given) > 0 && len(missing) > 0 {
		for _, col := range missing {
			c.errorf(col, "%s is empty but %s %s set: a machine with a BMC needs bmc_ip, bmc_username and bmc_password (leave all three empty for a machine without one)",
				col, strings.Join(given, " and "), map[bool]string{true: "is", false: "are"}[len(given) == 1])
		}
	}
	if r.BMCIP != "" {
		c.ipv4(ColBMCIP, r.BMCIP)
	}
}

// duplicates reports every MAC, IP address, hostname and BMC IP that appears
// on more than one row, under its own column and naming both lines. A BMC IP
// that is also a machine's ip_address is reported too.
func duplicates(file string, machines []Machine) diag.List {
	var problems diag.List
	type seenAt struct {
		line     int
		hostname string
		column   string
	}
	check := func(column, what string, value func(Machine) string) {
		seen := map[string]seenAt{}
		for _, m := range machines {
			v := value(m)
			if v == "" {
				continue
			}
			if first, ok := seen[v]; ok {
				problems = append(problems, diag.Problem{Severity: diag.SeverityError, File: file, Line: m.Line, Column: column,
					Message: fmt.Sprintf("duplicate %s %s: line %d (%s) already uses it; lines %d and %d must differ", what, v, first.line, first.hostname, first.line, m.Line)})
				continue
			}
			seen[v] = seenAt{line: m.Line, hostname: m.Hostname}
		}
	}
	check(ColMAC, "MAC", func(m Machine) string { return m.MAC })
	check(ColIPAddress, "IP address", func(m Machine) string { return canonicalIP(m.IPAddress) })
	check(ColHostname, "hostname", func(m Machine) string { return m.Hostname })
	check(ColBMCIP, "BMC IP", func(m Machine) string { return canonicalIP(m.BMCIP) })

	hostIPs := map[string]Machine{}
	for _, m := range machines {
		if ip := canonicalIP(m.IPAddress); ip != "" {
			if _, ok := hostIPs[ip]; !ok {
				hostIPs[ip] = m
			}
		}
	}
	for _, m := range machines {
		if host, ok := hostIPs[canonicalIP(m.BMCIP)]; ok && m.BMCIP != "" {
			problems = append(problems, diag.Problem{Severity: diag.SeverityError, File: file, Line: m.Line, Column: ColBMCIP,
				Message: fmt.Sprintf("bmc_ip %s is also the ip_address of %s on line %d: a BMC needs its own address", m.BMCIP, host.Hostname, host.Line)})
		}
	}
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
	return problems
}

func canonicalIP(s string) string {
	if ip := net.ParseIP(s); ip != nil {
		return ip.String()
	}
	return s
}
