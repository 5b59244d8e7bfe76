// Package vmpower gives a QEMU virtual machine the power and boot behaviour
// of a physical server behind a BMC: powering on starts a QEMU process with
// the boot order the pending boot override asks for, powering off ends it, a
// one-time override is used by exactly one boot, and a guest reboot starts a
// new process so the firmware's boot order is re-evaluated as on hardware.
// A Machine implements redfish.System.
package vmpower

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/pkg/lab/redfish"
	"github.com/kiln-dev/kiln/pkg/qmp"
)

// Boot is what a VM boots from on one start.
type Boot struct {
	// Network boots from the NIC (PXE) first; otherwise the disk is first and
	// the NIC is the fallback, as on a server with a default boot order.
	Network bool
	// UEFI records the requested firmware mode. A VM's firmware is fixed
	// when it is defined; the launcher may warn on a mismatch.
	UEFI bool
}

// Launcher starts QEMU processes for one VM. pkg/qemu provides the real one.
type Launcher interface {
	// Launch starts QEMU for the VM with boot as its boot order. The process
	// must start with its CPUs stopped (-S) so that the caller can connect
	// to QMP before the guest runs, and must exit instead of rebooting
	// (-no-reboot) so that the next boot order applies to guest reboots.
	Launch(ctx context.Context, boot Boot) (Process, error)
}

// Process is one running QEMU.
type Process interface {
	// QMPSocket is the path of the process's QMP unix socket.
	QMPSocket() string
	// Wait blocks until the process has exited.
	Wait() error
	// Kill ends the process at once.
	Kill() error
}

// Machine is one lab VM's power and boot state.
type Machine struct {
	name     string
	uefi     bool
	launcher Launcher
	log      *slog.Logger
	// life bounds processes started by the machine, including restarts
	// after guest reboots.
	life context.Context

	mu       sync.Mutex
	override redfish.BootOverride
	run      *running
	boots    int
}

type running struct {
	proc Process
	qmp  *qmp.Client
	// stopping is set when kiln ends the process, so its exit is not
	// taken for a guest reboot.
	stopping bool
	exited   chan struct{}
}

var _ redfish.System = (*Machine)(nil)

// New returns a powered-off machine. life bounds every process the machine
// starts; cancel it (or call PowerOff) to stop the VM. log may be nil.
func New(life context.Context, name string, uefi bool, l Launcher, log *slog.Logger) *Machine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mode := redfish.ModeLegacy
	if uefi {
		mode = redfish.ModeUEFI
	}
	return &Machine{
		name: name, uefi: uefi, launcher: l, log: log.With("vm", name), life: life,
		override: redfish.BootOverride{Target: redfish.TargetNone, Enabled: redfish.EnabledDisabled, Mode: mode},
	}
}

// Boots reports how many times the machine has been started.
func (m *Machine) Boots() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.boots
}

// PowerState implements redfish.System.
func (m *Machine) PowerState(context.Context) (redfish.PowerState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.run != nil {
		return redfish.PowerOn, nil
	}
	return redfish.PowerOff, nil
}

// BootOverride implements redfish.System.
func (m *Machine) BootOverride(context.Context) (redfish.BootOverride, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.override, nil
}

// SetBootOverride implements redfish.System. It takes effect at the next start.
func (m *Machine) SetBootOverride(_ context.Context, o redfish.BootOverride) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o.Enabled != redfish.EnabledDisabled && o.Target == redfish.TargetNone {
		o.Enabled = redfish.EnabledDisabled
	}
	m.override = o
	return nil
}

// Reset implements redfish.System.
func (m *Machine) Reset(ctx context.Context, t redfish.ResetType) error {
	switch t {
	case redfish.ResetOn, redfish.ResetForceOn:
		return m.PowerOn(ctx)
	case redfish.ResetForceOff:
		return m.PowerOff(ctx)
	case redfish.ResetGracefulShutdown:
		return m.qmpCommand(ctx, "system_powerdown")
	case redfish.ResetPushPowerButton:
		if st, _ := m.PowerState(ctx); st == redfish.PowerOff {
			return m.PowerOn(ctx)
		}
		return m.qmpCommand(ctx, "system_powerdown")
	case redfish.ResetNmi:
		return m.qmpCommand(ctx, "inject-nmi")
	case redfish.ResetForceRestart, redfish.ResetGracefulRestart, redfish.ResetPowerCycle:
		// A restart is a new process, so a pending boot override applies.
		if err := m.PowerOff(ctx); err != nil {
			return err
		}
		return m.PowerOn(ctx)
	}
	return fmt.Errorf("VM %s: reset type %q is not supported", m.name, t)
}

