// Package vmpowertest provides a vmpower.Launcher for tests: it runs a real
// QEMU with no board and no guest (-machine none), paused (-S) and with
// -no-reboot, so power and boot-override paths can be exercised in
// milliseconds. It records every launch and gives tests a second QMP socket
// to play the guest (e.g. a guest-initiated reset).
package vmpowertest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/pkg/lab/vmpower"
)

// Launcher starts board-less QEMU processes.
type Launcher struct {
	t   testing.TB
	bin string
	dir string

	mu       sync.Mutex
	launches []vmpower.Boot
	procs    []*Process
}

// New returns a launcher, skipping the test when QEMU is not installed.
func New(t testing.TB) *Launcher {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	l := &Launcher{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, p := range l.procs {
			_ = p.Kill()
			_ = p.Wait()
		}
	})
	return l
}

// Launches returns the boot orders of every launch so far.
func (l *Launcher) Launches() []vmpower.Boot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]vmpower.Boot(nil), l.launches...)
}

// Last returns the most recent process, or nil.
func (l *Launcher) Last() *Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.procs) == 0 {
		return nil
	}
	return l.procs[len(l.procs)-1]
}

// Launch implements vmpower.Launcher.
func (l *Launcher) Launch(ctx context.Context, boot vmpower.Boot) (vmpower.Process, error) {
	l.mu.Lock()
	n := len(l.procs)
	l.mu.Unlock()
	p := &Process{
		qmp:  filepath.Join(l.dir, fmt.Sprintf("qmp-%d.sock", n)),
		Test: filepath.Join(l.dir, fmt.Sprintf("test-%d.sock", n)),
		done: make(chan struct{}),
	}
	p.cmd = exec.CommandContext(ctx, l.bin, "-S", "-no-reboot", "-machine", "none", "-nodefaults", "-display", "none",
		"-qmp", "unix:"+p.qmp+",server=on,wait=off", "-qmp", "unix:"+p.Test+",server=on,wait=off")
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	l.mu.Lock()
	l.launches = append(l.launches, boot)
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// Process is one board-less QEMU.
type Process struct {
	cmd *exec.Cmd
	qmp string
	// Test is a second QMP socket for the test to act as the guest.
	Test string
	done chan struct{}
	err  error
}

// QMPSocket implements vmpower.Process.
func (p *Process) QMPSocket() string { return p.qmp }

// Wait implements vmpower.Process.
func (p *Process) Wait() error { <-p.done; return p.err }

// Kill implements vmpower.Process.
func (p *Process) Kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	return p.cmd.Process.Kill()
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
