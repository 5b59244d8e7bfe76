package qemu

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/netns"
)

func TestArgs(t *testing.T) {
	base := Config{MAC: "52:54:00:AA:BB:01", Tap: "kn3tap0", SerialLog: "/tmp/x/serial.log"}
	tests := []struct {
		name    string
		mod     func(*Config)
		vars    string
		want    []string
		notWant []string
		wantErr string
	}{
		{name: "bios netboot", want: []string{"q35,accel=tcg", "virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:01,bootindex=1", "file:/tmp/x/serial.log", "tap,id=net0,ifname=kn3tap0,script=no,downscript=no"}, notWant: []string{"if=pflash"}},
		{name: "uefi with vars copy", mod: func(c *Config) { c.Firmware = UEFI; c.OVMFCode = "/fw/code.fd" }, vars: "/tmp/x/vars.fd",
			want: []string{"if=pflash,format=raw,unit=0,readonly=on,file=/fw/code.fd", "if=pflash,format=raw,unit=1,file=/tmp/x/vars.fd"}},
		{name: "disk boots first unless netboot first", mod: func(c *Config) { c.Disk = "/d/disk.qcow2" },
			want: []string{"if=none,id=disk0,format=qcow2,file=/d/disk.qcow2", "virtio-blk-pci,drive=disk0,bootindex=2", "virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:01"}, notWant: []string{"bootindex=1"}},
		{name: "netboot first with disk", mod: func(c *Config) { c.Disk = "/d/disk.img"; c.NetbootFirst = true },
			want: []string{"if=none,id=disk0,format=raw,file=/d/disk.img", "virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:01,bootindex=1"}},
		{name: "qmp and memory", mod: func(c *Config) { c.QMPSocket = "/tmp/x/qmp.sock"; c.MemoryMiB = 1024; c.CPUs = 2 },
			want: []string{"unix:/tmp/x/qmp.sock,server=on,wait=off", "1024"}},
		{name: "no option rom", mod: func(c *Config) { c.NoOptionROM = true }, want: []string{"virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:01,romfile=,bootindex=1"}},
		{name: "kvm only when asked", mod: func(c *Config) { c.Accel = "kvm" }, want: []string{"q35,accel=kvm"}},
		{name: "bad mac", mod: func(c *Config) { c.MAC = "nope" }, wantErr: "not a MAC"},
		{name: "no tap", mod: func(c *Config) { c.Tap = "" }, wantErr: "tap device"},
		{name: "bad firmware", mod: func(c *Config) { c.Firmware = "coreboot" }, wantErr: "not bios or uefi"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			if tc.mod != nil {
				tc.mod(&c)
			}
			args, err := c.Args(tc.vars)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			joined := "\x00" + strings.Join(args, "\x00") + "\x00"
			for _, w := range tc.want {
				if !strings.Contains(joined, "\x00"+w+"\x00") {
					t.Errorf("missing argument %q in %q", w, args)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(joined, w) {
					t.Errorf("unexpected %q in %q", w, args)
				}
			}
		})
	}
}

// TestStartStop boots a real (TCG) VM on a tap in a namespace for a moment,
// checks QMP answers and that Stop leaves no process behind.
func TestStartStop(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	for _, fw := range []Firmware{BIOS, UEFI} {
		t.Run(string(fw), func(t *testing.T) {
			if fw == UEFI {
				if _, _, err := FindOVMF(); err != nil {
					t.Skip(err)
				}
			}
			ns := netns.ForTest(t, "kn3q")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := netns.AddTap(ctx, ns, "kn3tap0", ""); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			var stderr bytes.Buffer
			vm, err := Start(ctx, Config{
				Firmware: fw, MAC: "52:54:00:00:03:01", Tap: "kn3tap0", Netns: ns.Name,
				SerialLog: filepath.Join(dir, "serial.log"), QMPSocket: filepath.Join(dir, "qmp.sock"), MemoryMiB: 128,
			}, &stderr, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Stop(5 * time.Second)
			greeting := readQMPGreeting(t, ctx, filepath.Join(dir, "qmp.sock"), vm)
			if !strings.Contains(greeting, `"QMP"`) {
				t.Fatalf("QMP greeting = %q (qemu stderr: %s)", greeting, stderr.String())
			}
			if fw == UEFI {
				if _, err := os.Stat(filepath.Join(dir, vm.Config.Name+"-OVMF_VARS.fd")); err != nil {
					t.Fatalf("per-VM variable store not created: %v", err)
				}
			}
			pid := vm.PID()
			vm.Stop(5 * time.Second)
			if err := syscall.Kill(pid, 0); err == nil {
				t.Fatalf("qemu pid %d still alive after Stop", pid)
			}
		})
	}
}

func readQMPGreeting(t *testing.T, ctx context.Context, path string, vm *VM) string {
	t.Helper()
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 4096)
			n, _ := c.Read(buf)
			return string(buf[:n])
		}
		select {
		case <-ctx.Done():
			t.Fatalf("QMP socket never appeared: %v", err)
		case <-vm.Done():
			t.Fatalf("qemu exited early: %v", vm.Wait())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
