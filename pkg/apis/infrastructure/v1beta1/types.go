package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Finalizers the provider puts on its objects.
const (
	ClusterFinalizer = "tinkerbellcluster.infrastructure.cluster.x-k8s.io"
	MachineFinalizer = "tinkerbellmachine.infrastructure.cluster.x-k8s.io"
)

// APIEndpoint is the address of a cluster's Kubernetes API.
type APIEndpoint struct {
	// Host is the IP address or DNS name.
	// +optional
	Host string `json:"host"`
	// Port is the TCP port.
	// +optional
	Port int32 `json:"port"`
}

// TinkerbellClusterSpec is the desired state of a TinkerbellCluster.
type TinkerbellClusterSpec struct {
	// ControlPlaneEndpoint is the API endpoint (the control-plane VIP).
	// +optional
	ControlPlaneEndpoint APIEndpoint `json:"controlPlaneEndpoint,omitempty"`

	// ImageLookupFormat is a Go template for OS image URLs; see
	// TinkerbellMachineSpec.ImageLookupFormat.
	// +optional
	ImageLookupFormat string `json:"imageLookupFormat,omitempty"`

	// ImageLookupBaseRegistry is the {{.BaseRegistry}} substituted into ImageLookupFormat.
	// +optional
	// +kubebuilder:default=ghcr.io/tinkerbell/cluster-api-provider-tinkerbell
	ImageLookupBaseRegistry string `json:"imageLookupBaseRegistry,omitempty"`

	// ImageLookupOSDistro is the {{.OSDistro}} substituted into ImageLookupFormat.
	// +optional
	// +kubebuilder:default=ubuntu
	ImageLookupOSDistro string `json:"imageLookupOSDistro,omitempty"`

	// ImageLookupOSVersion is the {{.OSVersion}} substituted into ImageLookupFormat.
	// +optional
	ImageLookupOSVersion string `json:"imageLookupOSVersion,omitempty"`
}

// TinkerbellClusterStatus is the observed state of a TinkerbellCluster.
type TinkerbellClusterStatus struct {
	// Ready is true once the cluster infrastructure is provisioned.
	// +optional
	Ready bool `json:"ready"`
}

// TinkerbellCluster is the infrastructure of one Cluster API cluster.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=tinkerbellclusters,scope=Namespaced,categories=cluster-api
// +kubebuilder:printcolumn:name="Cluster",type="string",JSONPath=".metadata.labels.cluster\\.x-k8s\\.io/cluster-name"
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.ready"
type TinkerbellCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TinkerbellClusterSpec   `json:"spec,omitempty"`
	Status TinkerbellClusterStatus `json:"status,omitempty"`
}

// TinkerbellClusterList is a list of TinkerbellClusters.
//
// +kubebuilder:object:root=true
type TinkerbellClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TinkerbellCluster `json:"items"`
}

// BootMode is how a machine is booted into the provisioning OS.
type BootMode string

// Boot modes.
const (
	BootModeNone       BootMode = "none"
	BootModeNetboot    BootMode = "netboot"
	BootModeISO        BootMode = "iso"
	BootModeISOBoot    BootMode = "isoboot"
	BootModeCustomboot BootMode = "customboot"
)

// BootOptions control how Hardware is booted for provisioning.
type BootOptions struct {
	// ISOURL is the provisioning ISO to one-time boot through the BMC, of the
	// form http://IP:PORT/iso/hook.iso (the MAC is inserted before the file name).
	// +optional
	ISOURL string `json:"isoURL,omitempty"`

	// BootMode is the boot method.
	// +optional
	// +kubebuilder:validation:Enum=none;netboot;iso;isoboot;customboot
	BootMode BootMode `json:"bootMode,omitempty"`
}

// HardwareAffinityTerm selects Hardware by label.
type HardwareAffinityTerm struct {
	// LabelSelector over Hardware labels.
	LabelSelector metav1.LabelSelector `json:"labelSelector"`
}

// WeightedHardwareAffinityTerm is a preferred term with a weight.
type WeightedHardwareAffinityTerm struct {
	// Weight in the range 1-100; weights of matching terms add up per Hardware.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight"`
	// HardwareAffinityTerm is the weighted term.
	HardwareAffinityTerm HardwareAffinityTerm `json:"hardwareAffinityTerm"`
}

