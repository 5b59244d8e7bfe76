// Package kind is the bootstrap provider that runs the bootstrap cluster as
// a kind (Kubernetes in Docker) cluster through the sigs.k8s.io/kind
// library. Before creating anything it checks that Docker really runs
// privileged containers — kind's nodes need them — and otherwise points the
// operator at --bootstrap embedded.
package kind

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"sigs.k8s.io/kind/pkg/apis/config/defaults"
	"sigs.k8s.io/kind/pkg/cluster"
	kindlog "sigs.k8s.io/kind/pkg/log"

	"github.com/kiln-dev/kiln/pkg/bootstrap"
	"github.com/kiln-dev/kiln/pkg/bootstrap/dockercheck"
)

// DefaultWaitForReady bounds how long Create waits for the node to be Ready.
const DefaultWaitForReady = 5 * time.Minute

// Provider creates bootstrap clusters with kind.
type Provider struct {
	// Docker runs docker CLI commands for the capability check; nil uses
	// the docker binary.
	Docker dockercheck.Docker
	// Log receives kind's progress messages; nil discards them.
	Log *slog.Logger
}

// Name implements bootstrap.Provider.
func (p *Provider) Name() string { return bootstrap.ModeKind }

func (p *Provider) docker() dockercheck.Docker {
	if p.Docker != nil {
		return p.Docker
	}
	return dockercheck.CLI{}
}

func (p *Provider) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (p *Provider) kind() *cluster.Provider {
	return cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(slogAdapter{p.log()}))
}

// NodeImage is the node image cfg asks for, or kind's default.
func NodeImage(cfg bootstrap.Config) string {
	if cfg.NodeImage != "" {
		return cfg.NodeImage
	}
	return defaults.Image
}

// Check runs the Docker capability check for cfg's node image.
func (p *Provider) Check(ctx context.Context, cfg bootstrap.Config) error {
	return dockercheck.CheckPrivileged(ctx, p.docker(), NodeImage(cfg))
}

// Create implements bootstrap.Provider.
func (p *Provider) Create(ctx context.Context, cfg bootstrap.Config) (*bootstrap.Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	name := ClusterName(cfg.Name)
	if err := p.Check(ctx, cfg); err != nil {
		return nil, err
	}
	k := p.kind()
	existing, err := k.List()
	if err != nil {
		return nil, fmt.Errorf("listing kind clusters: %w", err)
	}
	if slices.Contains(existing, name) {
		if err := k.ExportKubeConfig(name, cfg.KubeconfigPath(), false); err != nil {
			return nil, fmt.Errorf("writing kubeconfig of existing kind cluster %s: %w", name, err)
		}
		return &bootstrap.Cluster{Provider: p.Name(), Name: cfg.Name, Kubeconfig: cfg.KubeconfigPath(), Reused: true}, nil
	}
	kc, files, err := Config(cfg)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", filepath.Dir(f.Path), err)
		}
		if err := os.WriteFile(f.Path, f.Data, f.Mode); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.Path, err)
		}
	}
	if err := os.MkdirAll(cfg.GeneratedDir(), 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", cfg.GeneratedDir(), err)
	}
	err = k.Create(name,
		cluster.CreateWithV1Alpha4Config(kc),
		cluster.CreateWithNodeImage(NodeImage(cfg)),
		cluster.CreateWithKubeconfigPath(cfg.KubeconfigPath()),
		cluster.CreateWithWaitForReady(DefaultWaitForReady),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		return nil, fmt.Errorf("creating kind cluster %s: %w", name, err)
	}
	return &bootstrap.Cluster{Provider: p.Name(), Name: cfg.Name, Kubeconfig: cfg.KubeconfigPath()}, nil
}

// Delete implements bootstrap.Provider; deleting a missing cluster succeeds.
func (p *Provider) Delete(_ context.Context, cfg bootstrap.Config) error {
	if err := p.kind().Delete(ClusterName(cfg.Name), cfg.KubeconfigPath()); err != nil {
		return fmt.Errorf("deleting kind cluster %s: %w", ClusterName(cfg.Name), err)
	}
	if err := os.Remove(cfg.KubeconfigPath()); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// Status implements bootstrap.Provider.
func (p *Provider) Status(_ context.Context, cfg bootstrap.Config) (*bootstrap.Status, error) {
	st := &bootstrap.Status{Provider: p.Name(), Name: cfg.Name}
	k := p.kind()
	names, err := k.List()
	if err != nil {
		st.Detail = fmt.Sprintf("cannot list kind clusters: %v", err)
		return st, nil
	}
	if !slices.Contains(names, ClusterName(cfg.Name)) {
		st.Detail = "no kind cluster " + ClusterName(cfg.Name)
		return st, nil
	}
	st.Exists = true
	st.Kubeconfig = cfg.KubeconfigPath()
	nodes, err := k.ListNodes(ClusterName(cfg.Name))
	if err != nil || len(nodes) == 0 {
		st.Detail = fmt.Sprintf("kind cluster has no running node (%v)", err)
		return st, nil
	}
	st.Running = true
	st.Healthy = true
	st.Detail = fmt.Sprintf("%d node(s)", len(nodes))
	return st, nil
}

// slogAdapter routes kind's logger to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Warn(m string)                      { a.l.Warn(m) }
func (a slogAdapter) Warnf(f string, args ...any)        { a.l.Warn(fmt.Sprintf(f, args...)) }
func (a slogAdapter) Error(m string)                     { a.l.Error(m) }
func (a slogAdapter) Errorf(f string, args ...any)       { a.l.Error(fmt.Sprintf(f, args...)) }
func (a slogAdapter) V(kindlog.Level) kindlog.InfoLogger { return slogInfo(a) }

type slogInfo struct{ l *slog.Logger }

func (i slogInfo) Info(m string)               { i.l.Info(m) }
func (i slogInfo) Infof(f string, args ...any) { i.l.Info(fmt.Sprintf(f, args...)) }
func (i slogInfo) Enabled() bool               { return i.l.Enabled(context.Background(), slog.LevelInfo) }
