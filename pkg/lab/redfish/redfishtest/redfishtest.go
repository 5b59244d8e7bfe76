// Package redfishtest provides a machine for tests of the lab's BMCs: a
// redfish.System that keeps a power state and a boot override and records
// what it was asked.
package redfishtest

import (
	"context"
	"slices"
	"sync"

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
