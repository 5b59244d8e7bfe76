package hardware

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/diag"
)

type wantProblem struct {
	line   int
	column string
	text   string // substring of the message
}

func TestReadFileInvalid(t *testing.T) {
	tests := []struct {
		file string
		want []wantProblem
	}{
		{"missing-column", []wantProblem{{1, "disk", `required column "disk" is missing`}}},
		{"column-name-case", []wantProblem{{1, "hostname", `required column "hostname" is missing from the header (the header has "Hostname"`}}},
		{"duplicate-header", []wantProblem{{1, "mac", `column "mac" appears twice`}}},
		{"empty-header-field", []wantProblem{{1, "", "header field 13 is empty"}}},
		{"field-count", []wantProblem{{3, "", "the row has 13 fields but the header has 12"}}},
		{"bad-quote", []wantProblem{{3, "", "not valid CSV"}, {4, "mac", "is not a MAC address"}}},
		{"empty-file", []wantProblem{{0, "", "the file is empty"}}},
		{"header-only", []wantProblem{{1, "", "no machines"}}},
		{"hostname-empty", []wantProblem{{3, "hostname", "hostname is empty"}}},
		{"hostname-invalid", []wantProblem{{3, "hostname", `"Node_02" is not a valid hostname`}}},
		{"ip-empty", []wantProblem{{3, "ip_address", "ip_address is empty"}}},
		{"ip-invalid", []wantProblem{{3, "ip_address", `"10.0.50.300" is not an IP address`}}},
		{"ip-ipv6", []wantProblem{{3, "ip_address", "IPv6"}}},
		{"netmask-empty", []wantProblem{{3, "netmask", "netmask is empty"}}},
		{"netmask-invalid", []wantProblem{{3, "netmask", `"24" is not a netmask`}}},
		{"netmask-noncontiguous", []wantProblem{{3, "netmask", `"255.0.255.0" is not a contiguous netmask`}}},
		{"netmask-zero", []wantProblem{{3, "netmask", "every address on-link"}}},
		{"gateway-empty", []wantProblem{{3, "gateway", "gateway is empty"}}},
		{"gateway-invalid", []wantProblem{{3, "gateway", `"gw.example" is not an IP address`}}},
		{"gateway-outside", []wantProblem{{3, "gateway", "gateway 10.0.51.1 is outside the machine's subnet 10.0.50.0/24"}}},
		{"gateway-is-ip", []wantProblem{{3, "gateway", "own ip_address"}}},
		{"nameservers-empty", []wantProblem{{3, "nameservers", "nameservers is empty"}}},
		{"nameservers-empty-entry", []wantProblem{{3, "nameservers", "empty entry"}}},
		{"nameservers-invalid", []wantProblem{{3, "nameservers", `"dns.example" is not an IP address`}}},
		{"mac-empty", []wantProblem{{3, "mac", "mac is empty"}}},
		{"mac-invalid", []wantProblem{{3, "mac", `"cc:48:3a:00:00:zz" is not a MAC address`}}},
		{"mac-not-ethernet", []wantProblem{{3, "mac", "20-byte hardware address"}}},
		{"disk-empty", []wantProblem{{3, "disk", "disk is empty"}}},
		{"disk-invalid", []wantProblem{{3, "disk", `"/dev/disk/by-uuid/0b1c" is not a supported disk path`}}},
		{"labels-bad-pair", []wantProblem{{3, "labels", `"rack" is not a key=value pair`}}},
		{"labels-bad-key", []wantProblem{{3, "labels", `label key "-type" is invalid`}}},
		{"labels-bad-value", []wantProblem{{3, "labels", `invalid value "c p"`}}},
		{"labels-duplicate-key", []wantProblem{{3, "labels", `label key "type" is given twice`}}},
		{"bmc-ip-missing", []wantProblem{{3, "bmc_ip", "bmc_ip is empty but bmc_username and bmc_password are set"}}},
		{"bmc-credentials-missing", []wantProblem{
			{3, "bmc_username", "bmc_username is empty but bmc_ip is set"},
			{3, "bmc_password", "bmc_password is empty but bmc_ip is set"},
		}},
		{"bmc-ip-invalid", []wantProblem{{3, "bmc_ip", `"bmc02" is not an IP address`}}},
		{"vlan-not-number", []wantProblem{{3, "vlan_id", `"ten" is not a number`}}},
		{"vlan-out-of-range", []wantProblem{{3, "vlan_id", "4095 is out of range"}}},
		{"duplicate-mac", []wantProblem{{3, "mac", "duplicate MAC cc:48:3a:00:00:01: line 2 (node01) already uses it; lines 2 and 3 must differ"}}},
		{"duplicate-ip", []wantProblem{{3, "ip_address", "duplicate IP address 10.0.50.1: line 2 (node01)"}}},
		{"duplicate-hostname", []wantProblem{{3, "hostname", "duplicate hostname node01: line 2"}}},
		{"duplicate-bmc-ip", []wantProblem{{3, "bmc_ip", "duplicate BMC IP 10.0.44.1: line 2 (node01)"}}},
		{"bmc-ip-is-machine-ip", []wantProblem{{3, "bmc_ip", "bmc_ip 10.0.50.1 is also the ip_address of node01 on line 2"}}},
		{"three-bad-rows", []wantProblem{
			{3, "mac", "is not a MAC address"},
			{4, "netmask", "is not a contiguous netmask"},
			{6, "disk", "is not a supported disk path"},
		}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file+".csv"] = true
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "invalid", tt.file+".csv")
			inv, err := ReadFile(path)
			if err == nil {
				t.Fatalf("ReadFile(%s) accepted an invalid file: %+v", path, inv)
			}
			var list diag.List
			if !errors.As(err, &list) {
				t.Fatalf("error %v (%T) is not a diag.List", err, err)
			}
			got := list.Errors()
			if len(got) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				p := got[i]
				if p.File != path || p.Line != w.line || p.Column != w.column || !strings.Contains(p.Message, w.text) {
					t.Errorf("problem %d = %+v\nwant file %s line %d column %q message containing %q", i, p, path, w.line, w.column, w.text)
				}
			}
		})
	}
	// Every file in testdata/invalid must be covered by a case above.
	entries, err := os.ReadDir(filepath.Join("testdata", "invalid"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !seen[e.Name()] {
			t.Errorf("testdata/invalid/%s has no test case", e.Name())
		}
	}
}

