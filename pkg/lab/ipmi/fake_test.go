package ipmi

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/pkg/lab/redfish"
)

// fakeSystem is a redfish.System that records what the BMC asked of it.
type fakeSystem struct {
	mu       sync.Mutex
	on       bool
	override redfish.BootOverride
	resets   []redfish.ResetType
	sets     []redfish.BootOverride
}

func newFakeSystem() *fakeSystem {
	return &fakeSystem{override: redfish.BootOverride{Target: redfish.TargetNone, Enabled: redfish.EnabledDisabled, Mode: redfish.ModeLegacy}}
}

func (f *fakeSystem) PowerState(context.Context) (redfish.PowerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.on {
		return redfish.PowerOn, nil
	}
	return redfish.PowerOff, nil
}

func (f *fakeSystem) Reset(_ context.Context, t redfish.ResetType) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resets = append(f.resets, t)
	switch t {
	case redfish.ResetOn, redfish.ResetForceOn, redfish.ResetPowerCycle, redfish.ResetForceRestart:
		f.on = true
	case redfish.ResetForceOff, redfish.ResetGracefulShutdown:
		f.on = false
	}
	return nil
}

func (f *fakeSystem) BootOverride(context.Context) (redfish.BootOverride, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.override, nil
}

func (f *fakeSystem) SetBootOverride(_ context.Context, o redfish.BootOverride) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.override = o
	f.sets = append(f.sets, o)
	return nil
}

func (f *fakeSystem) Resets() []redfish.ResetType {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.resets)
}

func (f *fakeSystem) Sets() []redfish.BootOverride {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sets)
}

const (
	testUser     = "admin"
	testPassword = "s3cret-lab-pass"
)

// startBMC serves a BMC backed by a fresh fake system on an ephemeral
// loopback UDP port.
func startBMC(t testing.TB) (*Server, *fakeSystem) {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sys := newFakeSystem()
	srv, err := Serve(conn, Config{Name: "m1", Username: testUser, Password: testPassword, System: sys})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, sys
}
