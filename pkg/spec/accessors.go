package spec

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Name is the cluster's name.
func (s *ClusterSpec) Name() string { return s.Cluster.Metadata.Name }

// MachineConfig returns the TinkerbellMachineConfig with the given name.
func (s *ClusterSpec) MachineConfig(name string) *TinkerbellMachineConfig {
	for _, mc := range s.MachineConfigs {
		if mc.Metadata.Name == name {
			return mc
		}
	}
	return nil
}

// TemplateConfig returns the TinkerbellTemplateConfig with the given name.
func (s *ClusterSpec) TemplateConfig(name string) *TinkerbellTemplateConfig {
	for _, tc := range s.TemplateConfigs {
		if tc.Metadata.Name == name {
			return tc
		}
	}
	return nil
}

// OSImageURL is the image the machines of mc are written with: the machine
// config's own osImageURL, or else the datacenter's.
func (s *ClusterSpec) OSImageURL(mc *TinkerbellMachineConfig) string {
	if mc.Spec.OSImageURL != "" {
		return mc.Spec.OSImageURL
	}
	if s.Datacenter != nil {
		return s.Datacenter.Spec.OSImageURL
	}
	return ""
}

// NodeGroup is the control plane or one worker group with what it resolves to.
type NodeGroup struct {
	// Name is "control-plane" for the control plane, else the worker group name.
	Name         string
	ControlPlane bool
	Count        int
	// MachineConfig is the group's TinkerbellMachineConfig.
	MachineConfig *TinkerbellMachineConfig
	// Template is the group's custom workflow template, nil for kiln's default.
	Template *TinkerbellTemplateConfig
	Taints   []Taint
	Labels   map[string]string
}

// ControlPlaneGroupName names the control plane in NodeGroups.
const ControlPlaneGroupName = "control-plane"

// NodeGroups lists the control plane first, then the worker groups in file
// order, each with its machine config and template resolved.
func (s *ClusterSpec) NodeGroups() []NodeGroup {
	cp := s.Cluster.Spec.ControlPlaneConfiguration
	groups := []NodeGroup{s.nodeGroup(ControlPlaneGroupName, true, cp.Count, cp.MachineGroupRef, cp.Taints, cp.Labels)}
	for _, w := range s.Cluster.Spec.WorkerNodeGroupConfigurations {
		groups = append(groups, s.nodeGroup(w.Name, false, w.Count, w.MachineGroupRef, w.Taints, w.Labels))
	}
	return groups
}

func (s *ClusterSpec) nodeGroup(name string, cp bool, count int, ref *Ref, taints []Taint, labels map[string]string) NodeGroup {
	g := NodeGroup{Name: name, ControlPlane: cp, Count: count, Taints: taints, Labels: labels}
	if ref != nil {
		g.MachineConfig = s.MachineConfig(ref.Name)
	}
	if g.MachineConfig != nil && g.MachineConfig.Spec.TemplateRef.Name != "" {
		g.Template = s.TemplateConfig(g.MachineConfig.Spec.TemplateRef.Name)
	}
	return g
}

// Matches reports whether a machine with the given labels can be picked by
// this machine config: it carries every hardwareSelector label, or it
// satisfies at least one hardwareAffinity.required term.
func (mc *TinkerbellMachineConfig) Matches(labels map[string]string) bool {
	if len(mc.Spec.HardwareSelector) > 0 {
		return matchLabels(mc.Spec.HardwareSelector, labels)
	}
	if a := mc.Spec.HardwareAffinity; a != nil {
		for _, t := range a.Required {
			if t.LabelSelector.Matches(labels) {
				return true
			}
		}
	}
	return false
}

// Matches evaluates the selector against a label set.
func (s LabelSelector) Matches(labels map[string]string) bool {
	if !matchLabels(s.MatchLabels, labels) {
		return false
	}
	for _, e := range s.MatchExpressions {
		v, ok := labels[e.Key]
		switch e.Operator {
		case "In":
			if !ok || !slices.Contains(e.Values, v) {
				return false
			}
		case "NotIn":
			if ok && slices.Contains(e.Values, v) {
				return false
			}
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func matchLabels(want, labels map[string]string) bool {
	for k, v := range want {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// SelectorString renders the machine config's hardware selection for
// messages, e.g. "type=cp" or "affinity(type In (cp,infra))".
func (mc *TinkerbellMachineConfig) SelectorString() string {
	if len(mc.Spec.HardwareSelector) > 0 {
		return formatLabels(mc.Spec.HardwareSelector)
	}
	if a := mc.Spec.HardwareAffinity; a != nil {
		var terms []string
		for _, t := range a.Required {
			parts := []string{}
			if len(t.LabelSelector.MatchLabels) > 0 {
				parts = append(parts, formatLabels(t.LabelSelector.MatchLabels))
			}
			for _, e := range t.LabelSelector.MatchExpressions {
				parts = append(parts, strings.TrimSpace(fmt.Sprintf("%s %s %s", e.Key, e.Operator, formatValues(e.Values))))
			}
			terms = append(terms, strings.Join(parts, ","))
		}
		return "affinity(" + strings.Join(terms, " OR ") + ")"
	}
	return "(none)"
}

func formatValues(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return "(" + strings.Join(v, ",") + ")"
}

func formatLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// Position locates a field of the document of the given kind and name, for
// problems found outside this package (e.g. spec × hardware checks): it
// returns the document's label and the line of the field or of its closest
// parent present in the file.
func (s *ClusterSpec) Position(kind, name, field string) (document string, line int) {
	for _, d := range s.docs {
		if d.kind == kind && d.name == name {
			return d.label(), d.lineOf(field)
		}
	}
	return kind + "/" + name, 0
}

// KubernetesVersion is the cluster's Kubernetes minor version, e.g. "1.33".
func (s *ClusterSpec) KubernetesVersion() string { return s.Cluster.Spec.KubernetesVersion }

// ControlPlaneEndpoint is the control-plane virtual IP (the API is on 6443).
func (s *ClusterSpec) ControlPlaneEndpoint() string {
	if e := s.Cluster.Spec.ControlPlaneConfiguration.Endpoint; e != nil {
		return e.Host
	}
	return ""
}

// PodCIDR is the cluster's single pod CIDR block.
func (s *ClusterSpec) PodCIDR() string { return first(s.Cluster.Spec.ClusterNetwork.Pods.CIDRBlocks) }

// ServiceCIDR is the cluster's single service CIDR block.
func (s *ClusterSpec) ServiceCIDR() string {
	return first(s.Cluster.Spec.ClusterNetwork.Services.CIDRBlocks)
}

// TinkerbellIP is the provisioning stack's virtual IP after the move.
func (s *ClusterSpec) TinkerbellIP() string {
	if s.Datacenter == nil {
		return ""
	}
	return s.Datacenter.Spec.TinkerbellIP
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
