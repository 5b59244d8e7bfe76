package actions

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// cexecConfig lists the variables cexec consumes; every other variable is
// passed to the command.
var cexecConfig = map[string]bool{
	"BLOCK_DEVICE": true, "FS_TYPE": true, "CMD_LINE": true, "CHROOT": true,
	"DEFAULT_INTERPRETER": true, "UPDATE_RESOLV_CONF": true, "JSON_OUTPUT": true,
}

// Cexec mounts BLOCK_DEVICE (FS_TYPE), bind-mounts /dev, /proc and /sys (and
// /etc/resolv.conf with UPDATE_RESOLV_CONF=true), and runs CMD_LINE in a
// chroot of it through DEFAULT_INTERPRETER (default "/bin/sh -c"). Output
// goes to the action log; a non-zero exit fails the action.
func Cexec(ctx context.Context, rt *Runtime, env Env, _ []string) (Then, error) {
	const name = "cexec"
	dev, err := env.Required(name, "BLOCK_DEVICE")
	if err != nil {
		return nil, err
	}
	fstype, err := env.Required(name, "FS_TYPE")
	if err != nil {
		return nil, err
	}
	cmdLine, err := env.Required(name, "CMD_LINE")
	if err != nil {
		return nil, err
	}
	resolv, err := env.Bool(name, "UPDATE_RESOLV_CONF", false)
	if err != nil {
		return nil, err
	}
	interp := strings.Fields(env["DEFAULT_INTERPRETER"])
	if len(interp) == 0 {
		interp = []string{"/bin/sh", "-c"}
	}
	m, err := mountDevice(name, rt.tempDir(), dev, fstype)
	if err != nil {
		return nil, err
	}
	runErr := func() error {
		for _, p := range []string{"/dev", "/proc", "/sys"} {
			if err := m.bind(p); err != nil {
				return err
			}
		}
		if resolv {
			if err := m.bind("/etc/resolv.conf"); err != nil {
				return err
			}
		}
		return runChroot(ctx, rt, m.dir, append(interp, cmdLine), env)
	}()
	if err := errors.Join(runErr, m.unmount()); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return nil, nil
}

func runChroot(ctx context.Context, rt *Runtime, root string, argv []string, env Env) error {
	path := argv[0]
	if !filepath.IsAbs(path) {
		for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
			if _, err := os.Stat(filepath.Join(root, dir, path)); err == nil {
				path = filepath.Join(dir, path)
				break
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, path)); err != nil {
		return fmt.Errorf("interpreter %s not found in the mounted file system: %w", argv[0], err)
	}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	for k, v := range env {
		if !cexecConfig[k] {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stdout, cmd.Stderr = rt.Log, rt.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	rt.logf("cexec: running %q in a chroot", strings.Join(argv, " "))
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%q stopped: %w", strings.Join(argv, " "), ctx.Err())
		}
		return fmt.Errorf("%q: %w", strings.Join(argv, " "), err)
	}
	return nil
}
