package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/bmc"
	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/lab/ipmi/ipmitest"
	"github.com/kiln-dev/kiln/pkg/netns"
	"github.com/kiln-dev/kiln/pkg/qemu"
)

func testPrefix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "kn5" + hex.EncodeToString(b) // 9 characters
}

// TestUpPowerDown creates a two-machine lab with kiln's side in a test
// namespace, powers a machine on and off through its virtual BMC with the
// bmclib client, and checks that Close and Down leave nothing behind.
func TestUpPowerDown(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	admin := netns.ForTest(t, "kn5a")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	prefix := testPrefix()
	l, err := Up(ctx, Options{Dir: dir, Prefix: prefix, Machines: 2, Firmware: []qemu.Firmware{qemu.BIOS, qemu.UEFI},
		MemoryMiB: 128, DiskGiB: 1, Subnet: "10.251.5.0/24", AdminNetns: admin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = Down(context.Background(), dir) })
	defer l.Close(context.Background())

	inv, err := hardware.ReadFile(l.State.HardwareCSV)
	if err != nil {
		t.Fatalf("the lab's Hardware.csv does not read back: %v", err)
	}
	if len(inv.Machines) != 2 || inv.Machines[1].BMCIP != "10.251.5.102" || inv.Machines[1].IPAddress != "10.251.5.12" {
		t.Fatalf("inventory = %+v", inv.Machines)
	}
	if b, err := os.ReadFile(l.State.ClusterSpec); err != nil || !bytes.Contains(b, []byte("tinkerbellIP: 10.251.5.1")) {
		t.Fatalf("ClusterSpec.yml: %v\n%s", err, b)
	}

	m := inv.Machines[1]
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := admin.Do(func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	cfg := bmc.FromMachine(m)
	cfg.Protocols, cfg.Dial, cfg.Timeout, cfg.PollInterval = []string{bmc.ProtocolRedfish}, dial, 30*time.Second, 100*time.Millisecond
	b, err := bmc.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetNextBoot(ctx, bmc.BootPXE, bmc.BootOptions{EFI: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := ReadStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Running || s.Machines[1].Power != "on" || s.Machines[1].Boots != 1 || s.Machines[0].Power != "off" {
		t.Fatalf("status after power on = %+v", s)
	}
	// QEMU runs inside the lab namespace on the machine's tap.
	pid := strings.TrimSpace(readFile(t, l.State.Machines[1].PIDFile))
	cmdline := readFile(t, "/proc/"+pid+"/cmdline")
	if !strings.Contains(cmdline, l.State.Machines[1].Tap) || !strings.Contains(cmdline, "OVMF") {
		t.Fatalf("QEMU command line %q lacks the tap or OVMF", cmdline)
	}
	nsOfPID, _ := os.Readlink("/proc/" + pid + "/ns/net")
	nsOfSelf, _ := os.Readlink("/proc/self/ns/net")
	if nsOfPID == nsOfSelf {
		t.Fatal("QEMU runs in kiln's network namespace, not the lab's")
	}
	if err := Console(dir, m.Hostname, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if err := Console(dir, "nope", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), m.Hostname) {
		t.Fatalf("console of an unknown machine: %v", err)
	}
	if err := b.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := ReadStatus(dir); s.Machines[1].Power != "off" {
		t.Fatal("machine still on after power off")
	}
	if err := b.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}

	// Down tears the running lab down (the VM that is on included) and is
	// safe to repeat.
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	found, err := Down(ctx, dir)
	if err != nil || !found {
		t.Fatalf("Down = %v, %v", found, err)
	}
	if found, err := Down(ctx, dir); err != nil || found {
		t.Fatalf("second Down = %v, %v", found, err)
	}
	if _, err := os.Stat(filepath.Join("/var/run/netns", prefix)); !os.IsNotExist(err) {
		t.Fatalf("lab namespace %s still exists", prefix)
	}
	if _, err := os.Stat("/proc/" + pid); !os.IsNotExist(err) {
		t.Fatalf("QEMU (pid %s) still runs", pid)
	}
	if out, _ := admin.Output(ctx, "ip", "link", "show", prefix+"h"); len(out) > 0 {
		t.Fatalf("kiln's veth end is still there: %s", out)
	}
}

// TestIPMIBMC starts a one-machine lab whose virtual BMC speaks IPMI and
// powers the VM on with a network boot and off again with ipmitool
// (-I lanplus) run in kiln's (test) namespace, as an operator would.
func TestIPMIBMC(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	ipmitest.NeedIpmitool(t)
	admin := netns.ForTest(t, "kn5i")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	l, err := Up(ctx, Options{Dir: dir, Prefix: testPrefix(), Machines: 1, MemoryMiB: 128, DiskGiB: 1,
		Subnet: "10.251.7.0/24", AdminNetns: admin, BMC: BMCIPMI})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = Down(context.Background(), dir) })
	defer l.Close(context.Background())
	if st, err := ReadState(dir); err != nil || st.BMC != BMCIPMI {
		t.Fatalf("state records BMC %q (%v)", st.BMC, err)
	}
	m := l.State.Machines[0]
	ipmitool := func(args ...string) string {
		t.Helper()
		cmd := admin.Command(ctx, "ipmitool", append([]string{"-I", "lanplus", "-H", m.BMCIP, "-U", l.State.BMCUser, "-E", "-N", "5"}, args...)...)
		cmd.Env = []string{"IPMITOOL_PASSWORD=" + l.BMCPassword()}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// The BMC may answer before QEMU runs or stops; poll the lab's own view.
	waitPower := func(want string) {
		t.Helper()
		for s, _ := ReadStatus(dir); s.Machines[0].Power != want; s, _ = ReadStatus(dir) {
			if ctx.Err() != nil {
				t.Fatal("the machine did not power " + want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	ipmitool("chassis", "bootdev", "pxe")
	ipmitool("chassis", "power", "on")
	waitPower("on")
	if out := ipmitool("chassis", "power", "status"); !strings.Contains(out, "Chassis Power is on") {
		t.Fatalf("power status: %s", out)
	}
	pid := strings.TrimSpace(readFile(t, m.PIDFile))
	// The PXE override put the NIC first in the boot order.
	if cmdline := readFile(t, "/proc/"+pid+"/cmdline"); !strings.Contains(cmdline, "bootindex=1") {
		t.Fatalf("QEMU command line %q does not boot from the NIC first", cmdline)
	}
	ipmitool("chassis", "power", "off")
	waitPower("off")
}

func TestDownCleansUpAfterACrash(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	prefix := testPrefix()
	// A lab whose `up` process died: its namespace and state remain.
	ns, err := netns.Create(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{Dir: dir, State: State{Prefix: prefix, Netns: prefix, AdminLink: prefix + "h", PID: 999999999}}
	if err := l.writeState(); err != nil {
		t.Fatal(err)
	}
	if found, err := Down(ctx, dir); err != nil || !found {
		t.Fatalf("Down = %v, %v", found, err)
	}
	if _, err := os.Stat(ns.Path()); !os.IsNotExist(err) {
		_ = ns.Delete(ctx)
		t.Fatal("Down left the namespace behind")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{Machines: 1},
		{Dir: "x", Machines: 0},
		{Dir: "x", Machines: 1, Prefix: "much-too-long"},
	} {
		if err := o.defaults(); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
