// Package v1beta1 holds the infrastructure.cluster.x-k8s.io/v1beta1 types
// through which Cluster API asks for bare-metal infrastructure:
// TinkerbellCluster, TinkerbellMachine and TinkerbellMachineTemplate. Group,
// kinds and JSON field names match the Tinkerbell Cluster API provider
// (CAPT), so manifests kiln generates are accepted by that provider and the
// objects it leaves behind can be read and moved by kiln; the Go types are
// kiln's own.
//
// CRD manifests are generated from these types with controller-gen (see
// pkg/crds).
//
// +kubebuilder:object:generate=true
// +groupName=infrastructure.cluster.x-k8s.io
package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of every type in this package.
var GroupVersion = schema.GroupVersion{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1"}

// AddToScheme registers the Tinkerbell infrastructure kinds with s.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&TinkerbellCluster{}, &TinkerbellClusterList{},
		&TinkerbellMachine{}, &TinkerbellMachineList{},
		&TinkerbellMachineTemplate{}, &TinkerbellMachineTemplateList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
