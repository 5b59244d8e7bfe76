package lab

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/templates"
)

// TestLabTemplate renders templates/workflows/lab.yaml for a lab machine and
// checks the actions and the kiln.env it writes, with and without a separate
// phone-home URL.
func TestLabTemplate(t *testing.T) {
	src, err := templates.FS.ReadFile("workflows/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	inv := &hardware.Inventory{Path: filepath.Join("lab", HardwareFile), Machines: []hardware.Machine{{
		Hostname: "lab-01", MAC: "52:54:00:09:06:0b", IPAddress: "10.251.6.11", Netmask: "255.255.255.0", Gateway: "10.251.6.1", Disk: "/dev/vda",
	}}}
	for _, tc := range []struct {
		values map[string]string
		env    string
	}{
		{map[string]string{"image_url": "http://k/images/lab.raw.gz", "kiln_url": "http://k:7080"}, "KILN_URL=http://k:7080\n"},
		{map[string]string{"image_url": "http://k/images/lab.raw.gz", "kiln_url": "http://k:7080", "phone_home_url": "http://k:7171/phone-home"},
			"KILN_URL=http://k:7080\nKILN_PHONE_HOME_URL=http://k:7171/phone-home\n"},
	} {
		wfs, err := workflow.ForInventory(inv, "lab", src, tc.values, workflow.DefaultNamespace, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		acts := wfs[0].Tasks[0].Actions
		var names []string
		for _, a := range acts {
			names = append(names, a.Name)
		}
		if strings.Join(names, ",") != "stream-image,write-kiln-env,reboot" {
			t.Fatalf("actions = %v", names)
		}
		if acts[0].Environment["DEST_DISK"] != "/dev/vda" || acts[1].Environment["DEST_DISK"] != "/dev/vda2" {
			t.Fatalf("disks = %q, %q", acts[0].Environment["DEST_DISK"], acts[1].Environment["DEST_DISK"])
		}
		if got := acts[1].Environment["CONTENTS"]; got != tc.env {
			t.Fatalf("kiln.env = %q; want %q", got, tc.env)
		}
	}
}
