package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PowerAction is a power operation on a machine.
type PowerAction string

// Power actions a Task can run.
const (
	PowerOn      PowerAction = "on"
	PowerHardOff PowerAction = "off"
	PowerSoftOff PowerAction = "soft"
	PowerCycle   PowerAction = "cycle"
	PowerReset   PowerAction = "reset"
	PowerStatus  PowerAction = "status"
)

// BootDevice is a boot device a BMC can select for the next boot.
type BootDevice string

// Boot devices.
const (
	BootPXE   BootDevice = "pxe"
	BootDisk  BootDevice = "disk"
	BootBIOS  BootDevice = "bios"
	BootCDROM BootDevice = "cdrom"
	BootSafe  BootDevice = "safe"
)

// Action is exactly one BMC operation.
//
// +kubebuilder:validation:MaxProperties:=1
type Action struct {
	// PowerAction changes or reads the power state.
	// +kubebuilder:validation:Enum=on;off;soft;status;cycle;reset
	// +optional
	PowerAction *PowerAction `json:"powerAction,omitempty"`

	// OneTimeBootDeviceAction sets the device for the next boot only.
	// +optional
	OneTimeBootDeviceAction *OneTimeBootDeviceAction `json:"oneTimeBootDeviceAction,omitempty"`

	// VirtualMediaAction mounts or ejects virtual media.
	// +optional
	VirtualMediaAction *VirtualMediaAction `json:"virtualMediaAction,omitempty"`
}

// OneTimeBootDeviceAction sets the next boot device.
type OneTimeBootDeviceAction struct {
	// Devices in order of preference; the first is used.
	Devices []BootDevice `json:"device"`
	// EFIBoot boots the device in EFI mode.
	// +kubebuilder:default=false
	// +optional
	EFIBoot bool `json:"efiBoot,omitempty"`
}

// VirtualMediaAction mounts (MediaURL set) or ejects (empty) virtual media.
type VirtualMediaAction struct {
	// MediaURL of the image to mount; empty ejects.
	// +optional
	MediaURL string `json:"mediaURL,omitempty"`
	// Kind of media, e.g. CD.
	Kind string `json:"kind"`
}

// JobConditionType names a condition of a Job.
type JobConditionType string

// Job conditions.
const (
	JobCompleted JobConditionType = "Completed"
	JobFailed    JobConditionType = "Failed"
	JobRunning   JobConditionType = "Running"
)

// JobSpec is an ordered list of actions against one Machine.
type JobSpec struct {
	// MachineRef names the Machine the tasks run against.
	MachineRef corev1.ObjectReference `json:"machineRef"`
	// Tasks run one after the other; the first failure stops the job.
	Tasks []Action `json:"tasks"`
}

// JobCondition is one observation about a Job.
type JobCondition struct {
	Type   JobConditionType `json:"type"`
	Status ConditionStatus  `json:"status"`
	// +optional
	Message string `json:"message,omitempty"`
}

// JobStatus is the observed state of a Job.
type JobStatus struct {
	// +optional
	Conditions []JobCondition `json:"conditions,omitempty"`
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// Job runs a sequence of BMC actions against a Machine.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=jobs,scope=Namespaced,categories=tinkerbell,singular=job,shortName=j
type Job struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   JobSpec   `json:"spec,omitempty"`
	Status JobStatus `json:"status,omitempty"`
}

// JobList is a list of Jobs.
//
// +kubebuilder:object:root=true
type JobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Job `json:"items"`
}

// TaskConditionType names a condition of a Task.
type TaskConditionType string

// Task conditions.
const (
	TaskCompleted TaskConditionType = "Completed"
	TaskFailed    TaskConditionType = "Failed"
)

// TaskSpec is one action and the connection to run it over.
type TaskSpec struct {
	// Task is the action to run.
	Task Action `json:"task"`
	// Connection to the BMC.
	// +optional
	Connection Connection `json:"connection,omitempty"`
}

// TaskCondition is one observation about a Task.
type TaskCondition struct {
	Type   TaskConditionType `json:"type"`
	Status ConditionStatus   `json:"status"`
	// +optional
	Message string `json:"message,omitempty"`
}

// TaskStatus is the observed state of a Task.
type TaskStatus struct {
	// +optional
	Conditions []TaskCondition `json:"conditions,omitempty"`
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// Task is one BMC action, created by a Job.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=tasks,scope=Namespaced,categories=tinkerbell,singular=task,shortName=t
type Task struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TaskSpec   `json:"spec,omitempty"`
	Status TaskStatus `json:"status,omitempty"`
}

// TaskList is a list of Tasks.
//
// +kubebuilder:object:root=true
type TaskList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Task `json:"items"`
}
