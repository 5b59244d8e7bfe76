package ipmi

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/bmc"
	"github.com/kiln-dev/kiln/pkg/lab/ipmi/ipmitest"
	"github.com/kiln-dev/kiln/pkg/lab/redfish"
)

// ipmiClient is kiln's BMC client (bmclib's ipmitool provider) for srv.
func ipmiClient(t testing.TB, srv *Server, password string) *bmc.Client {
	t.Helper()
	c, err := bmc.New(bmc.Config{
		Name: "m1", Host: srv.Addr().String(), Username: testUser, Password: password,
		Protocols: []string{bmc.ProtocolIPMI}, Timeout: 2 * time.Minute, PollInterval: 100 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestThroughBMCClient drives the virtual IPMI BMC the way kiln drives a
// real server's: pkg/bmc → bmclib → ipmitool -I lanplus → UDP.
func TestThroughBMCClient(t *testing.T) {
	ipmitest.NeedIpmitool(t)
	srv, sys := startBMC(t)
	c := ipmiClient(t, srv, testPassword)
	ctx := context.Background()

	state := func(want bmc.PowerState) {
		t.Helper()
		got, err := c.PowerState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("power state %s, want %s", got, want)
		}
	}
	lastReset := func(want redfish.ResetType) {
		t.Helper()
		r := sys.Resets()
		if len(r) == 0 || r[len(r)-1] != want {
			t.Fatalf("machine saw resets %v, want the last to be %s", r, want)
		}
	}
	override := func(want redfish.BootOverride) {
		t.Helper()
		if got, _ := sys.BootOverride(ctx); got != want {
			t.Fatalf("boot override %+v, want %+v", got, want)
		}
	}

	state(bmc.PowerOff)
	if err := c.SetNextBoot(ctx, bmc.BootPXE, bmc.BootOptions{EFI: true}); err != nil {
		t.Fatal(err)
	}
	override(redfish.BootOverride{Target: redfish.TargetPxe, Enabled: redfish.EnabledOnce, Mode: redfish.ModeUEFI})
	if err := c.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	lastReset(redfish.ResetOn)
	state(bmc.PowerOn)
	if err := c.SetNextBoot(ctx, bmc.BootDisk, bmc.BootOptions{Persistent: true}); err != nil {
		t.Fatal(err)
	}
	override(redfish.BootOverride{Target: redfish.TargetHdd, Enabled: redfish.EnabledContinuous, Mode: redfish.ModeLegacy})
	if err := c.PowerCycle(ctx); err != nil {
		t.Fatal(err)
	}
	lastReset(redfish.ResetPowerCycle)
	if err := c.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	lastReset(redfish.ResetForceOff)
	state(bmc.PowerOff)
	// A power cycle of a machine that is off turns it on (pkg/bmc's rule).
	if err := c.PowerCycle(ctx); err != nil {
		t.Fatal(err)
	}
	lastReset(redfish.ResetOn)
}

// TestDefaultProtocolsReachIPMI: a Hardware.csv row carries only bmc_ip, so
// kiln tries Redfish first and falls back to IPMI (pkg/bmc's default order).
// Nothing listens on the TCP side of the BMC's port, so Redfish is refused at
// once and ipmitool answers.
func TestDefaultProtocolsReachIPMI(t *testing.T) {
	ipmitest.NeedIpmitool(t)
	srv, sys := startBMC(t)
	c, err := bmc.New(bmc.Config{Name: "m1", Host: srv.Addr().String(), Username: testUser, Password: testPassword,
		Timeout: 2 * time.Minute, PollInterval: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PowerOn(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := sys.Resets(); len(r) != 1 || r[0] != redfish.ResetOn {
		t.Fatalf("machine saw %v", r)
	}
}

func TestBMCClientWrongPassword(t *testing.T) {
	ipmitest.NeedIpmitool(t)
	srv, sys := startBMC(t)
	wrong := "wrong-" + testPassword[:8]
	_, err := ipmiClient(t, srv, wrong).PowerState(context.Background())
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
	msg := err.Error()
	for _, w := range []string{"machine m1", srv.Addr().String(), "Unable to establish IPMI v2 / RMCP+ session"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
	if strings.Contains(msg, wrong) {
		t.Errorf("error %q leaks the password", msg)
	}
	if r := sys.Resets(); len(r) != 0 {
		t.Errorf("machine saw %v", r)
	}
}

// BenchmarkPowerState compares one power-state read through kiln's BMC
// client over IPMI (bmclib → ipmitool, RMCP+ sessions) against this BMC,
// against OpenIPMI's ipmi_sim (when installed) and over the lab's Redfish
// BMC (HTTPS), all on loopback. Run:
// go test -run '^$' -bench PowerState -v ./pkg/lab/ipmi
func BenchmarkPowerState(b *testing.B) {
	ipmitest.NeedIpmitool(b)
	srv, sys := startBMC(b)
	h, err := redfish.NewHandler(redfish.Config{Name: "m1", Username: testUser, Password: testPassword, System: sys})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	rf, err := redfish.Serve(ln, h)
	if err != nil {
		b.Fatal(err)
	}
	defer rf.Close()
	client := func(host, proto string) *bmc.Client {
		c, err := bmc.New(bmc.Config{Name: "m1", Host: host, Username: testUser, Password: testPassword,
			Protocols: []string{proto}, Timeout: time.Minute}, nil)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	names := []string{"kiln-ipmi", "redfish", "ipmi_sim"}
	clients := []*bmc.Client{client(srv.Addr().String(), bmc.ProtocolIPMI), client(ln.Addr().String(), bmc.ProtocolRedfish)}
	if addr := startIPMISim(b); addr != "" {
		clients = append(clients, client(addr, bmc.ProtocolIPMI))
	}
	perOp := make([]time.Duration, len(clients))
	for i, c := range clients {
		b.Run(names[i], func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				if _, err := c.PowerState(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			perOp[i] = time.Since(start) / time.Duration(b.N)
		})
	}
	for i := range perOp {
		b.Logf("power-state round trip via %-9s %10s  (%.2f× kiln-ipmi)", names[i], perOp[i], float64(perOp[i])/float64(perOp[0]))
	}
}

// startIPMISim runs OpenIPMI's ipmi_sim with one admin user on a loopback
// UDP port for BenchmarkPowerState; "" when it is not installed.
func startIPMISim(b *testing.B) string {
	bin, err := exec.LookPath("ipmi_sim")
	if err != nil {
		b.Log("ipmi_sim not installed (apt-get install openipmi): no peer row")
		return ""
	}
	// ipmi_sim takes a fixed port: borrow a free one.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	dir := b.TempDir()
	conf := fmt.Sprintf(`name "kn5sim"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 %d
    priv_limit admin
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  user 2 true "%s" "%s" admin 10 none md2 md5 straight
`, port, testUser, testPassword)
	emu := "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n"
	for name, body := range map[string]string{"lan.conf": conf, "sim.emu": emu} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "sim.emu"), "-n", "-s", dir)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	// Wait until it answers.
	c, err := bmc.New(bmc.Config{Name: "sim", Host: addr, Username: testUser, Password: testPassword,
		Protocols: []string{bmc.ProtocolIPMI}, Timeout: 30 * time.Second}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.PowerState(context.Background()); err != nil {
		b.Fatalf("ipmi_sim does not answer: %v", err)
	}
	return addr
}
