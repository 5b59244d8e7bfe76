package embedded

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Layout names the files of one embedded control plane under its data
// directory (<cluster>/generated/bootstrap).
type Layout struct {
	Dir string
}

// PKIDir holds the CA, serving/client certificates and service-account keys.
func (l Layout) PKIDir() string { return filepath.Join(l.Dir, "pki") }

// EtcdDir is etcd's data directory.
func (l Layout) EtcdDir() string { return filepath.Join(l.Dir, "etcd") }

// StateFile records the addresses chosen at first start (JSON State).
func (l Layout) StateFile() string { return filepath.Join(l.Dir, "state.json") }

// PIDFile holds the control-plane process id while it runs.
func (l Layout) PIDFile() string { return filepath.Join(l.Dir, "controlplane.pid") }

// LockFile is flock-ed by the control-plane process for its whole life; a
// lock that can be taken means no live process owns the data directory.
func (l Layout) LockFile() string { return filepath.Join(l.Dir, "controlplane.lock") }

// LogFile receives the control-plane process's stdout and stderr.
func (l Layout) LogFile() string { return filepath.Join(l.Dir, "controlplane.log") }

// State is what a control plane needs to start again on the same data
// directory with the same addresses (the kubeconfig points at them).
type State struct {
	BindAddress    string `json:"bindAddress"`
	APIServerPort  int    `json:"apiServerPort"`
	EtcdClientPort int    `json:"etcdClientPort"`
	EtcdPeerPort   int    `json:"etcdPeerPort"`
	ServiceCIDR    string `json:"serviceCIDR"`
}

// APIServerURL is the https URL clients use.
func (s State) APIServerURL() string {
	return "https://" + net.JoinHostPort(s.BindAddress, strconv.Itoa(s.APIServerPort))
}

// ReadState loads the state file.
func (l Layout) ReadState() (State, error) {
	var s State
	data, err := os.ReadFile(l.StateFile())
	if err != nil {
		return s, fmt.Errorf("reading embedded control-plane state: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%s is corrupt (%w); run `kiln bootstrap delete` and create again", l.StateFile(), err)
	}
	if net.ParseIP(s.BindAddress) == nil || s.APIServerPort <= 0 || s.EtcdClientPort <= 0 || s.EtcdPeerPort <= 0 {
		return s, fmt.Errorf("%s is incomplete; run `kiln bootstrap delete` and create again", l.StateFile())
	}
	return s, nil
}

// WriteState saves the state file.
func (l Layout) WriteState(s State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(l.StateFile(), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", l.StateFile(), err)
	}
	return nil
}

// ReadPID returns the pid recorded in the pid file (0 when there is none).
func (l Layout) ReadPID() (int, error) {
	data, err := os.ReadFile(l.PIDFile())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s does not hold a process id", l.PIDFile())
	}
	return pid, nil
}

// Lock is an exclusive advisory lock on the layout's lock file.
type Lock struct{ f *os.File }

// TryLock takes the lock without waiting. ok is false when another process
// holds it, i.e. a control plane is running on this data directory.
func (l Layout) TryLock() (lock *Lock, ok bool, err error) {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("creating %s: %w", l.Dir, err)
	}
	f, err := os.OpenFile(l.LockFile(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("opening lock %s: %w", l.LockFile(), err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("locking %s: %w", l.LockFile(), err)
	}
	return &Lock{f: f}, true, nil
}

// Release drops the lock.
func (k *Lock) Release() {
	if k == nil || k.f == nil {
		return
	}
	_ = syscall.Flock(int(k.f.Fd()), syscall.LOCK_UN)
	_ = k.f.Close()
	k.f = nil
}

// freePorts asks the kernel for n distinct free TCP ports on addr.
func freePorts(addr string, n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			return nil, fmt.Errorf("finding a free port on %s: %w", addr, err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// PKI is the path of a file in PKIDir, e.g. PKI(CACertFile).
func (l Layout) PKI(name string) string { return filepath.Join(l.PKIDir(), name) }
