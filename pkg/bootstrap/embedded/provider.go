// Package embedded is the bootstrap provider that needs no Docker: etcd and
// kube-apiserver run inside a kiln child process (package controlplane) on a
// data directory under <cluster>/generated/bootstrap, with a private CA,
// client-certificate authentication and a kubeconfig at
// <cluster>/generated/bootstrap.kubeconfig.
//
// The child is daemonised (own session, output to controlplane.log) so
// `kiln bootstrap create` can return while the API keeps serving. It holds
// an flock on controlplane.lock for its whole life and writes
// controlplane.pid; a pid file whose lock is free therefore marks a crashed
// run, which Create detects and removes before starting afresh.
package embedded

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kiln-dev/kiln/pkg/bootstrap"
)

// Defaults for Provider's timeouts.
const (
	DefaultStartTimeout = 3 * time.Minute
	DefaultStopTimeout  = 60 * time.Second
)

// Provider runs the embedded control plane as a child process.
type Provider struct {
	// Command is the executable and leading arguments that start the
	// control plane; the data directory is appended. kiln passes its own
	// binary and its hidden internal subcommand.
	Command []string
	// Env is added to the child's environment.
	Env []string
	// StartTimeout bounds the wait for the API to become ready.
	StartTimeout time.Duration
	// StopTimeout bounds the wait for a clean stop before SIGKILL.
	StopTimeout time.Duration
	// Log receives progress messages; nil discards them.
	Log *slog.Logger
}

// Name implements bootstrap.Provider.
func (p *Provider) Name() string { return bootstrap.ModeEmbedded }

// LayoutFor is the data directory layout of cfg's control plane (an
// absolute path, so the daemonised child does not depend on its cwd).
func LayoutFor(cfg bootstrap.Config) Layout {
	dir := filepath.Join(cfg.GeneratedDir(), "bootstrap")
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return Layout{Dir: dir}
}

func (p *Provider) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Create implements bootstrap.Provider.
func (p *Provider) Create(ctx context.Context, cfg bootstrap.Config) (*bootstrap.Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(p.Command) == 0 {
		return nil, errors.New("embedded provider: no command configured to start the control plane")
	}
	layout := LayoutFor(cfg)
	lock, free, err := layout.TryLock()
	if err != nil {
		return nil, err
	}
	if !free {
		// A live control plane owns the data directory: reuse it.
		state, err := layout.ReadState()
		if err != nil {
			return nil, err
		}
		if err := p.waitReady(ctx, layout, state, nil); err != nil {
			return nil, fmt.Errorf("an embedded control plane is already running for %q but does not answer: %w; run `kiln bootstrap delete --name %s` and try again", cfg.Name, err, cfg.Name)
		}
		if err := writeKubeconfig(cfg, layout, state); err != nil {
			return nil, err
		}
		return &bootstrap.Cluster{Provider: p.Name(), Name: cfg.Name, Kubeconfig: cfg.KubeconfigPath(), Endpoint: state.APIServerURL(), Reused: true}, nil
	}
	if pid, _ := layout.ReadPID(); pid != 0 {
		p.log().Warn("removing the embedded control plane left by a crashed run", "pid", pid, "dir", layout.Dir)
		if err := removeContents(layout.Dir, layout.LockFile()); err != nil {
			lock.Release()
			return nil, fmt.Errorf("removing stale control plane data in %s: %w", layout.Dir, err)
		}
	}
	state, err := prepare(cfg, layout)
	if err != nil {
		lock.Release()
		return nil, err
	}
	lock.Release()

	exited, err := p.start(layout)
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, layout, state, exited); err != nil {
		_ = p.stop(context.WithoutCancel(ctx), layout)
		return nil, fmt.Errorf("embedded control plane did not become ready: %w%s", err, logTail(layout.LogFile()))
	}
	return &bootstrap.Cluster{Provider: p.Name(), Name: cfg.Name, Kubeconfig: cfg.KubeconfigPath(), Endpoint: state.APIServerURL()}, nil
}

