// Package netns creates and tears down Linux network namespaces, veth pairs,
// bridges and tap devices, and runs code or commands inside a namespace.
//
// Links and addresses are managed with iproute2's `ip` command: it is present
// on every machine kiln runs on, its errors are the ones operators already
// know, and it keeps kiln free of a netlink dependency for what is test and lab
// plumbing. Entering a namespace from Go (Do) uses setns(2) on a locked OS
// thread, so sockets opened inside fn belong to the namespace and keep working
// after Do returns.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// MaxNameLen is the longest interface or namespace name Linux accepts here.
const MaxNameLen = 15

// runDir is where `ip netns add` pins named namespaces.
const runDir = "/var/run/netns"

// Namespace is a named network namespace created with `ip netns add`.
type Namespace struct {
	Name string
}

// Path is the bind-mount file that pins the namespace.
func (n *Namespace) Path() string { return filepath.Join(runDir, n.Name) }

// CheckName reports whether s can be used as a namespace or link name.
func CheckName(s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("name %q must be 1-%d characters", s, MaxNameLen)
	}
	if strings.ContainsAny(s, "/ \t\n:") {
		return fmt.Errorf("name %q must not contain '/', ':' or spaces", s)
	}
	return nil
}

// Available reports why namespaces cannot be used on this machine (not root,
// no `ip` command), or nil when they can.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("the `ip` command (iproute2) is not installed")
	}
	return nil
}

// Create adds a new named namespace and brings its loopback up.
func Create(ctx context.Context, name string) (*Namespace, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if err := ip(ctx, "netns", "add", name); err != nil {
		return nil, err
	}
	n := &Namespace{Name: name}
	if err := n.IP(ctx, "link", "set", "lo", "up"); err != nil {
		_ = n.Delete(context.WithoutCancel(ctx))
		return nil, err
	}
	return n, nil
}

// Delete removes the namespace; links inside it disappear with it. Deleting a
// namespace that no longer exists is not an error.
func (n *Namespace) Delete(ctx context.Context) error {
	if _, err := os.Stat(n.Path()); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return ip(ctx, "netns", "delete", n.Name)
}

// IP runs `ip -n <ns> args...`.
func (n *Namespace) IP(ctx context.Context, args ...string) error {
	return ip(ctx, append([]string{"-n", n.Name}, args...)...)
}

// Command returns a command that runs name inside the namespace
// (`ip netns exec`). The caller starts and waits for it.
func (n *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Output runs a command inside the namespace and returns its standard output;
// the error includes standard error.
func (n *Namespace) Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := n.Command(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s in netns %s: %w: %s", name, strings.Join(args, " "), n.Name, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Do runs fn with the calling goroutine's OS thread switched into the
// namespace. Sockets created by fn stay in the namespace after Do returns.
// Goroutines started by fn do NOT inherit the namespace.
func (n *Namespace) Do(fn func() error) error {
	target, err := os.Open(n.Path())
	if err != nil {
		return fmt.Errorf("open netns %s: %w", n.Name, err)
	}
	defer target.Close()

	runtime.LockOSThread()
	origin, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current netns: %w", err)
	}
	defer origin.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", n.Name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(origin.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the wrong namespace: keep it locked so
		// the runtime discards it when this goroutine exits.
		return errors.Join(fnErr, fmt.Errorf("return from netns %s: %w", n.Name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// AddVeth creates a veth pair with one end in each namespace (nil means the
// current namespace) and brings both ends up.
func AddVeth(ctx context.Context, nameA string, nsA *Namespace, nameB string, nsB *Namespace) error {
	for _, s := range []string{nameA, nameB} {
		if err := CheckName(s); err != nil {
			return err
		}
	}
	args := []string{"link", "add", nameA}
	if nsA != nil {
		args = append(args, "netns", nsA.Name)
	}
	args = append(args, "type", "veth", "peer", "name", nameB)
	if nsB != nil {
		args = append(args, "netns", nsB.Name)
	}
	if err := ip(ctx, args...); err != nil {
		return err
	}
	if err := linkUp(ctx, nsA, nameA); err != nil {
		return err
	}
	return linkUp(ctx, nsB, nameB)
}

// AddBridge creates a bridge in ns (nil: current namespace) and brings it up.
func AddBridge(ctx context.Context, ns *Namespace, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := ipIn(ctx, ns, "link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	return linkUp(ctx, ns, name)
}

// AddTap creates a persistent tap device in ns, attaches it to bridge when
// bridge is not empty, and brings it up. QEMU opens it by name.
func AddTap(ctx context.Context, ns *Namespace, name, bridge string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := ipIn(ctx, ns, "tuntap", "add", "dev", name, "mode", "tap"); err != nil {
		return err
	}
	if bridge != "" {
		if err := SetMaster(ctx, ns, name, bridge); err != nil {
			return err
		}
	}
	return linkUp(ctx, ns, name)
}

// SetMaster enslaves link to bridge.
func SetMaster(ctx context.Context, ns *Namespace, link, bridge string) error {
	return ipIn(ctx, ns, "link", "set", link, "master", bridge)
}

// AddAddr assigns cidr (e.g. "10.0.0.1/24") to link.
func AddAddr(ctx context.Context, ns *Namespace, link, cidr string) error {
	return ipIn(ctx, ns, "addr", "add", cidr, "dev", link)
}

// DeleteLink removes a link; a link that does not exist is not an error.
func DeleteLink(ctx context.Context, ns *Namespace, name string) error {
	err := ipIn(ctx, ns, "link", "del", name)
	if err != nil && strings.Contains(err.Error(), "Cannot find device") {
		return nil
	}
	return err
}

func linkUp(ctx context.Context, ns *Namespace, name string) error {
	return ipIn(ctx, ns, "link", "set", name, "up")
}

func ipIn(ctx context.Context, ns *Namespace, args ...string) error {
	if ns != nil {
		return ns.IP(ctx, args...)
	}
	return ip(ctx, args...)
}

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
