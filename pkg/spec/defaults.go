package spec

import "fmt"

// Defaults kiln applies to fields a ClusterSpec leaves out. They are visible
// in `kiln validate -o json`.
const (
	DefaultPodCIDR                 = "192.168.0.0/16"
	DefaultServiceCIDR             = "10.96.0.0/12"
	DefaultNamespace               = "default"
	DefaultNodeStartupTimeout      = "20m0s"
	DefaultUnhealthyMachineTimeout = "5m0s"
)

// applyDefaults fills in omitted fields. Only fields absent from the file are
// defaulted; a value given explicitly (even zero) is kept and checked.
func (s *ClusterSpec) applyDefaults() {
	for _, doc := range s.docs {
		has := func(path string) bool { _, ok := doc.lines[path]; return ok }
		switch o := doc.obj.(type) {
		case *Cluster:
			defaultNamespace(&o.Metadata)
			sp := &o.Spec
			if !has("spec.controlPlaneConfiguration.count") {
				sp.ControlPlaneConfiguration.Count = 1
			}
			for i := range sp.WorkerNodeGroupConfigurations {
				w := &sp.WorkerNodeGroupConfigurations[i]
				if !has(workerPath(i) + ".count") {
					w.Count = 1
					if w.AutoScalingConfiguration != nil {
						w.Count = w.AutoScalingConfiguration.MinCount
					}
				}
			}
			if len(sp.ClusterNetwork.Pods.CIDRBlocks) == 0 && !has("spec.clusterNetwork.pods.cidrBlocks") {
				sp.ClusterNetwork.Pods.CIDRBlocks = []string{DefaultPodCIDR}
			}
			if len(sp.ClusterNetwork.Services.CIDRBlocks) == 0 && !has("spec.clusterNetwork.services.cidrBlocks") {
				sp.ClusterNetwork.Services.CIDRBlocks = []string{DefaultServiceCIDR}
			}
			if sp.ClusterNetwork.CNIConfig == nil {
				switch sp.ClusterNetwork.CNI {
				case "kindnetd":
					sp.ClusterNetwork.CNIConfig = &CNIConfig{Kindnetd: &KindnetdConfig{}}
					sp.ClusterNetwork.CNI = ""
				case "", "cilium":
					sp.ClusterNetwork.CNIConfig = &CNIConfig{Cilium: &CiliumConfig{}}
					sp.ClusterNetwork.CNI = ""
				}
			}
			if sp.ClusterNetwork.CNIConfig != nil && sp.ClusterNetwork.CNIConfig.Cilium != nil && sp.ClusterNetwork.CNIConfig.Cilium.PolicyEnforcementMode == "" {
				sp.ClusterNetwork.CNIConfig.Cilium.PolicyEnforcementMode = "default"
			}
			if sp.ManagementCluster.Name == "" {
				sp.ManagementCluster.Name = o.Metadata.Name
			}
			if sp.MachineHealthCheck == nil {
				sp.MachineHealthCheck = &MachineHealthCheck{}
			}
			if sp.MachineHealthCheck.NodeStartupTimeout == "" {
				sp.MachineHealthCheck.NodeStartupTimeout = DefaultNodeStartupTimeout
			}
			if sp.MachineHealthCheck.UnhealthyMachineTimeout == "" {
				sp.MachineHealthCheck.UnhealthyMachineTimeout = DefaultUnhealthyMachineTimeout
			}
		case *TinkerbellDatacenterConfig:
			defaultNamespace(&o.Metadata)
		case *TinkerbellMachineConfig:
			defaultNamespace(&o.Metadata)
			if o.Spec.TemplateRef.Name != "" && o.Spec.TemplateRef.Kind == "" {
				o.Spec.TemplateRef.Kind = KindTinkerbellTemplateConfig
			}
		case *TinkerbellTemplateConfig:
			defaultNamespace(&o.Metadata)
		}
	}
}

func defaultNamespace(m *ObjectMeta) {
	if m.Namespace == "" {
		m.Namespace = DefaultNamespace
	}
}

func workerPath(i int) string {
	return fmt.Sprintf("spec.workerNodeGroupConfigurations[%d]", i)
}
