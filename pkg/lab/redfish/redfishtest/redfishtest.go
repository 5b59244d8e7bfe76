// Package redfishtest provides a machine for tests of the lab's BMCs: a
// redfish.System that keeps a power state and a boot override and records
// what it was asked.
package redfishtest

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/pkg/lab/redfish"
)

// System is a recording redfish.System, safe for concurrent use.
type System struct {
	mu       sync.Mutex
	on       bool
	override redfish.BootOverride
	resets   []redfish.ResetType
	sets     []redfish.BootOverride
	fail     error
	stuck    bool
}

// New returns a machine that is powered off and boots from its default
// device in legacy mode.
func New() *System {
	return &System{override: redfish.BootOverride{Target: redfish.TargetNone, Enabled: redfish.EnabledDisabled, Mode: redfish.ModeLegacy}}
}

// Fail makes Reset return err (nil: succeed again), as a machine whose
// hypervisor is gone.
func (s *System) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

// IgnoreResets makes Reset succeed without changing the power state, as a
// machine that never turns on.
func (s *System) IgnoreResets() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stuck = true
}

// PowerState implements redfish.System.
func (s *System) PowerState(context.Context) (redfish.PowerState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.on {
		return redfish.PowerOn, nil
	}
	return redfish.PowerOff, nil
}

// Reset implements redfish.System: it records t and applies its power
// transition.
func (s *System) Reset(_ context.Context, t redfish.ResetType) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.resets = append(s.resets, t)
	if s.stuck {
		return nil
	}
	switch t {
	case redfish.ResetOn, redfish.ResetForceOn, redfish.ResetPowerCycle, redfish.ResetForceRestart:
		s.on = true
	case redfish.ResetForceOff, redfish.ResetGracefulShutdown:
		s.on = false
	}
	return nil
}

// BootOverride implements redfish.System.
func (s *System) BootOverride(context.Context) (redfish.BootOverride, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.override, nil
}

// SetBootOverride implements redfish.System: it records o.
func (s *System) SetBootOverride(_ context.Context, o redfish.BootOverride) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.override = o
	s.sets = append(s.sets, o)
	return nil
}

// Resets returns the resets asked so far.
func (s *System) Resets() []redfish.ResetType {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.resets)
}

// Sets returns the boot overrides set so far.
func (s *System) Sets() []redfish.BootOverride {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sets)
}

// Serve serves a Redfish BMC for cfg on an ephemeral loopback port (HTTPS,
// with a certificate for that address, trusted by srv.RootCAs) until the
// test ends.
func Serve(t testing.TB, cfg redfish.Config) *redfish.Server {
	t.Helper()
	h, err := redfish.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := redfish.Serve(ln, h)
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}