func (m *Machine) qmpCommand(ctx context.Context, cmd string) error {
	m.mu.Lock()
	r := m.run
	m.mu.Unlock()
	if r == nil {
		return fmt.Errorf("VM %s is off", m.name)
	}
	if err := r.qmp.Execute(ctx, cmd, nil, nil); err != nil {
		return fmt.Errorf("VM %s: %w", m.name, err)
	}
	return nil
}

// PowerOn starts the VM unless it is running.
func (m *Machine) PowerOn(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.run != nil {
		return nil
	}
	return m.startLocked(ctx)
}

// startLocked launches QEMU with the boot order the override asks for,
// consuming a one-time override, connects QMP and starts the CPUs.
func (m *Machine) startLocked(ctx context.Context) error {
	boot := Boot{UEFI: m.uefi}
	if m.override.Enabled != redfish.EnabledDisabled {
		boot.Network = m.override.Target == redfish.TargetPxe
		boot.UEFI = m.override.Mode == redfish.ModeUEFI
	}
	if boot.UEFI != m.uefi {
		m.log.Warn("boot override asks for a firmware mode the VM does not have; booting with the VM's firmware", "uefi", m.uefi)
		boot.UEFI = m.uefi
	}
	proc, err := m.launcher.Launch(m.life, boot)
	if err != nil {
		return fmt.Errorf("VM %s: start QEMU: %w", m.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = proc.Wait(); close(exited) }()

	c, err := dialQMP(ctx, proc.QMPSocket(), exited)
	if err == nil {
		err = c.Cont(ctx)
	}
	if err != nil {
		_ = proc.Kill()
		<-exited
		if c != nil {
			c.Close()
		}
		return fmt.Errorf("VM %s: %w", m.name, err)
	}
	if m.override.Enabled == redfish.EnabledOnce {
		m.override.Enabled = redfish.EnabledDisabled
	}
	m.boots++
	r := &running{proc: proc, qmp: c, exited: exited}
	m.run = r
	m.log.Info("VM powered on", "network_boot", boot.Network, "uefi", boot.UEFI, "boot", m.boots)
	go m.watch(r)
	return nil
}

// dialQMP retries until QEMU has created its socket or has exited.
func dialQMP(ctx context.Context, path string, exited <-chan struct{}) (*qmp.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := qmp.Dial(ctx, path)
		if err == nil {
			return c, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("QEMU exited before its QMP socket answered: %w", err)
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// watch waits for the process to end and restarts it when the guest rebooted.
func (m *Machine) watch(r *running) {
	reboot := false
	for done := false; !done; {
		select {
		case ev := <-r.qmp.Events():
			if ev.Name == "SHUTDOWN" {
				switch ev.ShutdownReason() {
				case "guest-reset", "host-qmp-system-reset":
					reboot = true
				}
			}
		case <-r.exited:
			done = true
		}
	}
	// Drain events that arrived just before the exit.
	for drained := false; !drained; {
		select {
		case ev := <-r.qmp.Events():
			if ev.Name == "SHUTDOWN" && (ev.ShutdownReason() == "guest-reset" || ev.ShutdownReason() == "host-qmp-system-reset") {
				reboot = true
			}
		default:
			drained = true
		}
	}
	r.qmp.Close()

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.run != r {
		return
	}
	m.run = nil
	if r.stopping || !reboot || m.life.Err() != nil {
		m.log.Info("VM powered off")
		return
	}
	m.log.Info("guest rebooted; starting the VM again with its next boot order")
	ctx, cancel := context.WithTimeout(m.life, time.Minute)
	defer cancel()
	if err := m.startLocked(ctx); err != nil {
		m.log.Error("restarting the VM after a guest reboot failed", "err", err)
	}
}

// PowerOff ends the VM's QEMU process (like pulling the plug) and waits for it.
func (m *Machine) PowerOff(ctx context.Context) error {
	m.mu.Lock()
	r := m.run
	if r == nil {
		m.mu.Unlock()
		return nil
	}
	r.stopping = true
	m.mu.Unlock()

	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := r.qmp.Quit(qctx)
	cancel()
	if err != nil {
		m.log.Debug("QMP quit failed; killing QEMU", "err", err)
		_ = r.proc.Kill()
	}
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		_ = r.proc.Kill()
		select {
		case <-r.exited:
		case <-ctx.Done():
			return fmt.Errorf("VM %s: QEMU did not exit: %w", m.name, ctx.Err())
		}
	case <-ctx.Done():
		return fmt.Errorf("VM %s: waiting for QEMU to exit: %w", m.name, ctx.Err())
	}
	// Wait until watch has recorded the power-off.
	for {
		m.mu.Lock()
		off := m.run != r
		m.mu.Unlock()
		if off {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("VM %s: power off", m.name), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
