// Package controlplane is the body of the embedded bootstrap control plane:
// etcd (go.etcd.io/etcd/server/v3/embed) and kube-apiserver (linked from
// k8s.io/kubernetes) in one process. kiln runs it as a child process by
// re-executing its own binary with a hidden subcommand, so kube-apiserver's
// process-wide state (flags, metrics registries, feature gates, signal
// handler) belongs to that process alone, two control planes can run side by
// side, and a crash of the control plane does not take kiln down.
//
// The parent (package embedded) prepares the data directory — certificates,
// state.json with the chosen ports — and Run serves from it until SIGTERM.
package controlplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"

	"github.com/kiln-dev/kiln/pkg/bootstrap/embedded"
)

// etcdStartTimeout bounds how long etcd may take to become ready.
const etcdStartTimeout = 60 * time.Second

// Run serves the control plane whose data directory is dir until the process
// receives SIGTERM or SIGINT, and returns the process exit code. Logs go to
// logw.
func Run(dir string, logw io.Writer) int {
	log := slog.New(slog.NewTextHandler(logw, nil))
	if err := run(dir, log); err != nil {
		log.Error("embedded control plane stopped with an error", "err", err)
		return 1
	}
	return 0
}

func run(dir string, log *slog.Logger) error {
	layout := embedded.Layout{Dir: dir}
	// `kiln bootstrap status` takes the lock for an instant to see whether a
	// control plane runs; retry briefly rather than lose that race.
	var lock *embedded.Lock
	for attempt := 0; ; attempt++ {
		l, ok, err := layout.TryLock()
		if err != nil {
			return err
		}
		if ok {
			lock = l
			break
		}
		if attempt == 20 {
			return fmt.Errorf("another embedded control plane is already running on %s", dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer lock.Release()
	state, err := layout.ReadState()
	if err != nil {
		return err
	}
	if err := os.WriteFile(layout.PIDFile(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	// A clean stop removes the pid file; one left behind marks a crash.
	defer os.Remove(layout.PIDFile())

	etcd, err := startEtcd(layout, state)
	if err != nil {
		return err
	}
	defer etcd.Close()
	log.Info("etcd ready", "client", etcdClientURL(state))

	// If etcd fails while kube-apiserver runs, shut kube-apiserver down
	// through its own signal handler so it exits cleanly.
	go func() {
		if err, ok := <-etcd.Err(); ok && err != nil {
			log.Error("etcd failed; stopping kube-apiserver", "err", err)
			_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		}
	}()

	if err := stampVersion(); err != nil {
		return fmt.Errorf("setting the kube-apiserver version: %w", err)
	}
	cmd := app.NewAPIServerCommand()
	cmd.SetArgs(apiserverArgs(layout, state))
	if code := cli.Run(cmd); code != 0 {
		return fmt.Errorf("kube-apiserver exited with code %d", code)
	}
	log.Info("kube-apiserver stopped")
	return nil
}

func etcdClientURL(s embedded.State) string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.EtcdClientPort))
}

func startEtcd(layout embedded.Layout, state embedded.State) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "kiln-bootstrap"
	cfg.Dir = layout.EtcdDir()
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"stderr"}
	client, err := url.Parse(etcdClientURL(state))
	if err != nil {
		return nil, err
	}
	peer, err := url.Parse("http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(state.EtcdPeerPort)))
	if err != nil {
		return nil, err
	}
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ClientTLSInfo.CertFile = layout.PKI(embedded.EtcdServerCertFile)
	cfg.ClientTLSInfo.KeyFile = layout.PKI(embedded.EtcdServerKeyFile)
	cfg.ClientTLSInfo.TrustedCAFile = layout.PKI(embedded.CACertFile)
	cfg.ClientTLSInfo.ClientCertAuth = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting etcd in %s: %w", cfg.Dir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), etcdStartTimeout)
	defer cancel()
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd failed to start: %w", err)
	case <-ctx.Done():
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcd did not become ready within %s", etcdStartTimeout)
	}
}

func apiserverArgs(layout embedded.Layout, state embedded.State) []string {
	pki := layout.PKI
	serviceCIDR := state.ServiceCIDR
	if serviceCIDR == "" {
		serviceCIDR = "10.96.0.0/12"
	}
	return []string{
		"--bind-address=" + state.BindAddress,
		"--advertise-address=" + state.BindAddress,
		"--secure-port=" + strconv.Itoa(state.APIServerPort),
		"--etcd-servers=" + etcdClientURL(state),
		"--etcd-cafile=" + pki(embedded.CACertFile),
		"--etcd-certfile=" + pki(embedded.APIServerEtcdCertFile),
		"--etcd-keyfile=" + pki(embedded.APIServerEtcdKeyFile),
		"--tls-cert-file=" + pki(embedded.APIServerCertFile),
		"--tls-private-key-file=" + pki(embedded.APIServerKeyFile),
		"--client-ca-file=" + pki(embedded.CACertFile),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + pki(embedded.ServiceAccountPubFile),
		"--service-account-signing-key-file=" + pki(embedded.ServiceAccountKeyFile),
		"--service-cluster-ip-range=" + serviceCIDR,
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		// No kubelet or controllers run here: nothing would serve the
		// kubernetes Service endpoints, and a loopback advertise address is
		// not a valid endpoint anyway.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--cert-dir=" + layout.PKIDir(),
	}
}
