package kube

import (
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/hardware"
)

func TestYAMLOrderAndBMCObjects(t *testing.T) {
	inv := &hardware.Inventory{Machines: []hardware.Machine{
		{Hostname: "a", IPAddress: "10.0.0.2", Netmask: "255.255.255.0", Gateway: "10.0.0.1", MAC: "00:00:00:00:00:01", Disk: "/dev/sda",
			BMCIP: "10.0.1.2", BMCUsername: "u", BMCPassword: "p"},
		{Hostname: "b", IPAddress: "10.0.0.3", Netmask: "255.255.255.0", Gateway: "10.0.0.1", MAC: "00:00:00:00:00:02", Disk: "/dev/sda"},
	}}
	objs := FromInventory(inv)
	if len(objs.Hardware) != 2 || len(objs.BMCMachines) != 1 || len(objs.Secrets) != 1 {
		t.Fatalf("got %d/%d/%d objects", len(objs.Hardware), len(objs.BMCMachines), len(objs.Secrets))
	}
	if objs.Hardware[1].Spec.BMCRef != nil {
		t.Errorf("machine without BMC has a bmcRef")
	}
	out, err := objs.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "kind: ") || strings.HasPrefix(l, "  name: ") {
			kinds = append(kinds, strings.TrimSpace(l))
		}
	}
	want := "kind: Hardware,name: a,kind: Machine,name: bmc-a,kind: Secret,name: bmc-a-auth,kind: Hardware,name: b"
	if got := strings.Join(kinds, ","); got != want {
		t.Errorf("document order:\n got %s\nwant %s", got, want)
	}
}
