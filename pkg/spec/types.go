package spec

// APIVersion is the group/version of every ClusterSpec document.
const APIVersion = "anywhere.eks.amazonaws.com/v1alpha1"

// Document kinds kiln reads.
const (
	KindCluster                    = "Cluster"
	KindTinkerbellDatacenterConfig = "TinkerbellDatacenterConfig"
	KindTinkerbellMachineConfig    = "TinkerbellMachineConfig"
	KindTinkerbellTemplateConfig   = "TinkerbellTemplateConfig"
)

// OSFamilyUbuntu is the only osFamily kiln provisions.
const OSFamilyUbuntu = "ubuntu"

// TypeMeta is a document's apiVersion and kind.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// ObjectMeta is the part of Kubernetes object metadata a ClusterSpec uses.
// Server-populated fields (uid, resourceVersion, ...) are accepted and dropped
// so that objects exported from a cluster load.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Ref points at another document by kind and name.
type Ref struct {
	Kind string `json:"kind,omitempty"`
	Name string `json:"name,omitempty"`
}

// Cluster is the EKS Anywhere Cluster document.
type Cluster struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta        `json:"metadata"`
	Spec     ClusterSpecFields `json:"spec"`
	Status   any               `json:"status,omitempty"`
}

// ClusterSpecFields is Cluster.spec.
type ClusterSpecFields struct {
	KubernetesVersion             string                         `json:"kubernetesVersion"`
	ControlPlaneConfiguration     ControlPlaneConfiguration      `json:"controlPlaneConfiguration"`
	WorkerNodeGroupConfigurations []WorkerNodeGroupConfiguration `json:"workerNodeGroupConfigurations,omitempty"`
	DatacenterRef                 Ref                            `json:"datacenterRef"`
	IdentityProviderRefs          []Ref                          `json:"identityProviderRefs,omitempty"`
	GitOpsRef                     *Ref                           `json:"gitOpsRef,omitempty"`
	ClusterNetwork                ClusterNetwork                 `json:"clusterNetwork"`
	ExternalEtcdConfiguration     *ExternalEtcdConfiguration     `json:"externalEtcdConfiguration,omitempty"`
	ProxyConfiguration            *ProxyConfiguration            `json:"proxyConfiguration,omitempty"`
	RegistryMirrorConfiguration   *RegistryMirrorConfiguration   `json:"registryMirrorConfiguration,omitempty"`
	ManagementCluster             ManagementCluster              `json:"managementCluster"`
	PodIAMConfig                  *PodIAMConfig                  `json:"podIamConfig,omitempty"`
	Packages                      any                            `json:"packages,omitempty"`
	BundlesRef                    *BundlesRef                    `json:"bundlesRef,omitempty"`
	EksaVersion                   string                         `json:"eksaVersion,omitempty"`
	MachineHealthCheck            *MachineHealthCheck            `json:"machineHealthCheck,omitempty"`
	EtcdEncryption                any                            `json:"etcdEncryption,omitempty"`
	LicenseToken                  string                         `json:"licenseToken,omitempty"`
}

// ControlPlaneConfiguration is Cluster.spec.controlPlaneConfiguration.
type ControlPlaneConfiguration struct {
	Count                      int                                 `json:"count"`
	Endpoint                   *Endpoint                           `json:"endpoint,omitempty"`
	MachineGroupRef            *Ref                                `json:"machineGroupRef,omitempty"`
	Taints                     []Taint                             `json:"taints,omitempty"`
	Labels                     map[string]string                   `json:"labels,omitempty"`
	UpgradeRolloutStrategy     *ControlPlaneUpgradeRolloutStrategy `json:"upgradeRolloutStrategy,omitempty"`
	SkipLoadBalancerDeployment bool                                `json:"skipLoadBalancerDeployment,omitempty"`
	CertSANs                   []string                            `json:"certSans,omitempty"`
	MachineHealthCheck         *MachineHealthCheck                 `json:"machineHealthCheck,omitempty"`
	APIServerExtraArgs         map[string]string                   `json:"apiServerExtraArgs,omitempty"`
	KubeletConfiguration       map[string]any                      `json:"kubeletConfiguration,omitempty"`
}