// prepare chooses addresses (first start only), makes certificates and
// writes the kubeconfig.
func prepare(cfg bootstrap.Config, layout Layout) (State, error) {
	state, err := layout.ReadState()
	if err != nil {
		bind := cfg.BindAddress
		if bind == "" {
			bind = "127.0.0.1"
		}
		if net.ParseIP(bind) == nil {
			return state, fmt.Errorf("bind address %q is not an IP address", bind)
		}
		apiPorts, err := freePorts(bind, 1)
		if err != nil {
			return state, err
		}
		etcdPorts, err := freePorts("127.0.0.1", 2)
		if err != nil {
			return state, err
		}
		state = State{BindAddress: bind, APIServerPort: apiPorts[0], EtcdClientPort: etcdPorts[0], EtcdPeerPort: etcdPorts[1], ServiceCIDR: cfg.ServiceSubnet}
		if err := layout.WriteState(state); err != nil {
			return state, err
		}
	}
	var hosts []net.IP
	if ip := net.ParseIP(state.BindAddress); ip != nil && !ip.IsLoopback() {
		hosts = append(hosts, ip)
	}
	if err := (pkiDir{dir: layout.PKIDir()}).ensure(hosts); err != nil {
		return state, err
	}
	return state, writeKubeconfig(cfg, layout, state)
}

// start launches the daemonised child; exited is closed when it exits.
func (p *Provider) start(layout Layout) (<-chan struct{}, error) {
	logf, err := os.OpenFile(layout.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening control-plane log: %w", err)
	}
	defer logf.Close()
	args := append(append([]string{}, p.Command[1:]...), layout.Dir)
	cmd := exec.Command(p.Command[0], args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting embedded control plane %s: %w", p.Command[0], err)
	}
	p.log().Info("embedded control plane started", "pid", cmd.Process.Pid, "log", layout.LogFile())
	exited := make(chan struct{})
	// Reap the child if it exits while this process still runs; when kiln
	// exits first the child is re-parented and keeps serving.
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	return exited, nil
}

// waitReady polls /readyz until it answers ok, the child exits or the
// timeout passes.
func (p *Provider) waitReady(ctx context.Context, layout Layout, state State, exited <-chan struct{}) error {
	timeout := p.StartTimeout
	if timeout == 0 {
		timeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client, err := adminHTTPClient(layout)
	if err != nil {
		return err
	}
	var last error
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if last = probe(ctx, client, state.APIServerURL()+"/readyz"); last == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("the control-plane process exited")
		case <-ctx.Done():
			return fmt.Errorf("API at %s not ready after %s: %w", state.APIServerURL(), timeout, last)
		case <-tick.C:
		}
	}
}

func probe(ctx context.Context, client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

func adminHTTPClient(layout Layout) (*http.Client, error) {
	caPEM, err := os.ReadFile(layout.PKI(CACertFile))
	if err != nil {
		return nil, fmt.Errorf("reading CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no certificate", layout.PKI(CACertFile))
	}
	cert, err := tls.LoadX509KeyPair(layout.PKI(AdminCertFile), layout.PKI(AdminKeyFile))
	if err != nil {
		return nil, fmt.Errorf("loading admin client certificate: %w", err)
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}}, nil
}

// Stop stops the control plane and keeps its data so Create restarts it
// on the same data directory.
func (p *Provider) Stop(ctx context.Context, cfg bootstrap.Config) error {
	return p.stop(ctx, LayoutFor(cfg))
}

