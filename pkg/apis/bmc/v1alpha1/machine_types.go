package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PowerState is a machine's power state as last observed through its BMC.
type PowerState string

// Power states a BMC reports.
const (
	PowerOnState      PowerState = "on"
	PowerOffState     PowerState = "off"
	PowerUnknownState PowerState = "unknown"
)

// ConditionStatus is the status of a condition: True or False.
type ConditionStatus string

// Condition statuses.
const (
	ConditionTrue  ConditionStatus = "True"
	ConditionFalse ConditionStatus = "False"
)

// MachineConditionType names a condition of a Machine.
type MachineConditionType string

// MachineContactable is True once the BMC answered with the stored credentials.
const MachineContactable MachineConditionType = "Contactable"

// ProviderName is a bmclib provider name (case-insensitive).
// +kubebuilder:validation:Pattern=`(?i)^(ipmitool|asrockrack|gofish|IntelAMT|dell|supermicro|openbmc)$`
type ProviderName string

// Connection says how to reach and authenticate to a BMC.
type Connection struct {
	// Host is the BMC's IP address or host name.
	// +kubebuilder:validation:MinLength=1
	Host string `json:"host"`

	// Port is the BMC port; 623 (IPMI) unless set.
	// +kubebuilder:default:=623
	// +optional
	Port int `json:"port"`

	// AuthSecretRef names a Secret with "username" and "password" keys.
	// +optional
	AuthSecretRef corev1.SecretReference `json:"authSecretRef"`

	// InsecureTLS accepts any certificate the BMC presents.
	InsecureTLS bool `json:"insecureTLS"`

	// ProviderOptions tunes the individual BMC protocols.
	// +optional
	ProviderOptions *ProviderOptions `json:"providerOptions,omitempty"`
}

// ProviderOptions tunes the BMC protocols tried for a machine.
type ProviderOptions struct {
	// PreferredOrder moves the named providers to the front of the order tried.
	// +optional
	PreferredOrder []ProviderName `json:"preferredOrder,omitempty"`
	// IntelAMT options.
	// +optional
	IntelAMT *PortOptions `json:"intelAMT,omitempty"`
	// IPMITOOL options.
	// +optional
	IPMITOOL *IPMIToolOptions `json:"ipmitool,omitempty"`
	// Redfish options.
	// +optional
	Redfish *PortOptions `json:"redfish,omitempty"`
	// RPC options for the HTTP notification provider.
	// +optional
	RPC *RPCOptions `json:"rpc,omitempty"`
}

// PortOptions overrides the port one provider uses.
type PortOptions struct {
	// Port the provider connects to.
	Port int `json:"port"`
}

// IPMIToolOptions tunes the ipmitool provider.
type IPMIToolOptions struct {
	// Port ipmitool connects to.
	Port int `json:"port"`
	// CipherSuite passed to ipmitool -C.
	CipherSuite string `json:"cipherSuite"`
}

// RPCOptions configures the provider that sends BMC requests as signed HTTP
// notifications to an external consumer.
type RPCOptions struct {
	// ConsumerURL receives the notifications.
	ConsumerURL string `json:"consumerURL"`
	// LogNotificationsDisabled stops logging consumer responses.
	// +optional
	LogNotificationsDisabled bool `json:"logNotificationsDisabled,omitempty"`
	// Request shapes the HTTP request.
	// +optional
	Request *RPCRequestOptions `json:"request,omitempty"`
	// Signature shapes the signature headers.
	// +optional
	Signature *RPCSignatureOptions `json:"signature,omitempty"`
	// HMAC holds the signing secrets.
	// +optional
	HMAC *RPCHMACOptions `json:"hmac,omitempty"`
}

// RPCRequestOptions shapes the HTTP request of the RPC provider.
type RPCRequestOptions struct {
	// +optional
	HTTPContentType string `json:"httpContentType,omitempty"`
	// +optional
	HTTPMethod string `json:"httpMethod,omitempty"`
	// +optional
	StaticHeaders map[string][]string `json:"staticHeaders,omitempty"`
	// +optional
	TimestampFormat string `json:"timestampFormat,omitempty"`
	// +optional
	TimestampHeader string `json:"timestampHeader,omitempty"`
}

// RPCSignatureOptions shapes the signature headers of the RPC provider.
type RPCSignatureOptions struct {
	// +optional
	HeaderName string `json:"headerName,omitempty"`
	// +optional
	AppendAlgoToHeaderDisabled bool `json:"appendAlgoToHeaderDisabled,omitempty"`
	// +optional
	IncludedPayloadHeaders []string `json:"includedPayloadHeaders,omitempty"`
}

// RPCHMACOptions holds the RPC provider's signing secrets per algorithm.
type RPCHMACOptions struct {
	// +optional
	PrefixSigDisabled bool `json:"prefixSigDisabled,omitempty"`
	// Secrets maps an algorithm name (sha256, sha512) to Secret references.
	// +optional
	Secrets map[string][]corev1.SecretReference `json:"secrets,omitempty"`
}

// MachineSpec is the desired state of a Machine.
type MachineSpec struct {
	// Connection says how to reach the BMC.
	Connection Connection `json:"connection"`
}

// MachineCondition is one observation about a Machine.
type MachineCondition struct {
	Type   MachineConditionType `json:"type"`
	Status ConditionStatus      `json:"status"`
	// +optional
	LastUpdateTime metav1.Time `json:"lastUpdateTime,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}

// MachineStatus is the observed state of a Machine.
type MachineStatus struct {
	// +kubebuilder:validation:Enum=on;off;unknown
	// +optional
	Power PowerState `json:"powerState,omitempty"`
	// +optional
	Conditions []MachineCondition `json:"conditions,omitempty"`
}

// Machine is one server's baseboard management controller.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=machines,scope=Namespaced,categories=tinkerbell,singular=machine
// +kubebuilder:metadata:labels=clusterctl.cluster.x-k8s.io=
// +kubebuilder:metadata:labels=clusterctl.cluster.x-k8s.io/move=
type Machine struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MachineSpec   `json:"spec,omitempty"`
	Status MachineStatus `json:"status,omitempty"`
}

// MachineList is a list of Machines.
//
// +kubebuilder:object:root=true
type MachineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Machine `json:"items"`
}
