package capi

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	infrav1 "github.com/kiln-dev/kiln/pkg/apis/infrastructure/v1beta1"
	"github.com/kiln-dev/kiln/pkg/spec"
	"github.com/kiln-dev/kiln/templates"
)

// defaultTemplate is kiln's Ubuntu workflow template in templates/.
const defaultTemplate = "workflows/ubuntu.yaml"

// machineTemplate builds the TinkerbellMachineTemplate of node group g.
func machineTemplate(s *spec.ClusterSpec, g spec.NodeGroup, meta metav1.ObjectMeta, opts Options) (*infrav1.TinkerbellMachineTemplate, error) {
	workflow, err := workflowTemplate(s, g, opts)
	if err != nil {
		return nil, err
	}
	ms := infrav1.TinkerbellMachineSpec{
		TemplateOverride: workflow,
		HardwareAffinity: hardwareAffinity(g.MachineConfig),
		BootOptions:      infrav1.BootOptions{BootMode: infrav1.BootModeNetboot},
	}
	if dc := s.Datacenter; dc != nil && dc.Spec.IsoBoot {
		ms.BootOptions = infrav1.BootOptions{BootMode: infrav1.BootModeISOBoot, ISOURL: dc.Spec.HookIsoURL}
	}
	return &infrav1.TinkerbellMachineTemplate{
		ObjectMeta: meta,
		Spec:       infrav1.TinkerbellMachineTemplateSpec{Template: infrav1.TinkerbellMachineTemplateResource{Spec: ms}},
	}, nil
}

// hardwareAffinity turns the machine config's hardwareSelector (or its
// hardwareAffinity) into CAPT's affinity.
func hardwareAffinity(mc *spec.TinkerbellMachineConfig) *infrav1.HardwareAffinity {
	if len(mc.Spec.HardwareSelector) > 0 {
		return &infrav1.HardwareAffinity{Required: []infrav1.HardwareAffinityTerm{{
			LabelSelector: metav1.LabelSelector{MatchLabels: clone(mc.Spec.HardwareSelector)},
		}}}
	}
	a := mc.Spec.HardwareAffinity
	if a == nil {
		return nil
	}
	out := &infrav1.HardwareAffinity{}
	for _, r := range a.Required {
		out.Required = append(out.Required, infrav1.HardwareAffinityTerm{LabelSelector: labelSelector(r.LabelSelector)})
	}
	for _, p := range a.Preferred {
		out.Preferred = append(out.Preferred, infrav1.WeightedHardwareAffinityTerm{
			Weight:               int32(p.Weight),
			HardwareAffinityTerm: infrav1.HardwareAffinityTerm{LabelSelector: labelSelector(p.HardwareAffinityTerm.LabelSelector)},
		})
	}
	return out
}

func labelSelector(s spec.LabelSelector) metav1.LabelSelector {
	out := metav1.LabelSelector{MatchLabels: s.MatchLabels}
	for _, e := range s.MatchExpressions {
		out.MatchExpressions = append(out.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: e.Key, Operator: metav1.LabelSelectorOperator(e.Operator), Values: e.Values,
		})
	}
	return out
}

// workflowTemplate is the provisioning template of group g: the custom
// TinkerbellTemplateConfig it references, or kiln's default Ubuntu template
// with the cluster-wide values (image URL, metadata URL) filled in. The
// per-machine values ({{ .Hardware ... }}, {{ .device_1 }}) stay for the
// workflow engine to render per Hardware.
func workflowTemplate(s *spec.ClusterSpec, g spec.NodeGroup, opts Options) (string, error) {
	if g.Template != nil {
		data, err := yaml.Marshal(g.Template.Spec.Template)
		if err != nil {
			return "", fmt.Errorf("TinkerbellTemplateConfig %s: %w", g.Template.Metadata.Name, err)
		}
		return string(data), nil
	}
	src, err := templates.FS.ReadFile(defaultTemplate)
	if err != nil {
		return "", fmt.Errorf("reading kiln's default workflow template: %w", err)
	}
	image := s.OSImageURL(g.MachineConfig)
	if image == "" {
		return "", fmt.Errorf("node group %s: no osImageURL on TinkerbellMachineConfig %s or the TinkerbellDatacenterConfig", g.Name, g.MachineConfig.Metadata.Name)
	}
	r := strings.NewReplacer("{{ .image_url }}", image, "{{ .metadata_url }}", opts.MetadataURL)
	return r.Replace(string(src)), nil
}

// kubeVIPManifest is the static pod that announces the control-plane VIP
// with ARP and leader election among the control-plane nodes.
func kubeVIPManifest(image, vip string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: kube-vip
  namespace: kube-system
spec:
  containers:
  - name: kube-vip
    image: %s
    imagePullPolicy: IfNotPresent
    args: ["manager"]
    env:
    - {name: vip_arp, value: "true"}
    - {name: port, value: "%d"}
    - {name: address, value: "%s"}
    - {name: cp_enable, value: "true"}
    - {name: cp_namespace, value: kube-system}
    - {name: vip_leaderelection, value: "true"}
    - {name: vip_leasename, value: plndr-cp-lock}
    - {name: vip_leaseduration, value: "15"}
    - {name: vip_renewdeadline, value: "10"}
    - {name: vip_retryperiod, value: "2"}
    securityContext:
      capabilities:
        add: [NET_ADMIN, NET_RAW]
    volumeMounts:
    - {name: kubeconfig, mountPath: /etc/kubernetes/admin.conf}
  hostNetwork: true
  hostAliases:
  - hostnames: [kubernetes]
    ip: 127.0.0.1
  volumes:
  - name: kubeconfig
    hostPath:
      path: /etc/kubernetes/admin.conf
`, image, APIServerPort, vip)
}
