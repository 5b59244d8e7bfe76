package bmc_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/bmc"
	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/lab/redfish"
	"github.com/kiln-dev/kiln/pkg/lab/redfish/redfishtest"
	"github.com/kiln-dev/kiln/pkg/lab/vmpower"
	"github.com/kiln-dev/kiln/pkg/lab/vmpower/vmpowertest"
)

const (
	user = "admin"
	pass = "s3cret-Pa55"
)

// virtualBMC serves a Redfish BMC on loopback for sys and returns its address.
func virtualBMC(t *testing.T, sys redfish.System) string {
	t.Helper()
	return redfishtest.Serve(t, redfish.Config{Name: "node1", Username: user, Password: pass, System: sys}).Addr
}

// TestBMCLibDrivesQEMU powers a real (board-less) QEMU through bmclib's
// Redfish provider talking to kiln's virtual BMC.
func TestBMCLibDrivesQEMU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	launcher := vmpowertest.New(t)
	vm := vmpower.New(ctx, "node1", true, launcher, nil)
	defer vm.PowerOff(context.Background())
	addr := virtualBMC(t, vm)

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := bmc.New(bmc.Config{Name: "node1", Host: addr, Username: user, Password: pass, Protocols: []string{bmc.ProtocolRedfish}, Timeout: 20 * time.Second, PollInterval: 50 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	var b bmc.BMC = c

	steps := []struct {
		name string
		do   func() error
		want bmc.PowerState
	}{
		{"initial state", func() error { return nil }, bmc.PowerOff},
		{"next boot PXE (EFI, once)", func() error { return b.SetNextBoot(ctx, bmc.BootPXE, bmc.BootOptions{EFI: true}) }, bmc.PowerOff},
		{"power on", func() error { return b.PowerOn(ctx) }, bmc.PowerOn},
		{"power on again", func() error { return b.PowerOn(ctx) }, bmc.PowerOn},
		{"next boot disk", func() error { return b.SetNextBoot(ctx, bmc.BootDisk, bmc.BootOptions{EFI: true, Persistent: true}) }, bmc.PowerOn},
		{"power cycle", func() error { return b.PowerCycle(ctx) }, bmc.PowerOn},
		{"power off", func() error { return b.PowerOff(ctx) }, bmc.PowerOff},
		{"power off again", func() error { return b.PowerOff(ctx) }, bmc.PowerOff},
		{"power cycle while off turns on", func() error { return b.PowerCycle(ctx) }, bmc.PowerOn},
		{"power off at the end", func() error { return b.PowerOff(ctx) }, bmc.PowerOff},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got, err := b.PowerState(ctx)
		if err != nil {
			t.Fatalf("%s: power state: %v", s.name, err)
		}
		if got != s.want {
			t.Fatalf("after %s the BMC reports %s; want %s", s.name, got, s.want)
		}
	}
	want := []vmpower.Boot{{Network: true, UEFI: true}, {Network: false, UEFI: true}, {Network: false, UEFI: true}}
	got := launcher.Launches()
	if len(got) != len(want) {
		t.Fatalf("QEMU was started %d times (%+v); want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("start %d booted %+v; want %+v", i, got[i], want[i])
		}
	}
	if last := launcher.Last(); !last.Exited() {
		t.Error("QEMU still runs after power off")
	}
	if strings.Contains(logs.String(), pass) {
		t.Errorf("the password appears in the log:\n%s", logs.String())
	}
}

func TestErrorsNameTheMachineAndHideThePassword(t *testing.T) {
	ctx := context.Background()
	dead := redfishtest.New() // off, and stays off
	dead.IgnoreResets()
	addr := virtualBMC(t, dead)
	// A closed port: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name string
		cfg  bmc.Config
		op   func(bmc.BMC) error
		want []string
	}{
		{
			name: "wrong password",
			cfg:  bmc.Config{Name: "rack1-n3", Host: addr, Username: user, Password: "wrong-" + pass},
			op:   func(b bmc.BMC) error { _, err := b.PowerState(ctx); return err },
			want: []string{"rack1-n3", addr, "read power state"},
		},
		{
			name: "nothing listening",
			cfg:  bmc.Config{Name: "rack1-n4", Host: closed, Username: user, Password: pass},
			op:   func(b bmc.BMC) error { return b.PowerOn(ctx) },
			want: []string{"rack1-n4", closed, "power on"},
		},
		{
			name: "machine never turns on",
			cfg:  bmc.Config{Name: "rack1-n5", Host: addr, Username: user, Password: pass, Timeout: 2 * time.Second, PollInterval: 100 * time.Millisecond},
			op:   func(b bmc.BMC) error { return b.PowerOn(ctx) },
			want: []string{"rack1-n5", "still off", "no answer within 2s"},
		},
		{
			name: "unsupported boot device",
			cfg:  bmc.Config{Name: "rack1-n6", Host: addr, Username: user, Password: pass},
			op:   func(b bmc.BMC) error { return b.SetNextBoot(ctx, "cdrom", bmc.BootOptions{}) },
			want: []string{"rack1-n6", `"cdrom"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Protocols = []string{bmc.ProtocolRedfish}
			if tc.cfg.Timeout == 0 {
				tc.cfg.Timeout = 10 * time.Second
			}
			c, err := bmc.New(tc.cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = tc.op(c)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), pass) {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  bmc.Config
		want string
	}{
		{"no host", bmc.Config{Name: "n1", Username: "u"}, "bmc_ip"},
		{"no user", bmc.Config{Name: "n1", Host: "10.0.0.1"}, "bmc_username"},
		{"bad port", bmc.Config{Name: "n1", Host: "10.0.0.1:99999", Username: "u"}, "invalid port"},
		{"bad protocol", bmc.Config{Name: "n1", Host: "10.0.0.1", Username: "u", Protocols: []string{"amt"}}, `"amt"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bmc.New(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "n1") {
				t.Fatalf("New error = %v; want one naming the machine and %q", err, tc.want)
			}
		})
	}
}

func TestConfigNeverPrintsThePassword(t *testing.T) {
	cfg := bmc.FromMachine(hardware.Machine{Hostname: "n1", BMCIP: "10.0.0.9", BMCUsername: "root", BMCPassword: pass})
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "bmc", cfg)
	for _, s := range []string{buf.String(), cfg.String()} {
		if strings.Contains(s, pass) {
			t.Fatalf("password leaked: %s", s)
		}
		if !strings.Contains(s, "10.0.0.9") {
			t.Fatalf("host missing: %s", s)
		}
	}
}

func TestParsePowerState(t *testing.T) {
	for in, want := range map[string]bmc.PowerState{
		"On": bmc.PowerOn, "off": bmc.PowerOff, "Chassis Power is on": bmc.PowerOn, "Chassis Power is off": bmc.PowerOff,
		"PoweringOn": bmc.PowerOff, "PoweringOff": bmc.PowerOn, "": bmc.PowerUnknown, "Paused": bmc.PowerUnknown,
	} {
		if got := bmc.ParsePowerState(in); got != want {
			t.Errorf("ParsePowerState(%q) = %s; want %s", in, got, want)
		}
	}
}
