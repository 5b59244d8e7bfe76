package workflow

import (
	"os"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/templates"
)

func testMachine() hardware.Machine {
	return hardware.Machine{
		Hostname: "cp01", IPAddress: "10.10.50.11", Netmask: "255.255.254.0", Gateway: "10.10.50.1",
		Nameservers: []string{"10.10.50.2", "8.8.8.8"}, MAC: "CC:48:3A:00:00:01", Disk: "/dev/nvme0n1",
		Labels: map[string]string{"type": "cp"},
	}
}

func TestParseValidation(t *testing.T) {
	const good = `
version: "0.1"
name: t
global_timeout: 60
tasks:
- name: a
  worker: "aa:bb:cc:dd:ee:ff"
  actions:
  - name: one
    image: quay.io/tinkerbell/actions/image2disk:latest
    timeout: 10
`
	cases := []struct {
		name    string
		src     string
		wantErr []string
	}{
		{"good", good, nil},
		{"empty", "", []string{"empty"}},
		{"bad yaml", "tasks: [", []string{"not valid YAML", "line"}},
		{"no tasks", "name: x\n", []string{"at least one task"}},
		{"no name", strings.Replace(good, "name: t\n", "", 1), []string{"name: must be set"}},
		{"zero timeout", strings.Replace(good, "timeout: 10", "timeout: 0", 1), []string{`task 1 "a" action 1 "one": timeout must be a positive`}},
		{"missing timeout", strings.Replace(good, "    timeout: 10\n", "", 1), []string{`action 1 "one": timeout`}},
		{"bad image", strings.Replace(good, "quay.io/tinkerbell/actions/image2disk:latest", "Quay.io/Bad Image", 1), []string{`action 1 "one": image`}},
		{"no worker", strings.Replace(good, `  worker: "aa:bb:cc:dd:ee:ff"`+"\n", "", 1), []string{`task 1 "a": worker must be set`}},
		{"dup action", good + `  - name: one
    image: busybox
    timeout: 5
`, []string{`action 2 "one": duplicate action name`}},
		{"dup task", good + `- name: a
  worker: x
  actions:
  - name: z
    image: busybox
    timeout: 5
`, []string{`task 2 "a": duplicate task name`}},
		{"bad volume", strings.Replace(good, "    timeout: 10\n", "    timeout: 10\n    volumes: [\"/dev\"]\n", 1), []string{`volume "/dev"`}},
		{"negative global", strings.Replace(good, "global_timeout: 60", "global_timeout: -1", 1), []string{"global_timeout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := Parse([]byte(tc.src))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if tpl.Tasks[0].Actions[0].Timeout != 10 {
					t.Fatalf("timeout = %d", tpl.Tasks[0].Actions[0].Timeout)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted invalid template")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestImageRefs(t *testing.T) {
	for ref, ok := range map[string]bool{
		"quay.io/tinkerbell/actions/image2disk:latest": true,
		"127.0.0.1/embedded/writefile":                 true,
		"localhost:5000/a/b@sha256:abcd":               true,
		"ghcr.io/jacobweinstock/waitdaemon:0.2.1":      true,
		"busybox":    true,
		"":           false,
		"a//b":       false,
		"UPPER/case": false,
		"x:":         false,
		"img@abcd":   false,
		"quay.io/tinkerbell/actions/image2disk:latest extra": false,
	} {
		if err := checkImageRef(ref); (err == nil) != ok {
			t.Errorf("checkImageRef(%q) = %v, want ok=%v", ref, err, ok)
		}
	}
	for ref, want := range map[string]string{
		"quay.io/tinkerbell/actions/image2disk:latest": "image2disk",
		"127.0.0.1/embedded/reboot":                    "reboot",
		"localhost:5000/kexec@sha256:ab":               "kexec",
		"cexec":                                        "cexec",
	} {
		if got := ImageName(ref); got != want {
			t.Errorf("ImageName(%q) = %q, want %q", ref, got, want)
		}
	}
}

func TestHelpers(t *testing.T) {
	parts := []struct {
		disk string
		n    int
		want string
	}{
		{"/dev/sda", 1, "/dev/sda1"},
		{"/dev/nvme0n1", 2, "/dev/nvme0n1p2"},
		{"/dev/loop7", 1, "/dev/loop7p1"},
		{"/dev/vda", 12, "/dev/vda12"},
		{"/dev/mmcblk0", 1, "/dev/mmcblk0p1"},
		{"/dev/disk/by-id/nvme-SAMSUNG_MZQL2960HCJR-00A07_S64FNE0R123456", 2, "/dev/disk/by-id/nvme-SAMSUNG_MZQL2960HCJR-00A07_S64FNE0R123456-part2"},
	}
	for _, p := range parts {
		if got := FormatPartition(p.disk, p.n); got != p.want {
			t.Errorf("FormatPartition(%q,%d) = %q, want %q", p.disk, p.n, got, p.want)
		}
	}
	masks := map[string]int{"255.255.255.0": 24, "255.255.254.0": 23, "255.0.0.0": 8, "255.255.255.255": 32, "0.0.0.0": 0}
	for m, want := range masks {
		got, err := NetmaskToPrefixLength(m)
		if err != nil || got != want {
			t.Errorf("NetmaskToPrefixLength(%q) = %d, %v; want %d", m, got, err, want)
		}
	}
	for _, bad := range []string{"255.0.255.0", "24", "", "ffff::"} {
		if _, err := NetmaskToPrefixLength(bad); err == nil {
			t.Errorf("NetmaskToPrefixLength(%q) accepted", bad)
		}
	}
}

// netplan is the subset of a netplan document the tests inspect.
type netplan struct {
	Network struct {
		Ethernets map[string]struct {
			Match       map[string]string `yaml:"match"`
			Addresses   []string          `yaml:"addresses"`
			Nameservers struct {
				Addresses []string `yaml:"addresses"`
			} `yaml:"nameservers"`
			Routes []map[string]string `yaml:"routes"`
		} `yaml:"ethernets"`
		Vlans map[string]struct {
			ID        int      `yaml:"id"`
			Link      string   `yaml:"link"`
			Addresses []string `yaml:"addresses"`
			Routes    []map[string]string
		} `yaml:"vlans"`
	} `yaml:"network"`
}

func TestRenderEKSAUbuntuTemplate(t *testing.T) {
	src, err := os.ReadFile("testdata/eksa-ubuntu.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := testMachine()
	m.Disk = "/dev/sda"
	tpl, err := RenderTemplate("eksa-ubuntu", src, RenderInput{Machine: m})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	task := tpl.Tasks[0]
	if task.Worker != "cc:48:3a:00:00:01" {
		t.Errorf("worker = %q, want the lower-case MAC", task.Worker)
	}
	if len(task.Actions) != 6 {
		t.Fatalf("%d actions, want 6", len(task.Actions))
	}
	if got := task.Actions[0].Environment["DEST_DISK"]; got != "/dev/sda" {
		t.Errorf("stream DEST_DISK = %q", got)
	}
	if got := task.Actions[1].Environment["DEST_DISK"]; got != "/dev/sda2" {
		t.Errorf("netplan DEST_DISK = %q", got)
	}
	var np netplan
	if err := yaml.Unmarshal([]byte(task.Actions[1].Environment["CONTENTS"]), &np); err != nil {
		t.Fatalf("netplan CONTENTS is not YAML: %v\n%s", err, task.Actions[1].Environment["CONTENTS"])
	}
	eth := np.Network.Ethernets["eno1"]
	if eth.Match["macaddress"] != "cc:48:3a:00:00:01" || len(eth.Addresses) != 1 || eth.Addresses[0] != "10.10.50.11/23" {
		t.Errorf("netplan ethernet = %+v", eth)
	}
	if len(eth.Nameservers.Addresses) != 2 || eth.Routes[0]["via"] != "10.10.50.1" {
		t.Errorf("netplan nameservers/routes = %+v", eth)
	}
	if !IsRebootAction(task.Actions[5].Image) || task.Actions[5].Pid != "host" {
		t.Errorf("last action = %+v", task.Actions[5])
	}
}

func TestRenderDefaultTemplate(t *testing.T) {
	src, err := templates.FS.ReadFile("workflows/ubuntu.yaml")
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{"image_url": "http://10.0.0.1:8080/jammy.raw.gz", "metadata_url": "http://10.0.0.1:7172"}
	cases := []struct {
		name string
		vlan string
	}{{"plain", ""}, {"vlan", "120"}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := testMachine()
			m.VLANID = tc.vlan
			tpl, err := RenderTemplate("ubuntu", src, RenderInput{Machine: m, Values: values})
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			acts := tpl.Tasks[0].Actions
			names := []string{}
			for _, a := range acts {
				names = append(names, ImageName(a.Image))
			}
			if strings.Join(names, ",") != "image2disk,writefile,writefile,writefile,writefile,reboot" {
				t.Fatalf("action images = %v", names)
			}
			if acts[0].Environment["IMG_URL"] != values["image_url"] || acts[1].Environment["DEST_DISK"] != "/dev/nvme0n1p1" {
				t.Errorf("env = %v / %v", acts[0].Environment, acts[1].Environment)
			}
			var np netplan
			if err := yaml.Unmarshal([]byte(acts[1].Environment["CONTENTS"]), &np); err != nil {
				t.Fatalf("netplan: %v\n%s", err, acts[1].Environment["CONTENTS"])
			}
			eth := np.Network.Ethernets["mainif"]
			if eth.Match["macaddress"] != "cc:48:3a:00:00:01" {
				t.Errorf("netplan match = %v", eth.Match)
			}
			if tc.vlan == "" {
				if len(eth.Addresses) != 1 || eth.Addresses[0] != "10.10.50.11/23" || len(np.Network.Vlans) != 0 {
					t.Errorf("netplan = %+v", np.Network)
				}
			} else {
				v := np.Network.Vlans["vlan120"]
				if len(eth.Addresses) != 0 || v.ID != 120 || v.Link != "mainif" || len(v.Addresses) != 1 || v.Addresses[0] != "10.10.50.11/23" {
					t.Errorf("vlan netplan = %+v", np.Network)
				}
			}
			if !strings.Contains(acts[3].Environment["CONTENTS"], `metadata_urls: ["http://10.0.0.1:7172"]`) {
				t.Errorf("cloud-init datasource = %q", acts[3].Environment["CONTENTS"])
			}
		})
	}
	if _, err := RenderTemplate("ubuntu", src, RenderInput{Machine: testMachine()}); err == nil || !strings.Contains(err.Error(), "image_url") {
		t.Errorf("render without image_url: %v, want an error naming image_url", err)
	}
}

func TestRenderData(t *testing.T) {
	src := []byte(`{{ .hardware.spec.metadata.instance.id }} {{ .hardware.metadata.name }} {{ toYaml .Hardware.Disks }} {{ default "x" .missing_ok }} {{ lower "AB" }}`)
	in := RenderInput{Machine: testMachine(), Values: map[string]string{"missing_ok": ""}}
	out, err := Render("t", src, in.Data())
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != "cc:48:3a:00:00:01 cp01 - /dev/nvme0n1 x ab" {
		t.Errorf("got %q", got)
	}
	if _, err := Render("t", []byte(`{{ .nope }}`), in.Data()); err == nil {
		t.Error("missing key rendered without error")
	}
	big := []byte(`{{ range .Hardware.Disks }}{{ end }}` + strings.Repeat("x", MaxTemplateSize+1))
	if _, err := Render("t", big, in.Data()); err == nil {
		t.Error("oversized template accepted")
	}
}

func FuzzParseTemplate(f *testing.F) {
	seed, _ := os.ReadFile("testdata/eksa-ubuntu.yaml")
	f.Add(seed)
	def, _ := templates.FS.ReadFile("workflows/ubuntu.yaml")
	f.Add(def)
	f.Add([]byte("name: x\ntasks: [{name: a, worker: b, actions: [{name: c, image: d, timeout: 1}]}]"))
	f.Fuzz(func(t *testing.T, src []byte) {
		tpl, err := Parse(src)
		if err == nil {
			if err := tpl.Validate(); err != nil {
				t.Fatalf("Parse returned a template that does not validate: %v", err)
			}
			w := New("", "n", "h", "t", tpl, tplNow)
			if len(w.Tasks) != len(tpl.Tasks) {
				t.Fatal("task count changed")
			}
		}
	})
}

func TestForInventory(t *testing.T) {
	src, _ := templates.FS.ReadFile("workflows/ubuntu.yaml")
	m2 := testMachine()
	m2.Hostname, m2.MAC, m2.Line = "wk01", "cc:48:3a:00:00:02", 3
	inv := &hardware.Inventory{Path: "hw.csv", Machines: []hardware.Machine{testMachine(), m2}}
	wfs, err := ForInventory(inv, "ubuntu", src, map[string]string{"image_url": "u", "metadata_url": "m"}, "", tplNow)
	if err != nil || len(wfs) != 2 || wfs[1].ID() != "eksa-system/wk01" || wfs[1].AgentID != "cc:48:3a:00:00:02" {
		t.Fatalf("ForInventory = %v, %v", wfs, err)
	}
	m2.Disk = ""
	inv.Machines[1] = m2
	_, err = ForInventory(inv, "ubuntu", src, map[string]string{"image_url": "u", "metadata_url": "m"}, "", tplNow)
	if err == nil || !strings.Contains(err.Error(), "machine wk01 (hw.csv line 3)") {
		t.Fatalf("error %v does not name the machine and line", err)
	}
}
