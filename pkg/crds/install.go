package crds

import (
	"context"
	"errors"
	"fmt"
	"time"

	tinkv1 "github.com/tinkerbell/tink/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	bootstrapv1 "sigs.k8s.io/cluster-api/api/bootstrap/kubeadm/v1beta2"
	controlplanev1 "sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta2"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	clusterctlv1 "sigs.k8s.io/cluster-api/cmd/clusterctl/api/v1alpha3"
	"sigs.k8s.io/controller-runtime/pkg/client"

	bmcv1 "github.com/kiln-dev/kiln/pkg/apis/bmc/v1alpha1"
	infrav1 "github.com/kiln-dev/kiln/pkg/apis/infrastructure/v1beta1"
)

// Versions recorded in the clusterctl provider inventory. The Cluster API
// kinds are generated from cluster-api v1.14.2; the Tinkerbell
// infrastructure kinds follow the CAPT v1beta1 API.
const (
	ClusterAPIVersion = "v1.14.2"
	TinkerbellVersion = "v0.6.0"
)

// InventoryProvider is one entry of clusterctl's provider inventory.
type InventoryProvider struct {
	Name, Type, Namespace, Version string
}

// Inventory lists the providers whose kinds kiln installs. clusterctl move
// requires the target to hold every provider the source holds, at the same
// or a newer version.
func Inventory() []InventoryProvider {
	return []InventoryProvider{
		{Name: "cluster-api", Type: string(clusterctlv1.CoreProviderType), Namespace: "capi-system", Version: ClusterAPIVersion},
		{Name: "kubeadm", Type: string(clusterctlv1.BootstrapProviderType), Namespace: "capi-kubeadm-bootstrap-system", Version: ClusterAPIVersion},
		{Name: "kubeadm", Type: string(clusterctlv1.ControlPlaneProviderType), Namespace: "capi-kubeadm-control-plane-system", Version: ClusterAPIVersion},
		{Name: "tinkerbell", Type: string(clusterctlv1.InfrastructureProviderType), Namespace: "capt-system", Version: TinkerbellVersion},
	}
}

// Scheme returns a scheme with the Kubernetes core and apiextensions types
// and every kind whose CRD this package installs (the Go types the
// manifests are generated from).
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, clusterctlv1.AddToScheme,
		clusterv1.AddToScheme, bootstrapv1.AddToScheme, controlplanev1.AddToScheme,
		tinkv1.AddToScheme, bmcv1.AddToScheme, infrav1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Install creates or updates every CRD, waits until the API server serves
// them, and records the provider inventory. It is idempotent.
func Install(ctx context.Context, c client.Client) error {
	all, err := Load()
	if err != nil {
		return err
	}
	for _, crd := range all {
		if err := apply(ctx, c, crd); err != nil {
			return err
		}
	}
	for _, crd := range all {
		if err := waitEstablished(ctx, c, crd.Name); err != nil {
			return err
		}
	}
	return installInventory(ctx, c)
}

func apply(ctx context.Context, c client.Client, crd *apiextensionsv1.CustomResourceDefinition) error {
	want := crd.DeepCopy()
	err := c.Create(ctx, want)
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
	}
	have := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Get(ctx, client.ObjectKey{Name: crd.Name}, have); err != nil {
		return fmt.Errorf("reading CRD %s: %w", crd.Name, err)
	}
	have.Labels = crd.Labels
	have.Annotations = crd.Annotations
	have.Spec = crd.Spec
	if err := c.Update(ctx, have); err != nil {
		return fmt.Errorf("updating CRD %s: %w", crd.Name, err)
	}
	return nil
}

func waitEstablished(ctx context.Context, c client.Client, name string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err == nil {
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRD %s was not established within a minute: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func installInventory(ctx context.Context, c client.Client) error {
	for _, p := range Inventory() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.Namespace}}
		if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %s: %w", p.Namespace, err)
		}
		obj := &clusterctlv1.Provider{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: p.Namespace,
				Name:      clusterctlv1.ManifestLabel(p.Name, clusterctlv1.ProviderType(p.Type)),
				Labels: map[string]string{
					ClusterctlLabel:                    "",
					"clusterctl.cluster.x-k8s.io/core": "inventory",
					ProviderLabel:                      clusterctlv1.ManifestLabel(p.Name, clusterctlv1.ProviderType(p.Type)),
				},
			},
			ProviderName: p.Name,
			Type:         p.Type,
			Version:      p.Version,
		}
		err := c.Create(ctx, obj)
		if apierrors.IsAlreadyExists(err) {
			have := &clusterctlv1.Provider{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), have); err != nil {
				return fmt.Errorf("reading provider inventory %s: %w", obj.Name, err)
			}
			have.Version, have.ProviderName, have.Type, have.Labels = obj.Version, obj.ProviderName, obj.Type, obj.Labels
			err = c.Update(ctx, have)
		}
		if err != nil {
			return fmt.Errorf("recording provider %s in the clusterctl inventory: %w", obj.Name, err)
		}
	}
	return nil
}

// Missing returns the names of the CRDs kiln installs that c does not serve.
func Missing(ctx context.Context, c client.Client) ([]string, error) {
	all, err := Load()
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, crd := range all {
		err := c.Get(ctx, client.ObjectKey{Name: crd.Name}, &apiextensionsv1.CustomResourceDefinition{})
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, crd.Name)
		case err != nil:
			return nil, fmt.Errorf("looking up CRD %s: %w", crd.Name, err)
		}
	}
	return missing, nil
}

// ErrNoManifests is returned by Load when the build embedded no CRDs.
var ErrNoManifests = errors.New("no CRD manifests embedded")
