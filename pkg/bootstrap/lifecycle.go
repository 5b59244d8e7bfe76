package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/pkg/crds"
	"github.com/kiln-dev/kiln/pkg/kubeclient"
)

// Step reports one finished step of a long operation (for ✓/✗ progress lines).
type Step func(name string, took time.Duration, err error)

// ProviderFile records which provider created a cluster's bootstrap cluster,
// so delete and status with --bootstrap auto find it again.
func (c Config) ProviderFile() string { return filepath.Join(c.GeneratedDir(), "bootstrap.provider") }

// RecordedProvider returns the provider recorded for cfg ("" if none).
func RecordedProvider(cfg Config) (string, error) {
	data, err := os.ReadFile(cfg.ProviderFile())
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// Select picks the provider for mode. For auto, kindUsable reports whether
// Docker can run kind; its error becomes the reason embedded was chosen.
func Select(ctx context.Context, mode string, kind, embedded Provider, kindUsable func(context.Context) error) (Provider, string, error) {
	switch mode {
	case ModeKind:
		return kind, "requested with --bootstrap kind", nil
	case ModeEmbedded:
		return embedded, "requested with --bootstrap embedded", nil
	case ModeAuto, "":
		if err := kindUsable(ctx); err != nil {
			return embedded, fmt.Sprintf("auto: kind is not usable here (%v)", err), nil
		}
		return kind, "auto: Docker runs privileged containers", nil
	default:
		return nil, "", fmt.Errorf("--bootstrap %q is not one of auto, kind, embedded", mode)
	}
}

// Up creates the bootstrap cluster with p, installs kiln's CRDs and the
// clusterctl provider inventory into it, and records the provider.
func Up(ctx context.Context, p Provider, cfg Config, step Step) (*Cluster, error) {
	if step == nil {
		step = func(string, time.Duration, error) {}
	}
	start := time.Now()
	cl, err := p.Create(ctx, cfg)
	name := fmt.Sprintf("start %s bootstrap cluster", p.Name())
	if err == nil && cl.Reused {
		name = fmt.Sprintf("reuse running %s bootstrap cluster", p.Name())
	}
	step(name, time.Since(start), err)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfg.ProviderFile(), []byte(p.Name()+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("recording bootstrap provider: %w", err)
	}
	start = time.Now()
	c, err := kubeclient.New(cl.Kubeconfig, kubeclient.Options{})
	if err == nil {
		err = crds.Install(ctx, c)
	}
	step("install CRDs and clusterctl provider inventory", time.Since(start), err)
	if err != nil {
		return nil, fmt.Errorf("installing CRDs into the bootstrap cluster: %w", err)
	}
	return cl, nil
}

// Down deletes the bootstrap cluster and the provider record.
func Down(ctx context.Context, p Provider, cfg Config) error {
	if err := p.Delete(ctx, cfg); err != nil {
		return err
	}
	if err := os.Remove(cfg.ProviderFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// Remove generated/ and the cluster directory if the bootstrap cluster
	// was all they held (os.Remove leaves non-empty directories alone).
	_ = os.Remove(cfg.GeneratedDir())
	_ = os.Remove(cfg.dir())
	return nil
}