func TestReadFileExample(t *testing.T) {
	inv, err := ReadFile(filepath.Join("..", "..", "hardware", "examples", "Hardware.csv"))
	if err != nil {
		t.Fatalf("example inventory is invalid:\n%v", err)
	}
	if len(inv.Warnings) != 0 {
		t.Errorf("unexpected warnings: %v", inv.Warnings)
	}
	if got := Hostnames(inv.Machines); !reflect.DeepEqual(got, []string{"cp01", "cp02", "cp03", "wk01", "wk02"}) {
		t.Errorf("hostnames = %v", got)
	}
	cp03, ok := inv.ByHostname("cp03")
	if !ok || cp03.MAC != "cc:48:3a:00:00:03" || cp03.Line != 4 {
		t.Errorf("cp03 = %+v, want lower-cased MAC on line 4", cp03)
	}
	wk02, _ := inv.ByHostname("wk02")
	if wk02.HasBMC() || wk02.VLANID != "120" || wk02.Disk != "/dev/disk/by-path/pci-0000:3b:00.0-nvme-1" {
		t.Errorf("wk02 = %+v", wk02)
	}
	cp01, _ := inv.ByMAC("CC-48-3A-00-00-01")
	want := Machine{Line: 2, Hostname: "cp01", IPAddress: "10.10.50.11", Netmask: "255.255.254.0", Gateway: "10.10.50.1",
		Nameservers: []string{"10.10.50.2", "8.8.8.8"}, MAC: "cc:48:3a:00:00:01", Disk: "/dev/sda",
		Labels: map[string]string{"type": "cp", "rack": "r1"}, BMCIP: "10.10.44.11", BMCUsername: "root", BMCPassword: "s3cret-cp01"}
	if !reflect.DeepEqual(cp01, want) {
		t.Errorf("cp01 =\n%+v\nwant\n%+v", cp01, want)
	}
}

