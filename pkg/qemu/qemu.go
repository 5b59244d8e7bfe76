// Package qemu launches x86_64 QEMU virtual machines for kiln's lab and
// end-to-end tests: software emulation (TCG) by default, one NIC on a tap
// device with a given MAC, legacy BIOS (SeaBIOS + the iPXE option ROM) or UEFI
// (OVMF with a private writable copy of the variable store), an optional
// disk, the serial console in a log file and a QMP control socket.
//
// A VM is tied to the context it was started with and to the calling
// process: cancelling the context, calling Stop, or the parent dying (via
// PR_SET_PDEATHSIG) all end QEMU, so no process is left behind.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Firmware selects how the VM boots.
type Firmware string

// Supported firmware.
const (
	BIOS Firmware = "bios" // SeaBIOS, NIC option ROM from ipxe-qemu
	UEFI Firmware = "uefi" // OVMF
)

// Default locations of OVMF on Debian (ovmf package), newest layout first.
var defaultOVMF = []struct{ code, vars string }{
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
	{"/usr/share/ovmf/OVMF.fd", ""},
}

// Config describes one VM.
type Config struct {
	// Name labels the VM in logs and in QEMU (-name).
	Name string
	// Binary is the emulator; default qemu-system-x86_64.
	Binary string
	// Accel is the accelerator; default "tcg". KVM is only used when asked.
	Accel    string
	Firmware Firmware
	// MAC of the single NIC (required), e.g. 52:54:00:12:34:56.
	MAC string
	// Tap is the tap device the NIC is attached to (required); it must exist
	// (see netns.AddTap) in Netns.
	Tap string
	// NICModel is the QEMU device model; default virtio-net-pci.
	NICModel string
	// NoOptionROM leaves the NIC without QEMU's iPXE option ROM, so UEFI
	// firmware uses its own driver and PXE client (a vendor PXE ROM's
	// behaviour: DHCP, then TFTP of the boot file).
	NoOptionROM bool
	// Netns, when set, runs QEMU inside that named network namespace.
	Netns string
	// MemoryMiB defaults to 512, CPUs to 1.
	MemoryMiB int
	CPUs      int
	// Disk is an optional disk image (DiskFormat default: qcow2 when the
	// name ends in .qcow2, else raw).
	Disk       string
	DiskFormat string
	// NetbootFirst puts the NIC before the disk in the firmware boot order.
	// Without a disk the NIC is the only boot device anyway.
	NetbootFirst bool
	// SerialLog receives the serial console (required).
	SerialLog string
	// QMPSocket, when set, is the path of a QMP unix socket (server, no wait).
	QMPSocket string
	// StateDir holds per-VM writable files (the UEFI variable store copy);
	// default the directory of SerialLog.
	StateDir string
	// OVMFCode and OVMFVars override the firmware files found on the system.
	OVMFCode, OVMFVars string
	// Extra arguments appended verbatim.
	Extra []string
}

func (c *Config) defaults() {
	if c.Binary == "" {
		c.Binary = "qemu-system-x86_64"
	}
	if c.Accel == "" {
		c.Accel = "tcg"
	}
	if c.Firmware == "" {
		c.Firmware = BIOS
	}
	if c.NICModel == "" {
		c.NICModel = "virtio-net-pci"
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 512
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	if c.Name == "" {
		c.Name = "kiln-" + strings.ReplaceAll(c.MAC, ":", "")
	}
	if c.StateDir == "" && c.SerialLog != "" {
		c.StateDir = filepath.Dir(c.SerialLog)
	}
	if c.Disk != "" && c.DiskFormat == "" {
		c.DiskFormat = "raw"
		if strings.HasSuffix(c.Disk, ".qcow2") {
			c.DiskFormat = "qcow2"
		}
	}
}

// Validate reports the first problem with the configuration.
func (c Config) Validate() error {
	c.defaults()
	if _, err := net.ParseMAC(c.MAC); err != nil {
		return fmt.Errorf("vm %s: MAC %q is not a MAC address: %w", c.Name, c.MAC, err)
	}
	if c.Tap == "" {
		return fmt.Errorf("vm %s: a tap device is required", c.Name)
	}
	if c.SerialLog == "" {
		return fmt.Errorf("vm %s: a serial log path is required", c.Name)
	}
	switch c.Firmware {
	case BIOS, UEFI:
	default:
		return fmt.Errorf("vm %s: firmware %q is not bios or uefi", c.Name, c.Firmware)
	}
	return nil
}

// FindOVMF returns the OVMF code and variable-store templates installed on
// this machine, or an error naming the package to install.
func FindOVMF() (code, vars string, err error) {
	for _, f := range defaultOVMF {
		if _, err := os.Stat(f.code); err != nil {
			continue
		}
		if f.vars != "" {
			if _, err := os.Stat(f.vars); err != nil {
				continue
			}
		}
		return f.code, f.vars, nil
	}
	return "", "", errors.New("no OVMF firmware found in /usr/share/OVMF: install the ovmf package")
}

// Args returns QEMU's command line (without the binary) for c. For UEFI it
// uses varsCopy as the writable variable store.
func (c Config) Args(varsCopy string) ([]string, error) {
	c.defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	args := []string{
		"-name", c.Name,
		"-machine", "q35,accel=" + c.Accel,
		"-m", strconv.Itoa(c.MemoryMiB),
		"-smp", strconv.Itoa(c.CPUs),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-serial", "file:" + c.SerialLog,
		"-netdev", "tap,id=net0,ifname=" + c.Tap + ",script=no,downscript=no",
	}
	nic := c.NICModel + ",netdev=net0,mac=" + strings.ToLower(c.MAC)
	if c.NoOptionROM {
		nic += ",romfile="
	}
	if c.NetbootFirst || c.Disk == "" {
		nic += ",bootindex=1"
	}
	args = append(args, "-device", nic)
	if c.Disk != "" {
		args = append(args,
			"-drive", "if=none,id=disk0,format="+c.DiskFormat+",file="+c.Disk,
			"-device", "virtio-blk-pci,drive=disk0,bootindex=2")
	}
	if c.Firmware == UEFI {
		code := c.OVMFCode
		if code == "" {
			var err error
			if code, _, err = FindOVMF(); err != nil {
				return nil, err
			}
		}
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code)
		if varsCopy != "" {
			args = append(args, "-drive", "if=pflash,format=raw,unit=1,file="+varsCopy)
		}
	}
	if c.QMPSocket != "" {
		args = append(args, "-qmp", "unix:"+c.QMPSocket+",server=on,wait=off")
	}
	return append(args, c.Extra...), nil
}

