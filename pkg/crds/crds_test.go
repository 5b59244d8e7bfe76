package crds

import "testing"

func TestLoadLabelsEveryKind(t *testing.T) {
	all, err := Load()
	if err != nil {
		t.Fatalf("%v (run make crds first)", err)
	}
	byName := map[string]map[string]string{}
	for _, c := range all {
		byName[c.Name] = c.Labels
		if _, ok := c.Labels[ClusterctlLabel]; !ok {
			t.Errorf("%s lacks the %s label clusterctl move discovers kinds by", c.Name, ClusterctlLabel)
		}
		served := 0
		for _, v := range c.Spec.Versions {
			if v.Storage {
				served++
			}
		}
		if served != 1 {
			t.Errorf("%s has %d storage versions", c.Name, served)
		}
	}
	want := map[string]map[string]string{
		"clusters.cluster.x-k8s.io":                                  {ProviderLabel: "cluster-api"},
		"machines.cluster.x-k8s.io":                                  {ProviderLabel: "cluster-api"},
		"machinesets.cluster.x-k8s.io":                               {ProviderLabel: "cluster-api"},
		"machinedeployments.cluster.x-k8s.io":                        {ProviderLabel: "cluster-api"},
		"kubeadmconfigs.bootstrap.cluster.x-k8s.io":                  {ProviderLabel: "bootstrap-kubeadm"},
		"kubeadmconfigtemplates.bootstrap.cluster.x-k8s.io":          {ProviderLabel: "bootstrap-kubeadm"},
		"kubeadmcontrolplanes.controlplane.cluster.x-k8s.io":         {ProviderLabel: "control-plane-kubeadm"},
		"tinkerbellclusters.infrastructure.cluster.x-k8s.io":         {ContractLabel: "v1beta1"},
		"tinkerbellmachines.infrastructure.cluster.x-k8s.io":         {ContractLabel: "v1beta1"},
		"tinkerbellmachinetemplates.infrastructure.cluster.x-k8s.io": {ContractLabel: "v1beta1"},
		"hardware.tinkerbell.org":                                    {MoveLabel: ""},
		"templates.tinkerbell.org":                                   {ProviderLabel: "infrastructure-tinkerbell"},
		"workflows.tinkerbell.org":                                   {ProviderLabel: "infrastructure-tinkerbell"},
		"machines.bmc.tinkerbell.org":                                {MoveLabel: ""},
		"jobs.bmc.tinkerbell.org":                                    {ProviderLabel: "infrastructure-tinkerbell"},
		"tasks.bmc.tinkerbell.org":                                   {ProviderLabel: "infrastructure-tinkerbell"},
		"providers.clusterctl.cluster.x-k8s.io":                      {"clusterctl.cluster.x-k8s.io/core": "inventory"},
	}
	for name, labels := range want {
		got, ok := byName[name]
		if !ok {
			t.Errorf("CRD %s is not embedded", name)
			continue
		}
		for k, v := range labels {
			if gv, ok := got[k]; !ok || gv != v {
				t.Errorf("%s: label %s=%q, want %q", name, k, gv, v)
			}
		}
	}
	if _, ok := byName[metadataCRD]; ok {
		t.Errorf("%s is a file format, not a served kind, and must not be installed", metadataCRD)
	}
}
