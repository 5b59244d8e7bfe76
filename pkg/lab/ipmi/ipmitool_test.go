package ipmi

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/lab/ipmi/ipmitest"
	"github.com/kiln-dev/kiln/pkg/lab/redfish"
)

// ipmitool runs `ipmitool -I lanplus` against srv with the given cipher
// suite ("" for ipmitool's own choice) and password.
func ipmitool(t *testing.T, bin string, srv *Server, suite, password string, args ...string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(srv.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := []string{"-I", "lanplus", "-H", host, "-p", port, "-U", testUser, "-E", "-N", "5"}
	if suite != "" {
		argv = append(argv, "-C", suite)
	}
	cmd := exec.CommandContext(ctx, bin, append(argv, args...)...)
	cmd.Env = []string{"IPMITOOL_PASSWORD=" + password}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestIpmitool(t *testing.T) {
	bin := ipmitest.NeedIpmitool(t)
	for _, suite := range []string{"3", "17", ""} {
		name := "suite-" + suite
		if suite == "" {
			name = "default-suite"
		}
		t.Run(name, func(t *testing.T) {
			srv, sys := startBMC(t)
			run := func(args ...string) string {
				t.Helper()
				out, err := ipmitool(t, bin, srv, suite, testPassword, args...)
				if err != nil {
					t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return out
			}
			if out := run("chassis", "power", "status"); !strings.Contains(out, "Chassis Power is off") {
				t.Fatalf("power status: %q", out)
			}
			if out := run("chassis", "power", "on"); !strings.Contains(out, "Chassis Power Control: Up/On") {
				t.Fatalf("power on: %q", out)
			}
			if out := run("chassis", "power", "status"); !strings.Contains(out, "Chassis Power is on") {
				t.Fatalf("power status after on: %q", out)
			}
			if out := run("chassis", "bootdev", "pxe", "options=efiboot"); !strings.Contains(out, "Set Boot Device to pxe") {
				t.Fatalf("bootdev: %q", out)
			}
			want := redfish.BootOverride{Target: redfish.TargetPxe, Enabled: redfish.EnabledOnce, Mode: redfish.ModeUEFI}
			if o, _ := sys.BootOverride(context.Background()); o != want {
				t.Fatalf("boot override %+v, want %+v", o, want)
			}
			out := run("chassis", "bootparam", "get", "5")
			for _, w := range []string{"Force PXE", "BIOS EFI boot"} {
				if !strings.Contains(out, w) {
					t.Errorf("bootparam get 5 lacks %q:\n%s", w, out)
				}
			}
			if got := sys.Resets(); len(got) != 1 || got[0] != redfish.ResetOn {
				t.Errorf("resets %v, want [On]", got)
			}
		})
	}
}

func TestIpmitoolWrongPassword(t *testing.T) {
	bin := ipmitest.NeedIpmitool(t)
	srv, sys := startBMC(t)
	out, err := ipmitool(t, bin, srv, "3", "not-the-password", "chassis", "power", "on")
	if err == nil {
		t.Fatalf("ipmitool with a wrong password succeeded:\n%s", out)
	}
	if !strings.Contains(out, "Unable to establish IPMI v2 / RMCP+ session") {
		t.Errorf("unexpected ipmitool output: %s", out)
	}
	if got := sys.Resets(); len(got) != 0 {
		t.Errorf("a refused login reached the machine: %v", got)
	}
}