// Endpoint is the control-plane virtual IP.
type Endpoint struct {
	Host string `json:"host"`
}

// Taint is a Kubernetes node taint.
type Taint struct {
	Key       string `json:"key"`
	Value     string `json:"value,omitempty"`
	Effect    string `json:"effect"`
	TimeAdded string `json:"timeAdded,omitempty"`
}

// ControlPlaneUpgradeRolloutStrategy configures control-plane rolling upgrades.
type ControlPlaneUpgradeRolloutStrategy struct {
	Type          string                           `json:"type,omitempty"`
	RollingUpdate *ControlPlaneRollingUpdateParams `json:"rollingUpdate,omitempty"`
}

// ControlPlaneRollingUpdateParams bounds a control-plane rolling upgrade.
type ControlPlaneRollingUpdateParams struct {
	MaxSurge int `json:"maxSurge"`
}

// WorkerNodeGroupConfiguration is one entry of
// Cluster.spec.workerNodeGroupConfigurations.
type WorkerNodeGroupConfiguration struct {
	Name                     string                             `json:"name"`
	Count                    int                                `json:"count"`
	AutoScalingConfiguration *AutoScalingConfiguration          `json:"autoscalingConfiguration,omitempty"`
	MachineGroupRef          *Ref                               `json:"machineGroupRef,omitempty"`
	Taints                   []Taint                            `json:"taints,omitempty"`
	Labels                   map[string]string                  `json:"labels,omitempty"`
	UpgradeRolloutStrategy   *WorkerNodesUpgradeRolloutStrategy `json:"upgradeRolloutStrategy,omitempty"`
	KubernetesVersion        string                             `json:"kubernetesVersion,omitempty"`
	MachineHealthCheck       *MachineHealthCheck                `json:"machineHealthCheck,omitempty"`
	KubeletConfiguration     map[string]any                     `json:"kubeletConfiguration,omitempty"`
	FailureDomains           []string                           `json:"failureDomains,omitempty"`
}

// AutoScalingConfiguration bounds a worker group for the cluster autoscaler.
type AutoScalingConfiguration struct {
	MinCount int `json:"minCount,omitempty"`
	MaxCount int `json:"maxCount,omitempty"`
}

// WorkerNodesUpgradeRolloutStrategy configures worker rolling upgrades.
type WorkerNodesUpgradeRolloutStrategy struct {
	Type          string                          `json:"type,omitempty"`
	RollingUpdate *WorkerNodesRollingUpdateParams `json:"rollingUpdate,omitempty"`
}

// WorkerNodesRollingUpdateParams bounds a worker rolling upgrade.
type WorkerNodesRollingUpdateParams struct {
	MaxSurge       int `json:"maxSurge"`
	MaxUnavailable int `json:"maxUnavailable"`
}

// MachineHealthCheck configures Cluster API machine health checks.
// Durations are Go duration strings ("20m0s"); maxUnhealthy is a number or
// a percentage.
type MachineHealthCheck struct {
	NodeStartupTimeout      string `json:"nodeStartupTimeout,omitempty"`
	UnhealthyMachineTimeout string `json:"unhealthyMachineTimeout,omitempty"`
	MaxUnhealthy            any    `json:"maxUnhealthy,omitempty"`
}

// ClusterNetwork is Cluster.spec.clusterNetwork.
type ClusterNetwork struct {
	Pods      CIDRBlocks `json:"pods"`
	Services  CIDRBlocks `json:"services"`
	CNI       string     `json:"cni,omitempty"`
	CNIConfig *CNIConfig `json:"cniConfig,omitempty"`
	DNS       DNS        `json:"dns,omitempty"`
	Nodes     *Nodes     `json:"nodes,omitempty"`
}

// CIDRBlocks lists address ranges.
type CIDRBlocks struct {
	CIDRBlocks []string `json:"cidrBlocks"`
}

// CNIConfig selects the cluster's CNI plugin.
type CNIConfig struct {
	Cilium   *CiliumConfig   `json:"cilium,omitempty"`
	Kindnetd *KindnetdConfig `json:"kindnetd,omitempty"`
}

