// Package v1alpha1 holds the bmc.tinkerbell.org/v1alpha1 API types (Machine,
// Job, Task) that describe baseboard management controllers and the power and
// boot-device operations run against them. The wire format (group, kinds,
// JSON field names) matches what Tinkerbell's BMC controller (Rufio) reads, so
// objects kiln writes can be handed to that controller and vice versa; the Go
// types themselves are kiln's own.
//
// CRD manifests are generated from these types with controller-gen (see
// pkg/crds); the kubebuilder markers drive that generation.
//
// +kubebuilder:object:generate=true
// +groupName=bmc.tinkerbell.org
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of every type in this package.
var GroupVersion = schema.GroupVersion{Group: "bmc.tinkerbell.org", Version: "v1alpha1"}

// AddToScheme registers Machine, Job and Task (and their lists) with s.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&Machine{}, &MachineList{},
		&Job{}, &JobList{},
		&Task{}, &TaskList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
