package workflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"text/template"

	yaml "go.yaml.in/yaml/v3"

	"github.com/kiln-dev/kiln/pkg/hardware"
)

// HardwareData is the legacy data contract Tinkerbell templates see as
// .Hardware: {{ index .Hardware.Disks 0 }}, {{ (index .Hardware.Interfaces 0).DHCP.IP.Address }}.
type HardwareData struct {
	Disks      []string
	Interfaces []Interface
	UserData   string
	Metadata   string
	VendorData string
}

// Interface is one network interface of the legacy hardware contract.
type Interface struct {
	DHCP    DHCP
	Netboot Netboot
}

// DHCP is the DHCP reservation of an interface.
type DHCP struct {
	MAC         string
	Hostname    string
	IP          IP
	LeaseTime   int64
	NameServers []string
	TimeServers []string
	Arch        string
	UEFI        bool
	IfaceName   string
	VLANID      string
}

// IP is an interface address.
type IP struct {
	Address string
	Netmask string
	Gateway string
	Family  int64
}

// Netboot holds the netboot permissions of an interface.
type Netboot struct {
	AllowPXE      bool
	AllowWorkflow bool
}

// RenderInput is what a template is rendered with for one machine.
type RenderInput struct {
	Machine hardware.Machine
	// Values are extra top-level keys (like a Workflow's hardwareMap), e.g.
	// image_url and metadata_url for kiln's default template. device_1 is
	// always set to the machine's MAC unless given here.
	Values map[string]string
}

// Data builds the template data for one machine: hardwareMap keys at the top
// level, .Hardware (legacy contract) and .hardware (the Hardware object as a
// generic map, as tinkerbell.org/v1alpha1 would serve it).
func (in RenderInput) Data() map[string]any {
	m := in.Machine
	data := map[string]any{}
	for k, v := range in.Values {
		data[k] = v
	}
	if _, ok := data["device_1"]; !ok {
		data["device_1"] = strings.ToLower(m.MAC)
	}
	iface := Interface{
		DHCP: DHCP{
			MAC:         strings.ToLower(m.MAC),
			Hostname:    m.Hostname,
			IP:          IP{Address: m.IPAddress, Netmask: m.Netmask, Gateway: m.Gateway, Family: 4},
			LeaseTime:   4294967294,
			NameServers: append([]string(nil), m.Nameservers...),
			Arch:        "x86_64",
			UEFI:        true,
			VLANID:      m.VLANID,
		},
		Netboot: Netboot{AllowPXE: true, AllowWorkflow: true},
	}
	hw := HardwareData{Interfaces: []Interface{iface}}
	if m.Disk != "" {
		hw.Disks = []string{m.Disk}
	}
	data["Hardware"] = hw
	data["hardware"] = hardwareObject(m)
	return data
}

// hardwareObject is the machine as a tinkerbell.org/v1alpha1 Hardware object
// in generic JSON form, so {{ .hardware.spec.metadata.instance.id }} works.
func hardwareObject(m hardware.Machine) map[string]any {
	ns := make([]any, 0, len(m.Nameservers))
	for _, n := range m.Nameservers {
		ns = append(ns, n)
	}
	labels := map[string]any{}
	for k, v := range m.Labels {
		labels[k] = v
	}
	mac := strings.ToLower(m.MAC)
	ip := map[string]any{"address": m.IPAddress, "netmask": m.Netmask, "gateway": m.Gateway, "family": 4}
	dhcp := map[string]any{
		"mac": mac, "hostname": m.Hostname, "ip": ip, "name_servers": ns,
		"lease_time": 4294967294, "arch": "x86_64", "uefi": true,
	}
	if m.VLANID != "" {
		dhcp["vlan_id"] = m.VLANID
	}
	return map[string]any{
		"apiVersion": "tinkerbell.org/v1alpha1",
		"kind":       "Hardware",
		"metadata":   map[string]any{"name": m.Hostname, "labels": labels},
		"spec": map[string]any{
			"disks": []any{map[string]any{"device": m.Disk}},
			"interfaces": []any{map[string]any{
				"dhcp":    dhcp,
				"netboot": map[string]any{"allowPXE": true, "allowWorkflow": true},
			}},
			"metadata": map[string]any{
				"instance": map[string]any{
					"id": mac, "hostname": m.Hostname,
					"ips": []any{map[string]any{"address": m.IPAddress, "netmask": m.Netmask, "gateway": m.Gateway, "family": 4, "public": false}},
				},
			},
		},
	}
}

