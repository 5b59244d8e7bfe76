package actions

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Reboot reboots the machine after the agent has reported SUCCESS, so the
// workflow finishes without a reboot race. With rebooting disabled (agent not
// PID 1 and no --reboot) it logs that it would reboot.
func Reboot(ctx context.Context, rt *Runtime, _ Env, _ []string) (Then, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if rt.Reboot == nil {
		rt.logf("reboot: rebooting is disabled on this agent (not PID 1; pass --reboot to allow it); not rebooting")
		return nil, nil
	}
	rt.logf("reboot: rebooting after the SUCCESS report")
	return func() error {
		unix.Sync()
		return rt.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	}, nil
}

// Kexec mounts BLOCK_DEVICE (FS_TYPE), loads KERNEL_PATH / INITRD_PATH /
// CMD_LINE (or the default entry of GRUBCFG_PATH, default
// boot/grub/grub.cfg) with kexec_file_load, unmounts, and after the SUCCESS
// report jumps into the new kernel.
func Kexec(ctx context.Context, rt *Runtime, env Env, _ []string) (Then, error) {
	const name = "kexec"
	dev, err := env.Required(name, "BLOCK_DEVICE")
	if err != nil {
		return nil, err
	}
	fstype, err := env.Required(name, "FS_TYPE")
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := mountDevice(name, rt.tempDir(), dev, fstype)
	if err != nil {
		return nil, err
	}
	loadErr := func() error {
		boot := BootEntry{Kernel: env["KERNEL_PATH"], Initrd: env["INITRD_PATH"], Cmdline: env["CMD_LINE"]}
		if boot.Kernel == "" {
			cfg := env["GRUBCFG_PATH"]
			if cfg == "" {
				cfg = "boot/grub/grub.cfg"
			}
			f, err := os.Open(filepath.Join(m.dir, filepath.Clean("/"+cfg)))
			if err != nil {
				return fmt.Errorf("no KERNEL_PATH and no grub config: %w", err)
			}
			entry, err := ParseGrubDefault(f)
			_ = f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", cfg, err)
			}
			if boot.Cmdline == "" {
				boot.Cmdline = entry.Cmdline
			}
			boot.Kernel, boot.Initrd = entry.Kernel, entry.Initrd
		}
		root, err := os.OpenRoot(m.dir)
		if err != nil {
			return err
		}
		defer root.Close()
		kernel, err := root.Open(strings.TrimPrefix(filepath.Clean("/"+boot.Kernel), "/"))
		if err != nil {
			return fmt.Errorf("kernel: %w", err)
		}
		defer kernel.Close()
		var initrd *os.File
		if boot.Initrd != "" {
			if initrd, err = root.Open(strings.TrimPrefix(filepath.Clean("/"+boot.Initrd), "/")); err != nil {
				return fmt.Errorf("initrd: %w", err)
			}
			defer initrd.Close()
		}
		rt.logf("kexec: loading %s (initrd %q) with command line %q", boot.Kernel, boot.Initrd, boot.Cmdline)
		load := rt.KexecLoad
		if load == nil {
			load = kexecFileLoad
		}
		return load(kernel, initrd, boot.Cmdline)
	}()
	if err := errors.Join(loadErr, m.unmount()); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if rt.Reboot == nil {
		rt.logf("kexec: rebooting is disabled on this agent; the kernel is loaded but not started")
		return nil, nil
	}
	return func() error {
		unix.Sync()
		return rt.Reboot(unix.LINUX_REBOOT_CMD_KEXEC)
	}, nil
}

func kexecFileLoad(kernel, initrd *os.File, cmdline string) error {
	initrdFd, flags := -1, 0
	if initrd != nil {
		initrdFd = int(initrd.Fd())
	} else {
		flags |= unix.KEXEC_FILE_NO_INITRAMFS
	}
	if err := unix.KexecFileLoad(int(kernel.Fd()), initrdFd, cmdline, flags); err != nil {
		return fmt.Errorf("kexec_file_load: %w", err)
	}
	return nil
}

// BootEntry is a kernel to boot.
type BootEntry struct {
	Kernel, Initrd, Cmdline string
}

// ParseGrubDefault returns the first menu entry's linux and initrd lines of
// a grub.cfg (the entry grub boots by default on a fresh cloud image).
func ParseGrubDefault(f io.Reader) (BootEntry, error) {
	var e BootEntry
	sc := bufio.NewScanner(f)
	depth, inEntry := 0, false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		switch {
		case fields[0] == "menuentry" && !inEntry:
			inEntry, depth = true, 0
		case inEntry && (fields[0] == "linux" || fields[0] == "linuxefi" || fields[0] == "linux16") && len(fields) > 1:
			e.Kernel, e.Cmdline = fields[1], strings.Join(fields[2:], " ")
		case inEntry && (fields[0] == "initrd" || fields[0] == "initrdefi" || fields[0] == "initrd16") && len(fields) > 1:
			e.Initrd = fields[1]
		}
		if inEntry {
			depth += strings.Count(line, "{") - strings.Count(line, "}")
			if depth <= 0 && strings.Contains(line, "}") {
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return e, err
	}
	if e.Kernel == "" {
		return e, errors.New("no menuentry with a linux line found")
	}
	return e, nil
}