func (p *Provider) stop(ctx context.Context, layout Layout) error {
	if _, err := os.Stat(layout.Dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	lock, free, err := layout.TryLock()
	if err != nil {
		return err
	}
	if free {
		lock.Release()
		return nil
	}
	pid, err := layout.ReadPID()
	if err != nil || pid == 0 {
		return fmt.Errorf("the control plane in %s holds its lock but its pid file is unreadable (%v); stop the `kiln internal` process by hand", layout.Dir, err)
	}
	timeout := p.StopTimeout
	if timeout == 0 {
		timeout = DefaultStopTimeout
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if waitUnlocked(ctx, layout, timeout) {
		return nil
	}
	p.log().Warn("embedded control plane did not stop in time; killing it", "pid", pid, "timeout", timeout)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitUnlocked(ctx, layout, 10*time.Second) {
		return nil
	}
	return fmt.Errorf("embedded control plane (pid %d) did not exit", pid)
}

// waitUnlocked waits until the lock can be taken, i.e. the process is gone.
func waitUnlocked(ctx context.Context, layout Layout, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		lock, free, err := layout.TryLock()
		if err == nil && free {
			lock.Release()
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// Delete implements bootstrap.Provider.
func (p *Provider) Delete(ctx context.Context, cfg bootstrap.Config) error {
	layout := LayoutFor(cfg)
	if err := p.stop(ctx, layout); err != nil {
		return err
	}
	if err := os.RemoveAll(layout.Dir); err != nil {
		return fmt.Errorf("removing %s: %w", layout.Dir, err)
	}
	if err := os.Remove(cfg.KubeconfigPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", cfg.KubeconfigPath(), err)
	}
	return nil
}

// Status implements bootstrap.Provider.
func (p *Provider) Status(ctx context.Context, cfg bootstrap.Config) (*bootstrap.Status, error) {
	layout := LayoutFor(cfg)
	st := &bootstrap.Status{Provider: p.Name(), Name: cfg.Name}
	if _, err := os.Stat(layout.Dir); errors.Is(err, os.ErrNotExist) {
		st.Detail = "no embedded control plane"
		return st, nil
	}
	st.Exists = true
	state, stateErr := layout.ReadState()
	if stateErr == nil {
		st.Endpoint = state.APIServerURL()
		st.Kubeconfig = cfg.KubeconfigPath()
	}
	lock, free, err := layout.TryLock()
	if err != nil {
		return nil, err
	}
	if free {
		lock.Release()
		if pid, _ := layout.ReadPID(); pid != 0 {
			st.Detail = fmt.Sprintf("stale: the control plane (pid %d) crashed; `kiln bootstrap create` removes it and starts afresh", pid)
		} else {
			st.Detail = "stopped"
		}
		return st, nil
	}
	st.Running = true
	st.PID, _ = layout.ReadPID()
	if stateErr != nil {
		st.Detail = stateErr.Error()
		return st, nil
	}
	client, err := adminHTTPClient(layout)
	if err != nil {
		st.Detail = err.Error()
		return st, nil
	}
	if err := probe(ctx, client, state.APIServerURL()+"/readyz"); err != nil {
		st.Detail = err.Error()
		return st, nil
	}
	st.Healthy = true
	st.Detail = "ready"
	return st, nil
}

// writeKubeconfig writes a self-contained kubeconfig (certificates inline).
func writeKubeconfig(cfg bootstrap.Config, layout Layout, state State) error {
	read := func(name string) ([]byte, error) { return os.ReadFile(layout.PKI(name)) }
	ca, err := read(CACertFile)
	if err != nil {
		return err
	}
	cert, err := read(AdminCertFile)
	if err != nil {
		return err
	}
	key, err := read(AdminKeyFile)
	if err != nil {
		return err
	}
	name := "kiln-bootstrap-" + cfg.Name
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: state.APIServerURL(), CertificateAuthorityData: ca}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	kc.CurrentContext = name
	if err := os.MkdirAll(cfg.GeneratedDir(), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", cfg.GeneratedDir(), err)
	}
	if err := clientcmd.WriteToFile(*kc, cfg.KubeconfigPath()); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", cfg.KubeconfigPath(), err)
	}
	return os.Chmod(cfg.KubeconfigPath(), 0o600)
}

// removeContents empties dir except the file keep.
func removeContents(dir, keep string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if path == keep {
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			return err
		}
	}
	return nil
}

// logTail returns the last lines of the control-plane log for an error message.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return fmt.Sprintf("\nlast lines of %s:\n%s", path, bytes.Join(lines, []byte("\n")))
}