// Render executes a template source with the given data (missingkey=error,
// as Tinkerbell does) and returns the rendered YAML, capped at MaxTemplateSize.
func Render(name string, src []byte, data map[string]any) ([]byte, error) {
	if len(src) > MaxTemplateSize {
		return nil, fmt.Errorf("template %s is %d bytes; the limit is %d", name, len(src), MaxTemplateSize)
	}
	t, err := template.New(name).Option("missingkey=error").Funcs(Funcs()).Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var buf limitedBuffer
	buf.limit = MaxTemplateSize
	if err := t.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("rendering template %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// RenderTemplate renders src for one machine and parses the result.
func RenderTemplate(name string, src []byte, in RenderInput) (*Template, error) {
	out, err := Render(name, src, in.Data())
	if err != nil {
		return nil, err
	}
	t, err := Parse(out)
	if err != nil {
		return nil, fmt.Errorf("template %s rendered for %s: %w", name, in.Machine.Hostname, err)
	}
	return t, nil
}

type limitedBuffer struct {
	bytes.Buffer
	limit int
}

var errTooLarge = errors.New("rendered template exceeds 256 KiB")

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, errTooLarge
	}
	return b.Buffer.Write(p)
}

// Funcs returns the template functions available to workflow templates:
// Tinkerbell's own (formatPartition, netmaskToPrefixLength, toYaml,
// fromYaml) and the commonly used hermetic Sprig string/list helpers.
func Funcs() template.FuncMap {
	return template.FuncMap{
		"formatPartition":       FormatPartition,
		"netmaskToPrefixLength": NetmaskToPrefixLength,
		"toYaml":                toYAML,
		"fromYaml":              fromYAML,
		"toJson":                toJSON,
		"default":               defaultValue,
		"empty":                 isEmpty,
		"quote":                 func(s any) string { return fmt.Sprintf("%q", fmt.Sprint(s)) },
		"squote":                func(s any) string { return "'" + fmt.Sprint(s) + "'" },
		"lower":                 strings.ToLower,
		"upper":                 strings.ToUpper,
		"trim":                  strings.TrimSpace,
		"trimPrefix":            func(prefix, s string) string { return strings.TrimPrefix(s, prefix) },
		"trimSuffix":            func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
		"hasPrefix":             func(prefix, s string) bool { return strings.HasPrefix(s, prefix) },
		"hasSuffix":             func(suffix, s string) bool { return strings.HasSuffix(s, suffix) },
		"contains":              func(sub, s string) bool { return strings.Contains(s, sub) },
		"replace":               func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"split":                 func(sep, s string) []string { return strings.Split(s, sep) },
		"join":                  join,
		"indent":                func(n int, s string) string { return indent(n, s, false) },
		"nindent":               func(n int, s string) string { return indent(n, s, true) },
		"list":                  func(v ...any) []any { return v },
		"first":                 first,
		"sortAlpha":             sortAlpha,
	}
}

// FormatPartition names partition n of disk: /dev/sda,1 → /dev/sda1;
// /dev/nvme0n1,1 → /dev/nvme0n1p1 (a "p" when the disk name ends in a
// digit); udev links /dev/disk/by-id/X,1 → /dev/disk/by-id/X-part1.
func FormatPartition(disk string, n int) string {
	if strings.HasPrefix(disk, "/dev/disk/by-") {
		return fmt.Sprintf("%s-part%d", disk, n)
	}
	if disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

// NetmaskToPrefixLength turns 255.255.254.0 into 23.
func NetmaskToPrefixLength(mask string) (int, error) {
	a, err := netip.ParseAddr(mask)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("netmaskToPrefixLength: %q is not a dotted IPv4 netmask", mask)
	}
	b := a.As4()
	ones, bits := net.IPv4Mask(b[0], b[1], b[2], b[3]).Size()
	if bits == 0 {
		return 0, fmt.Errorf("netmaskToPrefixLength: %q is not a contiguous netmask", mask)
	}
	return ones, nil
}

func toYAML(v any) (string, error) {
	out, err := yaml.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("toYaml: %w", err)
	}
	return strings.TrimSuffix(string(out), "\n"), nil
}

func fromYAML(s string) (map[string]any, error) {
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("fromYaml: %w", err)
	}
	return m, nil
}

func toJSON(v any) (string, error) {
	out, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("toJson: %w", err)
	}
	return string(out), nil
}

func defaultValue(def any, v ...any) any {
	if len(v) == 0 || isEmpty(v[0]) {
		return def
	}
	return v[0]
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case int:
		return x == 0
	case int64:
		return x == 0
	case float64:
		return x == 0
	case []string:
		return len(x) == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

func join(sep string, v any) string {
	switch x := v.(type) {
	case []string:
		return strings.Join(x, sep)
	case []any:
		s := make([]string, len(x))
		for i, e := range x {
			s[i] = fmt.Sprint(e)
		}
		return strings.Join(s, sep)
	}
	return fmt.Sprint(v)
}

func indent(n int, s string, newline bool) string {
	pad := strings.Repeat(" ", n)
	out := pad + strings.ReplaceAll(s, "\n", "\n"+pad)
	if newline {
		return "\n" + out
	}
	return out
}

func first(v any) any {
	switch x := v.(type) {
	case []string:
		if len(x) > 0 {
			return x[0]
		}
	case []any:
		if len(x) > 0 {
			return x[0]
		}
	}
	return nil
}

func sortAlpha(v []string) []string {
	out := append([]string(nil), v...)
	sort.Strings(out)
	return out
}