// VM is a running QEMU process.
type VM struct {
	Config Config
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	once   sync.Once
	log    *slog.Logger
}

// Start launches the VM. Its stdout/stderr go to stderr (QEMU prints
// start-up errors there); the guest console goes to SerialLog.
func Start(ctx context.Context, cfg Config, stderr io.Writer, log *slog.Logger) (*VM, error) {
	cfg.defaults()
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(cfg.Binary); err != nil {
		return nil, fmt.Errorf("vm %s: %s not found: install qemu-system-x86: %w", cfg.Name, cfg.Binary, err)
	}
	var varsCopy string
	if cfg.Firmware == UEFI {
		code, vars := cfg.OVMFCode, cfg.OVMFVars
		if code == "" || vars == "" {
			c, v, err := FindOVMF()
			if err != nil {
				return nil, fmt.Errorf("vm %s: %w", cfg.Name, err)
			}
			if code == "" {
				code = c
			}
			if vars == "" {
				vars = v
			}
		}
		cfg.OVMFCode = code
		if vars != "" {
			varsCopy = filepath.Join(cfg.StateDir, cfg.Name+"-OVMF_VARS.fd")
			if err := copyFile(vars, varsCopy); err != nil {
				return nil, fmt.Errorf("vm %s: copy UEFI variable store: %w", cfg.Name, err)
			}
		}
	}
	args, err := cfg.Args(varsCopy)
	if err != nil {
		return nil, err
	}
	bin, argv := cfg.Binary, args
	if cfg.Netns != "" {
		bin, argv = "ip", append([]string{"netns", "exec", cfg.Netns, cfg.Binary}, args...)
	}
	if cfg.QMPSocket != "" {
		_ = os.Remove(cfg.QMPSocket)
	}
	cmd := exec.CommandContext(ctx, bin, argv...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	log.Info("starting VM", "vm", cfg.Name, "firmware", cfg.Firmware, "mac", cfg.MAC, "tap", cfg.Tap, "netns", cfg.Netns, "accel", cfg.Accel)
	log.Debug("qemu command line", "vm", cfg.Name, "args", strings.Join(append([]string{bin}, argv...), " "))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("vm %s: start %s: %w", cfg.Name, cfg.Binary, err)
	}
	vm := &VM{Config: cfg, cmd: cmd, done: make(chan struct{}), log: log}
	go func() {
		vm.err = cmd.Wait()
		close(vm.done)
		log.Info("VM exited", "vm", cfg.Name, "err", vm.err)
	}()
	return vm, nil
}

// PID is QEMU's process id.
func (vm *VM) PID() int { return vm.cmd.Process.Pid }

// Done is closed when QEMU has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Wait blocks until QEMU exits and returns its exit error.
func (vm *VM) Wait() error {
	<-vm.done
	return vm.err
}

// Stop asks QEMU to quit (SIGTERM), then kills it after grace. It returns
// once the process is gone. Stopping a stopped VM is a no-op.
func (vm *VM) Stop(grace time.Duration) {
	vm.once.Do(func() {
		select {
		case <-vm.done:
			return
		default:
		}
		_ = vm.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-vm.done:
		case <-time.After(grace):
			_ = syscall.Kill(-vm.cmd.Process.Pid, syscall.SIGKILL)
			<-vm.done
		}
	})
}

// Serial returns what the guest has written to its serial console so far.
func (vm *VM) Serial() (string, error) {
	b, err := os.ReadFile(vm.Config.SerialLog)
	return string(b), err
}

// WaitSerial polls the serial log until it contains substr, the VM exits,
// or ctx ends.
func (vm *VM) WaitSerial(ctx context.Context, substr string) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if s, _ := vm.Serial(); strings.Contains(s, substr) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vm %s: %q not seen on the serial console: %w", vm.Config.Name, substr, ctx.Err())
		case <-vm.done:
			if s, _ := vm.Serial(); strings.Contains(s, substr) {
				return nil
			}
			return fmt.Errorf("vm %s exited (%v) before %q appeared on the serial console", vm.Config.Name, vm.err, substr)
		case <-t.C:
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