// CiliumConfig configures Cilium.
type CiliumConfig struct {
	PolicyEnforcementMode      string `json:"policyEnforcementMode,omitempty"`
	EgressMasqueradeInterfaces string `json:"egressMasqueradeInterfaces,omitempty"`
	SkipUpgrade                *bool  `json:"skipUpgrade,omitempty"`
	RoutingMode                string `json:"routingMode,omitempty"`
	IPv4NativeRoutingCIDR      string `json:"ipv4NativeRoutingCIDR,omitempty"`
	IPv6NativeRoutingCIDR      string `json:"ipv6NativeRoutingCIDR,omitempty"`
}

// KindnetdConfig selects kindnetd; it has no settings.
type KindnetdConfig struct{}

// DNS configures node DNS resolution.
type DNS struct {
	ResolvConf *ResolvConf `json:"resolvConf,omitempty"`
}

// ResolvConf names a resolv.conf for kubelet.
type ResolvConf struct {
	Path string `json:"path,omitempty"`
}

// Nodes configures per-node pod CIDR sizes.
type Nodes struct {
	CIDRMaskSize *int `json:"cidrMaskSize,omitempty"`
}

// ExternalEtcdConfiguration asks for a separate etcd cluster (not supported
// on bare metal).
type ExternalEtcdConfiguration struct {
	MachineGroupRef *Ref `json:"machineGroupRef,omitempty"`
	Count           int  `json:"count,omitempty"`
}

// ProxyConfiguration sets HTTP proxies for nodes.
type ProxyConfiguration struct {
	HTTPProxy  string   `json:"httpProxy,omitempty"`
	HTTPSProxy string   `json:"httpsProxy,omitempty"`
	NoProxy    []string `json:"noProxy,omitempty"`
}

// RegistryMirrorConfiguration points nodes at a local image registry.
type RegistryMirrorConfiguration struct {
	Endpoint           string         `json:"endpoint,omitempty"`
	Port               string         `json:"port,omitempty"`
	OCINamespaces      []OCINamespace `json:"ociNamespaces,omitempty"`
	CACertContent      string         `json:"caCertContent,omitempty"`
	Authenticate       bool           `json:"authenticate,omitempty"`
	InsecureSkipVerify bool           `json:"insecureSkipVerify,omitempty"`
}

// OCINamespace maps an upstream registry to a namespace of the mirror.
type OCINamespace struct {
	Registry  string `json:"registry"`
	Namespace string `json:"namespace"`
}

// ManagementCluster names the cluster that manages this one.
type ManagementCluster struct {
	Name string `json:"name"`
}

// PodIAMConfig configures the service-account issuer.
type PodIAMConfig struct {
	ServiceAccountIssuer string `json:"serviceAccountIssuer"`
}

// BundlesRef is the deprecated EKS Anywhere bundles reference.
type BundlesRef struct {
	Name       string `json:"name"`
	Namespace  string `json:"namespace"`
	APIVersion string `json:"apiVersion"`
}

// TinkerbellDatacenterConfig is the provisioning-stack document.
type TinkerbellDatacenterConfig struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta                     `json:"metadata"`
	Spec     TinkerbellDatacenterConfigSpec `json:"spec"`
	Status   any                            `json:"status,omitempty"`
}

// TinkerbellDatacenterConfigSpec is TinkerbellDatacenterConfig.spec.
type TinkerbellDatacenterConfigSpec struct {
	TinkerbellIP               string `json:"tinkerbellIP"`
	OSImageURL                 string `json:"osImageURL,omitempty"`
	HookImagesURLPath          string `json:"hookImagesURLPath,omitempty"`
	SkipLoadBalancerDeployment bool   `json:"skipLoadBalancerDeployment,omitempty"`
	LoadBalancerInterface      string `json:"loadBalancerInterface,omitempty"`
	IsoBoot                    bool   `json:"isoBoot,omitempty"`
	HookIsoURL                 string `json:"hookIsoURL,omitempty"`
}

// TinkerbellMachineConfig describes one group of machines: which hardware
// they are picked from and what is installed on them.
type TinkerbellMachineConfig struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta                  `json:"metadata"`
	Spec     TinkerbellMachineConfigSpec `json:"spec"`
	Status   any                         `json:"status,omitempty"`
}