func TestReadUnknownColumnIsWarning(t *testing.T) {
	inv, err := ReadFile(filepath.Join("testdata", "valid-unknown-column.csv"))
	if err != nil {
		t.Fatalf("unknown column made the file invalid: %v", err)
	}
	if len(inv.Warnings) != 1 || inv.Warnings[0].Column != "rack_position" || inv.Warnings[0].Line != 1 || inv.Warnings[0].Severity != diag.SeverityWarning {
		t.Errorf("warnings = %+v, want one warning for column rack_position on line 1", inv.Warnings)
	}
}

func TestReadReorderedColumnsAndNormalisation(t *testing.T) {
	inv, err := ReadFile(filepath.Join("testdata", "valid-reordered.csv"))
	if err != nil {
		t.Fatal(err)
	}
	m := inv.Machines[0]
	if m.Hostname != "node10" || m.MAC != "cc:48:3a:00:00:0a" || m.Disk != "/dev/sdb" ||
		!reflect.DeepEqual(m.Nameservers, []string{"10.0.50.253", "1.1.1.1"}) || m.Labels["zone"] != "a" || m.HasBMC() {
		t.Errorf("machine = %+v", m)
	}
}

func TestReadByteOrderMarkAndMultilineLines(t *testing.T) {
	in := "\ufeffhostname,ip_address,netmask,gateway,nameservers,mac,disk,labels\n" +
		"a,10.0.0.2,255.255.255.0,10.0.0.1,10.0.0.1,00:00:00:00:00:01,/dev/sda,\"type=a\nb\"\n" +
		"b,10.0.0.3,255.255.255.0,10.0.0.1,10.0.0.1,00:00:00:00:00:02,/dev/sda,type=x\n"
	_, err := Read(strings.NewReader(in), "inline.csv")
	var list diag.List
	if !errors.As(err, &list) || len(list) != 1 || list[0].Line != 2 || list[0].Column != "labels" {
		t.Fatalf("want one labels problem on line 2 (a quoted field spanning lines), got %v", err)
	}
	in = strings.Replace(in, "\"type=a\nb\"", "\"\n\"", 1)
	inv, err := Read(strings.NewReader(in), "inline.csv")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := inv.ByHostname("b"); b.Line != 4 {
		t.Errorf("row b starts on line %d, want 4", b.Line)
	}
}

func TestSelect(t *testing.T) {
	inv, err := ReadFile(filepath.Join("..", "..", "hardware", "examples", "Hardware.csv"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		selector map[string]string
		want     []string
	}{
		{map[string]string{"type": "cp"}, []string{"cp01", "cp02", "cp03"}},
		{map[string]string{"type": "worker", "rack": "r2"}, []string{"wk02"}},
		{map[string]string{"type": "gpu"}, nil},
		{nil, []string{"cp01", "cp02", "cp03", "wk01", "wk02"}},
	}
	for _, tt := range tests {
		got := Hostnames(inv.Select(tt.selector))
		if len(got) == 0 {
			got = nil
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Select(%v) = %v, want %v", tt.selector, got, tt.want)
		}
	}
}

func FuzzRead(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "invalid", "*.csv"))
	paths = append(paths, filepath.Join("..", "..", "hardware", "examples", "Hardware.csv"))
	sort.Strings(paths)
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Read(strings.NewReader(string(data)), "fuzz.csv")
		if err != nil {
			var list diag.List
			if !errors.As(err, &list) || !list.HasErrors() {
				t.Fatalf("error is not a diag.List with errors: %v", err)
			}
			for _, p := range list {
				if p.Message == "" || p.File != "fuzz.csv" {
					t.Fatalf("problem without message or file: %+v", p)
				}
			}
			return
		}
		for _, m := range inv.Machines {
			if _, ok := inv.ByMAC(m.MAC); !ok {
				t.Fatalf("valid inventory cannot look up its own MAC %q", m.MAC)
			}
			if m.MAC != strings.ToLower(m.MAC) || m.Line < 2 {
				t.Fatalf("machine not normalised: %+v", m)
			}
		}
	})
}
