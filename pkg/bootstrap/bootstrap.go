// Package bootstrap stands up and tears down the temporary bootstrap cluster
// from which kiln drives Cluster API before pivoting into the new cluster.
// Two providers implement one interface: kind (Kubernetes in Docker, through
// the sigs.k8s.io/kind library) and embedded (etcd and kube-apiserver run by
// kiln itself, no Docker). Create installs kiln's CRDs and the clusterctl
// provider inventory so the cluster is ready for Cluster API objects and for
// clusterctl move.
package bootstrap

import (
	"context"
	"fmt"
	"path/filepath"
)

// Provider names accepted by --bootstrap.
const (
	ModeAuto     = "auto"
	ModeKind     = "kind"
	ModeEmbedded = "embedded"
)

// Config describes the bootstrap cluster for one kiln cluster.
type Config struct {
	// Name is the kiln cluster's name.
	Name string
	// Dir is the cluster directory (by default ./<Name>); generated files
	// go under Dir/generated.
	Dir string
	// BindAddress is where the bootstrap API listens: loopback unless
	// machines must reach it (then the bootstrap IP).
	BindAddress string
	// PodSubnet and ServiceSubnet of the bootstrap cluster.
	PodSubnet, ServiceSubnet string
	// NodeImage overrides kind's node image.
	NodeImage string
	// Ports are host ports forwarded into the kind node for kiln's services.
	Ports []PortMapping
	// Mirror configures a registry mirror for the kind node's containerd.
	Mirror *RegistryMirror
}

// PortMapping forwards a host port to the same or another port of the node.
type PortMapping struct {
	HostPort, ContainerPort int32
	// Protocol is TCP (default) or UDP.
	Protocol string
	// ListenAddress on the host; empty means all addresses.
	ListenAddress string
}

// RegistryMirror redirects image pulls to a mirror registry.
type RegistryMirror struct {
	// Endpoint is host[:port] of the mirror.
	Endpoint string
	// Registries are the upstream registries served by the mirror, e.g.
	// docker.io, public.ecr.aws. Empty means docker.io only.
	Registries []string
	// CACertFile is a PEM CA bundle that signs the mirror's certificate.
	CACertFile string
	// InsecureSkipVerify accepts any mirror certificate.
	InsecureSkipVerify bool
}

// GeneratedDir is Dir/generated.
func (c Config) GeneratedDir() string { return filepath.Join(c.dir(), "generated") }

// KubeconfigPath is where the bootstrap cluster's kubeconfig is written.
func (c Config) KubeconfigPath() string {
	return filepath.Join(c.GeneratedDir(), "bootstrap.kubeconfig")
}

func (c Config) dir() string {
	if c.Dir != "" {
		return c.Dir
	}
	return c.Name
}

// Validate reports a missing or unusable name.
func (c Config) Validate() error {
	if c.Name == "" {
		return fmt.Errorf("a cluster name is required (--name)")
	}
	return nil
}

// Cluster is a running bootstrap cluster.
type Cluster struct {
	Provider   string `json:"provider"`
	Name       string `json:"name"`
	Kubeconfig string `json:"kubeconfig"`
	Endpoint   string `json:"endpoint"`
	// Reused is true when Create found the cluster already running.
	Reused bool `json:"reused"`
}

// Status describes a bootstrap cluster that may or may not exist.
type Status struct {
	Provider   string `json:"provider"`
	Name       string `json:"name"`
	Exists     bool   `json:"exists"`
	Running    bool   `json:"running"`
	Healthy    bool   `json:"healthy"`
	Endpoint   string `json:"endpoint,omitempty"`
	Kubeconfig string `json:"kubeconfig,omitempty"`
	PID        int    `json:"pid,omitempty"`
	Detail     string `json:"detail,omitempty"`
}

// Provider creates, deletes and inspects one kind of bootstrap cluster.
type Provider interface {
	// Name is the provider's --bootstrap value.
	Name() string
	// Create starts the cluster, or returns the running one, once its API
	// answers; the cluster keeps running after the call returns.
	Create(ctx context.Context, cfg Config) (*Cluster, error)
	// Delete stops the cluster and removes its data. Deleting a cluster
	// that does not exist succeeds.
	Delete(ctx context.Context, cfg Config) error
	// Status reports whether the cluster exists, runs and answers.
	Status(ctx context.Context, cfg Config) (*Status, error)
}
