package actions

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// mounted is a device mounted on a temporary directory, plus anything
// bind-mounted below it; unmount undoes all of it in reverse order.
type mounted struct {
	dir    string
	points []string
}

// mountDevice mounts dev (file system fstype) on a new directory below tmp.
func mountDevice(action, tmp, dev, fstype string) (*mounted, error) {
	dir, err := os.MkdirTemp(tmp, "kiln-"+action+"-")
	if err != nil {
		return nil, fmt.Errorf("%s: creating a mount point: %w", action, err)
	}
	waitForDevice(dev, 5*time.Second)
	if err := unix.Mount(dev, dir, fstype, 0, ""); err != nil {
		_ = os.Remove(dir)
		hint := ""
		if errors.Is(err, unix.ENOENT) {
			hint = " (the device does not exist; did the image write a partition table, and is the partition number right?)"
		} else if errors.Is(err, unix.ENODEV) {
			hint = " (the kernel does not support this file system type)"
		}
		return nil, fmt.Errorf("%s: mounting %s (%s): %w%s", action, dev, fstype, err, hint)
	}
	return &mounted{dir: dir, points: []string{dir}}, nil
}

// bind mounts a host path on the same path inside the mount (recursively).
func (m *mounted) bind(hostPath string) error {
	target := filepath.Join(m.dir, hostPath)
	fi, err := os.Stat(hostPath)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
	} else if _, err := os.Stat(target); err != nil {
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(target, nil, 0o644); err != nil {
			return err
		}
	}
	if err := unix.Mount(hostPath, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting %s: %w", hostPath, err)
	}
	m.points = append(m.points, target)
	return nil
}

// unmount undoes every mount, newest first, detaching lazily when a mount
// stays busy, and removes the mount point.
func (m *mounted) unmount() error {
	var errs []error
	for i := len(m.points) - 1; i >= 0; i-- {
		p := m.points[i]
		var err error
		for try := 0; try < 5; try++ {
			if err = unix.Unmount(p, 0); err == nil || !errors.Is(err, unix.EBUSY) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(p, unix.MNT_DETACH)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", p, err))
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(m.dir)
	}
	return errors.Join(errs...)
}

// waitForDevice gives devtmpfs a moment to create a partition node after
// image2disk made the kernel re-read the partition table.
func waitForDevice(dev string, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(dev); err == nil || !errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