// HardwareAffinity restricts and orders the Hardware a machine may claim.
type HardwareAffinity struct {
	// Required terms are OR'd: Hardware must match at least one.
	// +optional
	Required []HardwareAffinityTerm `json:"required,omitempty"`
	// Preferred terms rank the candidates.
	// +optional
	Preferred []WeightedHardwareAffinityTerm `json:"preferred,omitempty"`
}

// TinkerbellMachineSpec is the desired state of a TinkerbellMachine.
type TinkerbellMachineSpec struct {
	// ImageLookupFormat is a Go template for the OS image URL with
	// {{.BaseRegistry}}, {{.OSDistro}}, {{.OSVersion}} and {{.KubernetesVersion}}.
	// +optional
	ImageLookupFormat string `json:"imageLookupFormat,omitempty"`
	// +optional
	ImageLookupBaseRegistry string `json:"imageLookupBaseRegistry,omitempty"`
	// +optional
	ImageLookupOSDistro string `json:"imageLookupOSDistro,omitempty"`
	// +optional
	ImageLookupOSVersion string `json:"imageLookupOSVersion,omitempty"`

	// TemplateOverride is the Tinkerbell workflow template (YAML) used
	// instead of the provider's default.
	// +optional
	TemplateOverride string `json:"templateOverride,omitempty"`

	// HardwareAffinity selects the Hardware this machine may claim.
	// +optional
	HardwareAffinity *HardwareAffinity `json:"hardwareAffinity,omitempty"`

	// BootOptions control how the claimed Hardware is booted.
	// +optional
	BootOptions BootOptions `json:"bootOptions,omitempty"`

	// HardwareName is the claimed Hardware (set by the provider; kept in
	// spec because it cannot be rebuilt from the world after a move).
	// +optional
	HardwareName string `json:"hardwareName,omitempty"`
	// ProviderID is tinkerbell://NAMESPACE/HARDWARE once claimed.
	// +optional
	ProviderID string `json:"providerID,omitempty"`
}

// TinkerbellResourceStatus is the provisioning state of the machine's device.
type TinkerbellResourceStatus int

// TinkerbellMachineStatus is the observed state of a TinkerbellMachine.
type TinkerbellMachineStatus struct {
	// Ready is true once the machine is provisioned.
	// +optional
	Ready bool `json:"ready"`
	// Addresses of the provisioned machine.
	// +optional
	Addresses []corev1.NodeAddress `json:"addresses,omitempty"`
	// InstanceStatus is the device's provisioning state.
	// +optional
	InstanceStatus *TinkerbellResourceStatus `json:"instanceStatus,omitempty"`
	// ErrorReason is a terminal error code.
	// +optional
	ErrorReason *string `json:"errorReason,omitempty"`
	// ErrorMessage explains a terminal error.
	// +optional
	ErrorMessage *string `json:"errorMessage,omitempty"`
}

// TinkerbellMachine is the infrastructure of one Cluster API Machine.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=tinkerbellmachines,scope=Namespaced,categories=cluster-api
// +kubebuilder:printcolumn:name="Cluster",type="string",JSONPath=".metadata.labels.cluster\\.x-k8s\\.io/cluster-name"
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.ready"
// +kubebuilder:printcolumn:name="Hardware",type="string",JSONPath=".spec.hardwareName"
type TinkerbellMachine struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TinkerbellMachineSpec   `json:"spec,omitempty"`
	Status TinkerbellMachineStatus `json:"status,omitempty"`
}

// TinkerbellMachineList is a list of TinkerbellMachines.
//
// +kubebuilder:object:root=true
type TinkerbellMachineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TinkerbellMachine `json:"items"`
}

// TinkerbellMachineTemplateResource is the machine spec stamped out per Machine.
type TinkerbellMachineTemplateResource struct {
	// Spec of each TinkerbellMachine made from the template.
	Spec TinkerbellMachineSpec `json:"spec"`
}

// TinkerbellMachineTemplateSpec is the desired state of a TinkerbellMachineTemplate.
type TinkerbellMachineTemplateSpec struct {
	Template TinkerbellMachineTemplateResource `json:"template"`
}

// TinkerbellMachineTemplate is the template KubeadmControlPlane and
// MachineDeployments clone TinkerbellMachines from.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=tinkerbellmachinetemplates,scope=Namespaced,categories=cluster-api
type TinkerbellMachineTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec TinkerbellMachineTemplateSpec `json:"spec,omitempty"`
}

// TinkerbellMachineTemplateList is a list of TinkerbellMachineTemplates.
//
// +kubebuilder:object:root=true
type TinkerbellMachineTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TinkerbellMachineTemplate `json:"items"`
}
