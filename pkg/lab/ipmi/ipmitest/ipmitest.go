// Package ipmitest holds test helpers for code that drives a virtual IPMI
// BMC with ipmitool.
package ipmitest

import (
	"os"
	"os/exec"
	"testing"
)

// NeedIpmitool returns ipmitool's path, or skips the test when it is not
// installed; with KILN_REQUIRE_IPMI=1 (set by CI) it fails instead.
func NeedIpmitool(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("ipmitool")
	if err != nil {
		if os.Getenv("KILN_REQUIRE_IPMI") == "1" {
			t.Fatal("ipmitool is required (KILN_REQUIRE_IPMI=1): apt-get install ipmitool")
		}
		t.Skip("ipmitool not installed (apt-get install ipmitool); set KILN_REQUIRE_IPMI=1 to fail instead")
	}
	return p
}
