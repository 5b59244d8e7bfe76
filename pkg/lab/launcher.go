package lab

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/pkg/lab/vmpower"
	"github.com/kiln-dev/kiln/pkg/qemu"
)

// launcher starts a lab machine's QEMU through pkg/qemu, inside the lab's
// network namespace, paused (-S) and exiting on guest reboots (-no-reboot)
// as vmpower requires. Every boot gets its own console file
// (<name>-boot<N>.log) so earlier boots' output is kept.
type launcher struct {
	prefix  string
	machine Machine
	netns   string
	memory  int
	kvm     bool
	dir     string
	log     *slog.Logger

	mu   sync.Mutex
	boot int
}

// qmpDir is a short directory for QMP sockets: unix socket paths are limited
// to 107 bytes and lab directories can be deep.
func qmpDir(prefix string) string { return filepath.Join(os.TempDir(), "kiln-"+prefix) }

func (l *launcher) Launch(ctx context.Context, boot vmpower.Boot) (vmpower.Process, error) {
	l.mu.Lock()
	l.boot++
	n := l.boot
	l.mu.Unlock()
	m := l.machine
	qdir := qmpDir(l.prefix)
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return nil, err
	}
	cfg := qemu.Config{
		Name:         m.Name,
		Firmware:     m.Firmware,
		MAC:          m.MAC,
		Tap:          m.Tap,
		Netns:        l.netns,
		MemoryMiB:    l.memory,
		Disk:         m.Disk,
		DiskFormat:   "raw",
		NetbootFirst: boot.Network,
		SerialLog:    bootLog(l.dir, m.Name, n),
		StateDir:     l.dir,
		QMPSocket:    filepath.Join(qdir, m.Name+".qmp"),
		// virtio-rng: without an entropy source the guest kernel's random
		// number generator may not initialise for minutes under TCG, and
		// the agent's DHCP client waits for it.
		Extra: []string{"-S", "-no-reboot", "-pidfile", m.PIDFile, "-device", "virtio-rng-pci"},
	}
	if l.kvm {
		cfg.Accel = "kvm"
	}
	vm, err := qemu.Start(ctx, cfg, io.Discard, l.log)
	if err != nil {
		return nil, err
	}
	return process{vm}, nil
}

type process struct{ vm *qemu.VM }

func (p process) QMPSocket() string { return p.vm.Config.QMPSocket }
func (p process) Wait() error       { return p.vm.Wait() }
func (p process) Kill() error       { p.vm.Stop(2 * time.Second); return nil }

func bootLog(dir, name string, n int) string {
	return filepath.Join(dir, fmt.Sprintf("%s-boot%d.log", name, n))
}

// ConsoleLogs returns a machine's per-boot console files, oldest first.
func ConsoleLogs(dir, name string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, name+"-boot*.log"))
	num := func(p string) int {
		s := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), name+"-boot"), ".log")
		n, _ := strconv.Atoi(s)
		return n
	}
	sort.Slice(files, func(i, j int) bool { return num(files[i]) < num(files[j]) })
	return files
}

// Console writes a machine's serial console output, every boot in order,
// each headed by a line naming the boot.
func Console(dir, name string, w io.Writer) error {
	st, err := ReadState(dir)
	if err != nil {
		return err
	}
	found := false
	for _, m := range st.Machines {
		found = found || m.Name == name
	}
	if !found {
		var names []string
		for _, m := range st.Machines {
			names = append(names, m.Name)
		}
		return fmt.Errorf("the lab in %s has no machine %q; it has %s", dir, name, strings.Join(names, ", "))
	}
	logs := ConsoleLogs(dir, name)
	if len(logs) == 0 {
		_, err := fmt.Fprintf(w, "(%s has not been powered on yet)\n", name)
		return err
	}
	for i, p := range logs {
		if _, err := fmt.Fprintf(w, "===== %s boot %d =====\n", name, i+1); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
