// Package kube translates a Hardware.csv inventory into the Kubernetes objects
// the provisioning stack works from: a tinkerbell.org/v1alpha1 Hardware per
// machine, and a bmc.tinkerbell.org/v1alpha1 Machine plus a basic-auth Secret
// per machine with a BMC. All objects live in the eksa-system namespace and
// carry the label that makes `clusterctl move` take them along at the pivot.
package kube

import (
	"bytes"
	"fmt"

	tink "github.com/tinkerbell/tink/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	bmcv1 "github.com/kiln-dev/kiln/pkg/apis/bmc/v1alpha1"
	"github.com/kiln-dev/kiln/pkg/hardware"
)

const (
	// Namespace holds every generated object.
	Namespace = "eksa-system"
	// MoveLabel makes clusterctl move carry an object to the target cluster.
	MoveLabel = "clusterctl.cluster.x-k8s.io/move"
	// BMCPort is the port BMC connections default to (IPMI; Redfish uses its own).
	BMCPort = 623
	// leaseTime is the DHCP lease in seconds: effectively infinite, the
	// addresses are reservations.
	leaseTime = 4294967294
)

// Objects are the Kubernetes objects of one inventory, in inventory order.
type Objects struct {
	Hardware    []tink.Hardware
	BMCMachines []bmcv1.Machine
	Secrets     []corev1.Secret
}

// BMCMachineName is the name of the BMC Machine object of a host.
func BMCMachineName(hostname string) string { return "bmc-" + hostname }

// BMCSecretName is the name of the Secret holding a host's BMC credentials.
func BMCSecretName(hostname string) string { return BMCMachineName(hostname) + "-auth" }

// FromInventory builds the objects for every machine of inv.
func FromInventory(inv *hardware.Inventory) Objects {
	var o Objects
	for _, m := range inv.Machines {
		o.Hardware = append(o.Hardware, Hardware(m))
		if m.HasBMC() {
			o.BMCMachines = append(o.BMCMachines, BMCMachine(m))
			o.Secrets = append(o.Secrets, BMCSecret(m))
		}
	}
	return o
}

func objectMeta(name string, labels map[string]string) metav1.ObjectMeta {
	l := map[string]string{MoveLabel: "true"}
	for k, v := range labels {
		l[k] = v
	}
	return metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: l}
}

// Hardware is the tink Hardware object of one machine: its disk, its
// provisioning interface with the static address DHCP hands out, and a
// reference to its BMC.
func Hardware(m hardware.Machine) tink.Hardware {
	yes := true
	ip := &tink.IP{Address: m.IPAddress, Netmask: m.Netmask, Gateway: m.Gateway, Family: 4}
	h := tink.Hardware{
		TypeMeta:   metav1.TypeMeta{APIVersion: tink.GroupVersion.String(), Kind: "Hardware"},
		ObjectMeta: objectMeta(m.Hostname, m.Labels),
		Spec: tink.HardwareSpec{
			Disks: []tink.Disk{{Device: m.Disk}},
			Metadata: &tink.HardwareMetadata{
				State: "",
				Instance: &tink.MetadataInstance{
					ID:              m.MAC,
					Hostname:        m.Hostname,
					AllowPxe:        true,
					AlwaysPxe:       true,
					OperatingSystem: &tink.MetadataInstanceOperatingSystem{},
					Ips:             []*tink.MetadataInstanceIP{{Address: m.IPAddress, Netmask: m.Netmask, Gateway: m.Gateway, Family: 4}},
				},
			},
			Interfaces: []tink.Interface{{
				DHCP: &tink.DHCP{
					MAC:         m.MAC,
					Hostname:    m.Hostname,
					IP:          ip,
					NameServers: m.Nameservers,
					VLANID:      m.VLANID,
					LeaseTime:   leaseTime,
					Arch:        "x86_64",
					UEFI:        true,
				},
				Netboot: &tink.Netboot{AllowPXE: &yes, AllowWorkflow: &yes},
			}},
		},
	}
	if m.HasBMC() {
		group := bmcv1.GroupVersion.Group
		h.Spec.BMCRef = &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "Machine", Name: BMCMachineName(m.Hostname)}
	}
	return h
}

// BMCMachine is the bmc.tinkerbell.org Machine object that lets the BMC controller power
// the machine and set its boot device.
func BMCMachine(m hardware.Machine) bmcv1.Machine {
	return bmcv1.Machine{
		TypeMeta:   metav1.TypeMeta{APIVersion: bmcv1.GroupVersion.String(), Kind: "Machine"},
		ObjectMeta: objectMeta(BMCMachineName(m.Hostname), nil),
		Spec: bmcv1.MachineSpec{Connection: bmcv1.Connection{
			Host:          m.BMCIP,
			Port:          BMCPort,
			AuthSecretRef: corev1.SecretReference{Name: BMCSecretName(m.Hostname), Namespace: Namespace},
			InsecureTLS:   true,
			ProviderOptions: &bmcv1.ProviderOptions{
				PreferredOrder: []bmcv1.ProviderName{"gofish", "ipmitool"},
			},
		}},
	}
}

// BMCSecret holds the BMC's username and password.
func BMCSecret(m hardware.Machine) corev1.Secret {
	return corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: objectMeta(BMCSecretName(m.Hostname), nil),
		Type:       corev1.SecretTypeBasicAuth,
		Data: map[string][]byte{
			corev1.BasicAuthUsernameKey: []byte(m.BMCUsername),
			corev1.BasicAuthPasswordKey: []byte(m.BMCPassword),
		},
	}
}

// YAML renders the objects as one multi-document YAML stream, machine by
// machine: Hardware, then its BMC Machine and Secret.
func (o Objects) YAML() ([]byte, error) {
	var buf bytes.Buffer
	bmc := map[string]int{}
	for i, m := range o.BMCMachines {
		bmc[m.Name] = i
	}
	write := func(obj any) error {
		data, err := yaml.Marshal(obj)
		if err != nil {
			return fmt.Errorf("render %T: %w", obj, err)
		}
		buf.WriteString("---\n")
		buf.Write(data)
		return nil
	}
	for _, h := range o.Hardware {
		if err := write(h); err != nil {
			return nil, err
		}
		if h.Spec.BMCRef == nil {
			continue
		}
		i, ok := bmc[h.Spec.BMCRef.Name]
		if !ok {
			continue
		}
		if err := write(o.BMCMachines[i]); err != nil {
			return nil, err
		}
		if err := write(o.Secrets[i]); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}
