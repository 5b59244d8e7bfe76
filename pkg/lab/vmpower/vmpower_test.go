package vmpower_test

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/lab/redfish"
	"github.com/kiln-dev/kiln/pkg/lab/vmpower"
	"github.com/kiln-dev/kiln/pkg/lab/vmpower/vmpowertest"
	"github.com/kiln-dev/kiln/pkg/qmp"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPowerAndBootOverride(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := vmpowertest.New(t)
	m := vmpower.New(ctx, "vm1", true, l, nil)
	defer m.PowerOff(context.Background())

	state := func() redfish.PowerState {
		s, err := m.PowerState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if state() != redfish.PowerOff {
		t.Fatal("a new machine is not off")
	}

	// One-time PXE override, then power on: the first boot is from the network.
	if err := m.SetBootOverride(ctx, redfish.BootOverride{Target: redfish.TargetPxe, Enabled: redfish.EnabledOnce, Mode: redfish.ModeUEFI}); err != nil {
		t.Fatal(err)
	}
	if err := m.Reset(ctx, redfish.ResetOn); err != nil {
		t.Fatal(err)
	}
	if state() != redfish.PowerOn {
		t.Fatal("machine not on after Reset(On)")
	}
	if err := m.Reset(ctx, redfish.ResetOn); err != nil || len(l.Launches()) != 1 {
		t.Fatalf("On while on: err=%v launches=%d; want no new process", err, len(l.Launches()))
	}
	first := l.Last()
	guest, err := qmp.Dial(ctx, first.Test)
	if err != nil {
		t.Fatal(err)
	}
	st, err := guest.Status(ctx)
	if err != nil || !st.Running {
		t.Fatalf("QEMU status = %+v, %v; want running (cont after -S)", st, err)
	}
	if o, _ := m.BootOverride(ctx); o.Enabled != redfish.EnabledDisabled {
		t.Fatalf("one-time override still enabled after a boot: %+v", o)
	}

	// The guest reboots: QEMU exits (-no-reboot) and a new process starts
	// from the default (disk-first) order.
	if err := guest.SystemReset(ctx); err != nil {
		t.Fatal(err)
	}
	guest.Close()
	waitFor(t, "the restart after a guest reboot", func() bool { return len(l.Launches()) == 2 && m.Boots() == 2 })
	if !first.Exited() {
		t.Fatal("the first QEMU process is still running after the guest reboot")
	}
	if state() != redfish.PowerOn {
		t.Fatal("machine off after a guest reboot")
	}

	// A continuous override survives a power cycle.
	if err := m.SetBootOverride(ctx, redfish.BootOverride{Target: redfish.TargetPxe, Enabled: redfish.EnabledContinuous, Mode: redfish.ModeUEFI}); err != nil {
		t.Fatal(err)
	}
	for _, rt := range []redfish.ResetType{redfish.ResetPowerCycle, redfish.ResetForceRestart} {
		if err := m.Reset(ctx, rt); err != nil {
			t.Fatalf("%s: %v", rt, err)
		}
	}
	// Graceful shutdown of a board without ACPI is accepted by QEMU as a request.
	if err := m.Reset(ctx, redfish.ResetGracefulShutdown); err != nil {
		t.Fatalf("GracefulShutdown: %v", err)
	}
	last := l.Last()
	if err := m.Reset(ctx, redfish.ResetForceOff); err != nil {
		t.Fatal(err)
	}
	if state() != redfish.PowerOff || !last.Exited() {
		t.Fatal("machine still on after ForceOff")
	}
	if err := m.PowerOff(ctx); err != nil {
		t.Fatalf("second power off: %v", err)
	}
	if err := m.Reset(ctx, redfish.ResetGracefulShutdown); err == nil {
		t.Fatal("graceful shutdown of an off machine succeeded")
	}

	want := []vmpower.Boot{{Network: true, UEFI: true}, {Network: false, UEFI: true}, {Network: true, UEFI: true}, {Network: true, UEFI: true}}
	got := l.Launches()
	if len(got) != len(want) {
		t.Fatalf("launches = %+v; want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("launch %d booted %+v; want %+v", i, got[i], want[i])
		}
	}
}

func TestLegacyVMKeepsItsFirmware(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := vmpowertest.New(t)
	m := vmpower.New(ctx, "bios", false, l, nil)
	defer m.PowerOff(context.Background())
	if err := m.SetBootOverride(ctx, redfish.BootOverride{Target: redfish.TargetPxe, Enabled: redfish.EnabledOnce, Mode: redfish.ModeUEFI}); err != nil {
		t.Fatal(err)
	}
	if err := m.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if got := l.Launches(); len(got) != 1 || got[0] != (vmpower.Boot{Network: true, UEFI: false}) {
		t.Fatalf("launches = %+v; want one network boot with the VM's BIOS firmware", got)
	}
}