// TinkerbellMachineConfigSpec is TinkerbellMachineConfig.spec.
type TinkerbellMachineConfigSpec struct {
	HardwareSelector    map[string]string    `json:"hardwareSelector,omitempty"`
	HardwareAffinity    *HardwareAffinity    `json:"hardwareAffinity,omitempty"`
	TemplateRef         Ref                  `json:"templateRef"`
	OSFamily            string               `json:"osFamily"`
	OSImageURL          string               `json:"osImageURL,omitempty"`
	Users               []UserConfiguration  `json:"users,omitempty"`
	HostOSConfiguration *HostOSConfiguration `json:"hostOSConfiguration,omitempty"`
}

// HardwareAffinity selects hardware by required and preferred label selectors.
type HardwareAffinity struct {
	Required  []HardwareAffinityTerm         `json:"required,omitempty"`
	Preferred []WeightedHardwareAffinityTerm `json:"preferred,omitempty"`
}

// HardwareAffinityTerm is one label selector.
type HardwareAffinityTerm struct {
	LabelSelector LabelSelector `json:"labelSelector"`
}

// WeightedHardwareAffinityTerm is a preferred selector with a weight 1-100.
type WeightedHardwareAffinityTerm struct {
	Weight               int                  `json:"weight"`
	HardwareAffinityTerm HardwareAffinityTerm `json:"hardwareAffinityTerm"`
}

// LabelSelector is a Kubernetes label selector.
type LabelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels,omitempty"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is one matchExpressions entry.
type LabelSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// UserConfiguration is a login user and its SSH keys.
type UserConfiguration struct {
	Name              string   `json:"name"`
	SSHAuthorizedKeys []string `json:"sshAuthorizedKeys"`
}

// HostOSConfiguration holds node OS settings.
type HostOSConfiguration struct {
	NTPConfiguration          *NTPConfiguration `json:"ntpConfiguration,omitempty"`
	CertBundles               []CertBundle      `json:"certBundles,omitempty"`
	BottlerocketConfiguration any               `json:"bottlerocketConfiguration,omitempty"`
}

// NTPConfiguration lists NTP servers.
type NTPConfiguration struct {
	Servers []string `json:"servers,omitempty"`
}

// CertBundle is an extra CA bundle for nodes.
type CertBundle struct {
	Name string `json:"name"`
	Data string `json:"data"`
}

// TinkerbellTemplateConfig carries a custom provisioning workflow template.
type TinkerbellTemplateConfig struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta                   `json:"metadata"`
	Spec     TinkerbellTemplateConfigSpec `json:"spec"`
	Status   any                          `json:"status,omitempty"`
}

// TinkerbellTemplateConfigSpec is TinkerbellTemplateConfig.spec.
type TinkerbellTemplateConfigSpec struct {
	Template WorkflowTemplate `json:"template"`
}

// WorkflowTemplate is a Tinkerbell workflow template as it appears in a
// TinkerbellTemplateConfig. String values may hold Go template expressions
// that are rendered per machine.
type WorkflowTemplate struct {
	Version       string         `json:"version"`
	Name          string         `json:"name"`
	ID            string         `json:"id,omitempty"`
	GlobalTimeout int            `json:"global_timeout"`
	Tasks         []WorkflowTask `json:"tasks"`
}

// WorkflowTask is one task of a workflow template: actions run in order on
// one worker.
type WorkflowTask struct {
	Name        string            `json:"name"`
	Worker      string            `json:"worker"`
	Volumes     []string          `json:"volumes,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	Actions     []WorkflowAction  `json:"actions"`
}

// WorkflowAction is one container run by the worker.
type WorkflowAction struct {
	Name        string            `json:"name"`
	Image       string            `json:"image"`
	Timeout     int64             `json:"timeout"`
	Command     []string          `json:"command,omitempty"`
	OnTimeout   []string          `json:"on-timeout,omitempty"`
	OnFailure   []string          `json:"on-failure,omitempty"`
	Volumes     []string          `json:"volumes,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	Pid         string            `json:"pid,omitempty"`
}
