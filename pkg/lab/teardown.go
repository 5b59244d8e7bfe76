package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/pkg/netns"
)

// Teardown removes everything st records: QEMU processes (by their pid
// files, checked to be QEMU for that machine), the lab namespace with its
// bridge and taps, kiln's veth end and the QMP socket directory. Parts that
// are already gone are skipped, so it can run any number of times.
func Teardown(ctx context.Context, st State) error {
	var errs []error
	for _, m := range st.Machines {
		if err := killPIDFile(m.PIDFile, m.Name); err != nil {
			errs = append(errs, err)
		}
	}
	var admin *netns.Namespace
	if st.AdminNetns != "" {
		admin = &netns.Namespace{Name: st.AdminNetns}
	}
	if st.Netns != "" {
		if err := (&netns.Namespace{Name: st.Netns}).Delete(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	// The veth usually vanished with the namespace; remove it if not.
	if st.AdminLink != "" {
		if _, err := os.Stat("/sys/class/net/" + st.AdminLink); err == nil || admin != nil {
			if err := netns.DeleteLink(ctx, admin, st.AdminLink); err != nil && !strings.Contains(err.Error(), "does not exist") && !strings.Contains(err.Error(), "No such file") {
				errs = append(errs, err)
			}
		}
	}
	if st.Prefix != "" {
		_ = os.RemoveAll(qmpDir(st.Prefix))
	}
	return errors.Join(errs...)
}

// killPIDFile ends the QEMU whose pid is in path, if that process is still
// QEMU running the named machine, and removes the file.
func killPIDFile(path, name string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer os.Remove(path)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return nil
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("qemu")) || !bytes.Contains(cmdline, []byte(name)) {
		return nil // gone, or the pid now belongs to something else
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 50 && processAlive(pid); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if processAlive(pid) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill QEMU of %s (pid %d): %w", name, pid, err)
		}
	}
	return nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && errors.Is(err, syscall.ESRCH) {
		return false
	}
	// A zombie is not alive for our purposes.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return false
	}
	return true
}

// Down stops the `kiln lab up` process of the lab in dir (it tears its lab
// down on SIGTERM), then removes whatever is left. It reports whether a lab
// was found; a second Down finds nothing and succeeds.
func Down(ctx context.Context, dir string) (bool, error) {
	st, err := ReadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.PID != os.Getpid() && processAlive(st.PID) {
		_ = syscall.Kill(st.PID, syscall.SIGTERM)
		deadline := time.Now().Add(30 * time.Second)
		for processAlive(st.PID) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return true, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	if err := Teardown(ctx, st); err != nil {
		return true, err
	}
	if err := os.Remove(dirFile(dir, StateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return true, err
	}
	return true, nil
}
