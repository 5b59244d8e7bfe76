// Package crds holds the CustomResourceDefinitions kiln installs into a
// bootstrap or management cluster and installs them together with the
// clusterctl provider inventory:
//
//   - Cluster API core, kubeadm bootstrap and kubeadm control plane
//     (generated from sigs.k8s.io/cluster-api/api v1.14.2, storage version
//     v1beta2),
//   - the Tinkerbell kinds tinkerbell.org/v1alpha1 Hardware, Template and
//     Workflow (from github.com/tinkerbell/tink v0.12.2) and
//     bmc.tinkerbell.org/v1alpha1 Machine, Job and Task (pkg/apis/bmc),
//   - infrastructure.cluster.x-k8s.io/v1beta1 TinkerbellCluster,
//     TinkerbellMachine and TinkerbellMachineTemplate (pkg/apis/infrastructure),
//   - clusterctl's provider inventory (clusterctl.cluster.x-k8s.io Provider).
//
// The manifests are generated from those Go types by controller-gen at build
// and test time (`make crds`, i.e. go generate) and embedded; none is copied
// from another project. Install adds the labels clusterctl needs to discover
// the kinds for move.
package crds

//go:generate go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.21.0 crd:crdVersions=v1 paths=../apis/... paths=github.com/tinkerbell/tink/api/v1alpha1 paths=sigs.k8s.io/cluster-api/api/core/v1beta2 paths=sigs.k8s.io/cluster-api/api/bootstrap/kubeadm/v1beta2 paths=sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta2 paths=sigs.k8s.io/cluster-api/cmd/clusterctl/api/v1alpha3 output:crd:artifacts:config=manifests

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

//go:embed manifests
var manifests embed.FS

// Labels clusterctl reads on CRDs.
const (
	// ClusterctlLabel marks a CRD as managed by clusterctl; move only
	// discovers kinds whose CRD carries it.
	ClusterctlLabel = "clusterctl.cluster.x-k8s.io"
	// MoveLabel moves every object of the kind, owned by a Cluster or not.
	MoveLabel = "clusterctl.cluster.x-k8s.io/move"
	// ProviderLabel names the provider a CRD belongs to.
	ProviderLabel = "cluster.x-k8s.io/provider"
	// ContractLabel tells Cluster API v1beta2 which version of an
	// infrastructure kind implements its contract.
	ContractLabel = "cluster.x-k8s.io/v1beta2"
)

// inventoryCRD is clusterctl's own inventory kind; clusterctl finds it by
// name, and it must not be discovered as a movable kind.
const inventoryCRD = "providers.clusterctl.cluster.x-k8s.io"

// metadataCRD is generated from clusterctl's provider metadata file format,
// which is never served by a cluster.
const metadataCRD = "metadata.clusterctl.cluster.x-k8s.io"

// providerForGroup maps an API group to the clusterctl provider that owns it.
var providerForGroup = map[string]string{
	"cluster.x-k8s.io":                "cluster-api",
	"bootstrap.cluster.x-k8s.io":      "bootstrap-kubeadm",
	"controlplane.cluster.x-k8s.io":   "control-plane-kubeadm",
	"infrastructure.cluster.x-k8s.io": "infrastructure-tinkerbell",
	"tinkerbell.org":                  "infrastructure-tinkerbell",
	"bmc.tinkerbell.org":              "infrastructure-tinkerbell",
}

// Load returns every embedded CRD, labelled for clusterctl, sorted by name.
func Load() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var out []*apiextensionsv1.CustomResourceDefinition
	err := fs.WalkDir(manifests, "manifests", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		data, err := manifests.ReadFile(path)
		if err != nil {
			return err
		}
		for _, doc := range bytes.Split(data, []byte("\n---")) {
			if len(bytes.TrimSpace(doc)) == 0 || bytes.Equal(bytes.TrimSpace(doc), []byte("---")) {
				continue
			}
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.UnmarshalStrict(doc, crd); err != nil {
				return fmt.Errorf("embedded CRD %s: %w", path, err)
			}
			if crd.Name == metadataCRD {
				continue
			}
			label(crd)
			out = append(out, crd)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w in this kiln build; run `make crds` (go generate ./pkg/crds) before building", ErrNoManifests)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// label adds the clusterctl discovery, provider and contract labels.
func label(crd *apiextensionsv1.CustomResourceDefinition) {
	if crd.Labels == nil {
		crd.Labels = map[string]string{}
	}
	if crd.Name == inventoryCRD {
		crd.Labels[ClusterctlLabel] = ""
		crd.Labels["clusterctl.cluster.x-k8s.io/core"] = "inventory"
		return
	}
	crd.Labels[ClusterctlLabel] = ""
	if p, ok := providerForGroup[crd.Spec.Group]; ok {
		crd.Labels[ProviderLabel] = p
	}
	if crd.Spec.Group == "infrastructure.cluster.x-k8s.io" {
		crd.Labels[ContractLabel] = "v1beta1"
	}
}
