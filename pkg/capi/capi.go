// Package capi turns a ClusterSpec (and the Hardware.csv inventory it will
// be built from) into the Cluster API objects that drive a bare-metal
// cluster: Cluster, KubeadmControlPlane (control-plane VIP served by kube-vip
// as a static pod), one KubeadmConfigTemplate + TinkerbellMachineTemplate +
// MachineDeployment per worker group, TinkerbellCluster, and the control
// plane's TinkerbellMachineTemplate. Machine templates carry the hardware
// affinity from the machine config's selector and the provisioning workflow
// template rendered in; kubeadm configs carry users and SSH keys, node
// labels and taints, NTP servers and the registry mirror.
package capi

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	bootstrapv1 "sigs.k8s.io/cluster-api/api/bootstrap/kubeadm/v1beta2"
	controlplanev1 "sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta2"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"

	infrav1 "github.com/kiln-dev/kiln/pkg/apis/infrastructure/v1beta1"
	"github.com/kiln-dev/kiln/pkg/crds"
	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/spec"
)

// Defaults for Options.
const (
	DefaultNamespace    = "eksa-system"
	DefaultKubeVIPImage = "ghcr.io/kube-vip/kube-vip:v0.9.2"
	DefaultMetadataPort = 7172
	APIServerPort       = 6443
)

// Options tune generation.
type Options struct {
	// Namespace of every object (default eksa-system, where the Hardware lives).
	Namespace string
	// KubeVIPImage serves the control-plane VIP.
	KubeVIPImage string
	// MetadataURL is the metadata service rendered into kiln's default
	// workflow template; default http://<tinkerbellIP>:7172.
	MetadataURL string
}

func (o Options) withDefaults(s *spec.ClusterSpec) Options {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.KubeVIPImage == "" {
		o.KubeVIPImage = DefaultKubeVIPImage
	}
	if o.MetadataURL == "" && s.Datacenter != nil {
		o.MetadataURL = fmt.Sprintf("http://%s:%d", s.Datacenter.Spec.TinkerbellIP, DefaultMetadataPort)
	}
	return o
}

// KubernetesVersion turns the spec's "1.33" into the kubeadm version
// "v1.33.0"; a full "1.33.4" or "v1.33.4" is kept.
func KubernetesVersion(v string) (string, error) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	parts := strings.Split(v, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return "", fmt.Errorf("kubernetesVersion %q is not MAJOR.MINOR or MAJOR.MINOR.PATCH", v)
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil {
			return "", fmt.Errorf("kubernetesVersion %q is not numeric", v)
		}
	}
	if len(parts) == 2 {
		parts = append(parts, "0")
	}
	return "v" + strings.Join(parts, "."), nil
}

// Generate returns the Cluster API objects for s in apply order. inv, when
// not nil, must hold enough machines for every node group's selector.
func Generate(s *spec.ClusterSpec, inv *hardware.Inventory, opts Options) ([]client.Object, error) {
	if s == nil || s.Cluster == nil {
		return nil, fmt.Errorf("the ClusterSpec has no Cluster document")
	}
	opts = opts.withDefaults(s)
	version, err := KubernetesVersion(s.Cluster.Spec.KubernetesVersion)
	if err != nil {
		return nil, err
	}
	cs := s.Cluster.Spec
	cp := cs.ControlPlaneConfiguration
	if cp.Endpoint == nil || cp.Endpoint.Host == "" {
		return nil, fmt.Errorf("Cluster %s: controlPlaneConfiguration.endpoint.host is required (the control-plane VIP)", s.Name())
	}
	groups := s.NodeGroups()
	for _, g := range groups {
		if g.MachineConfig == nil {
			return nil, fmt.Errorf("node group %s has no TinkerbellMachineConfig", g.Name)
		}
		if inv != nil {
			n := 0
			for _, m := range inv.Machines {
				if g.MachineConfig.Matches(m.Labels) {
					n++
				}
			}
			if n < g.Count {
				return nil, fmt.Errorf("node group %s needs %d machines matching %s, Hardware.csv has %d", g.Name, g.Count, g.MachineConfig.SelectorString(), n)
			}
		}
	}
	name, ns := s.Name(), opts.Namespace
	labels := map[string]string{clusterv1.ClusterNameLabel: name}
	meta := func(n string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: n, Namespace: ns, Labels: clone(labels)}
	}
	endpoint := clusterv1.APIEndpoint{Host: cp.Endpoint.Host, Port: APIServerPort}

	cluster := &clusterv1.Cluster{
		ObjectMeta: meta(name),
		Spec: clusterv1.ClusterSpec{
			ClusterNetwork: clusterv1.ClusterNetwork{
				Pods:     clusterv1.NetworkRanges{CIDRBlocks: cs.ClusterNetwork.Pods.CIDRBlocks},
				Services: clusterv1.NetworkRanges{CIDRBlocks: cs.ClusterNetwork.Services.CIDRBlocks},
			},
			ControlPlaneEndpoint: endpoint,
			ControlPlaneRef:      ref(controlplanev1.GroupVersion.Group, "KubeadmControlPlane", name),
			InfrastructureRef:    ref(infrav1.GroupVersion.Group, "TinkerbellCluster", name),
		},
	}
	tinkCluster := &infrav1.TinkerbellCluster{
		ObjectMeta: meta(name),
		Spec: infrav1.TinkerbellClusterSpec{
			ControlPlaneEndpoint: infrav1.APIEndpoint{Host: cp.Endpoint.Host, Port: APIServerPort},
		},
	}
	objs := []client.Object{cluster, tinkCluster}

	cpGroup := groups[0]
	cpTemplateName := name + "-control-plane"
	cpTMT, err := machineTemplate(s, cpGroup, meta(cpTemplateName), opts)
	if err != nil {
		return nil, err
	}
	kcpSpec := kubeadmConfig(s, cpGroup, opts)
	kcpSpec.ClusterConfiguration = bootstrapv1.ClusterConfiguration{
		APIServer: bootstrapv1.APIServer{
			CertSANs:  append([]string{cp.Endpoint.Host}, cp.CertSANs...),
			ExtraArgs: args(cp.APIServerExtraArgs),
		},
	}
	kcpSpec.InitConfiguration = bootstrapv1.InitConfiguration{NodeRegistration: nodeRegistration(cpGroup)}
	kcpSpec.Files = append(kcpSpec.Files, bootstrapv1.File{
		Path: "/etc/kubernetes/manifests/kube-vip.yaml", Owner: "root:root", Permissions: "0644",
		Content: kubeVIPManifest(opts.KubeVIPImage, cp.Endpoint.Host),
	})
	// kube-vip needs API access before kubeadm init has granted admin.conf
	// its RBAC binding: use super-admin.conf on the first node during init.
	kcpSpec.PreKubeadmCommands = append(kcpSpec.PreKubeadmCommands,
		"if [ -f /run/kubeadm/kubeadm.yaml ]; then sed -i 's#path: /etc/kubernetes/admin.conf#path: /etc/kubernetes/super-admin.conf#' /etc/kubernetes/manifests/kube-vip.yaml; fi")
	kcpSpec.PostKubeadmCommands = append(kcpSpec.PostKubeadmCommands,
		"if [ -f /run/kubeadm/kubeadm.yaml ]; then sed -i 's#path: /etc/kubernetes/super-admin.conf#path: /etc/kubernetes/admin.conf#' /etc/kubernetes/manifests/kube-vip.yaml; fi")
	kcp := &controlplanev1.KubeadmControlPlane{
		ObjectMeta: meta(name),
		Spec: controlplanev1.KubeadmControlPlaneSpec{
			Replicas: ptr.To(int32(cp.Count)),
			Version:  version,
			MachineTemplate: controlplanev1.KubeadmControlPlaneMachineTemplate{Spec: controlplanev1.KubeadmControlPlaneMachineTemplateSpec{
				InfrastructureRef: ref(infrav1.GroupVersion.Group, "TinkerbellMachineTemplate", cpTemplateName),
			}},
			KubeadmConfigSpec: kcpSpec,
		},
	}
	if ru := cp.UpgradeRolloutStrategy; ru != nil && ru.RollingUpdate != nil {
		kcp.Spec.Rollout.Strategy = controlplanev1.KubeadmControlPlaneRolloutStrategy{
			Type:          controlplanev1.RollingUpdateStrategyType,
			RollingUpdate: controlplanev1.KubeadmControlPlaneRolloutStrategyRollingUpdate{MaxSurge: ptr.To(intstr.FromInt(ru.RollingUpdate.MaxSurge))},
		}
	}
	objs = append(objs, kcp, cpTMT)

	for i, g := range groups[1:] {
		w := cs.WorkerNodeGroupConfigurations[i]
		mdName := name + "-" + g.Name
		tmt, err := machineTemplate(s, g, meta(mdName), opts)
		if err != nil {
			return nil, err
		}
		kct := &bootstrapv1.KubeadmConfigTemplate{
			ObjectMeta: meta(mdName),
			Spec:       bootstrapv1.KubeadmConfigTemplateSpec{Template: bootstrapv1.KubeadmConfigTemplateResource{Spec: kubeadmConfig(s, g, opts)}},
		}
		mdLabels := clone(labels)
		mdLabels[clusterv1.MachineDeploymentNameLabel] = mdName
		wversion := version
		if w.KubernetesVersion != "" {
			if wversion, err = KubernetesVersion(w.KubernetesVersion); err != nil {
				return nil, fmt.Errorf("worker group %s: %w", g.Name, err)
			}
		}
		md := &clusterv1.MachineDeployment{
			ObjectMeta: meta(mdName),
			Spec: clusterv1.MachineDeploymentSpec{
				ClusterName: name,
				Replicas:    ptr.To(int32(g.Count)),
				Selector:    metav1.LabelSelector{MatchLabels: mdLabels},
				Template: clusterv1.MachineTemplateSpec{
					ObjectMeta: clusterv1.ObjectMeta{Labels: mdLabels},
					Spec: clusterv1.MachineSpec{
						ClusterName:       name,
						Version:           wversion,
						Bootstrap:         clusterv1.Bootstrap{ConfigRef: ref(bootstrapv1.GroupVersion.Group, "KubeadmConfigTemplate", mdName)},
						InfrastructureRef: ref(infrav1.GroupVersion.Group, "TinkerbellMachineTemplate", mdName),
					},
				},
			},
		}
		if a := w.AutoScalingConfiguration; a != nil {
			md.Annotations = map[string]string{
				"cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size": strconv.Itoa(a.MinCount),
				"cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size": strconv.Itoa(a.MaxCount),
			}
		}
		if ru := w.UpgradeRolloutStrategy; ru != nil && ru.RollingUpdate != nil {
			md.Spec.Rollout.Strategy = clusterv1.MachineDeploymentRolloutStrategy{
				Type: clusterv1.RollingUpdateMachineDeploymentStrategyType,
				RollingUpdate: clusterv1.MachineDeploymentRolloutStrategyRollingUpdate{
					MaxSurge:       ptr.To(intstr.FromInt(ru.RollingUpdate.MaxSurge)),
					MaxUnavailable: ptr.To(intstr.FromInt(ru.RollingUpdate.MaxUnavailable)),
				},
			}
		}
		objs = append(objs, kct, tmt, md)
	}
	return objs, nil
}

func ref(group, kind, name string) clusterv1.ContractVersionedObjectReference {
	return clusterv1.ContractVersionedObjectReference{APIGroup: group, Kind: kind, Name: name}
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// args turns a flag map into kubeadm's sorted argument list.
func args(m map[string]string) []bootstrapv1.Arg {
	var out []bootstrapv1.Arg
	for _, k := range slices.Sorted(mapsKeys(m)) {
		out = append(out, bootstrapv1.Arg{Name: k, Value: ptr.To(m[k])})
	}
	return out
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// nodeRegistration carries the group's taints and labels to kubelet and
// lets the provider substitute the provider ID.
func nodeRegistration(g spec.NodeGroup) bootstrapv1.NodeRegistrationOptions {
	nr := bootstrapv1.NodeRegistrationOptions{
		KubeletExtraArgs: []bootstrapv1.Arg{{Name: "provider-id", Value: ptr.To("PROVIDER_ID")}},
	}
	if len(g.Labels) > 0 {
		var pairs []string
		for _, k := range slices.Sorted(mapsKeys(g.Labels)) {
			pairs = append(pairs, k+"="+g.Labels[k])
		}
		nr.KubeletExtraArgs = append(nr.KubeletExtraArgs, bootstrapv1.Arg{Name: "node-labels", Value: ptr.To(strings.Join(pairs, ","))})
	}
	// No taints in the spec: kubeadm's defaults (control-plane taint on
	// control-plane nodes). An explicit empty list removes them.
	if g.Taints != nil {
		taints := []corev1.Taint{}
		for _, t := range g.Taints {
			taints = append(taints, corev1.Taint{Key: t.Key, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
		}
		nr.Taints = &taints
	}
	return nr
}

// kubeadmConfig is what every node of group g gets: users, NTP, mirror
// configuration and the join configuration.
func kubeadmConfig(s *spec.ClusterSpec, g spec.NodeGroup, _ Options) bootstrapv1.KubeadmConfigSpec {
	kc := bootstrapv1.KubeadmConfigSpec{
		Format:            bootstrapv1.CloudConfig,
		JoinConfiguration: bootstrapv1.JoinConfiguration{NodeRegistration: nodeRegistration(g)},
	}
	for _, u := range g.MachineConfig.Spec.Users {
		kc.Users = append(kc.Users, bootstrapv1.User{Name: u.Name, SSHAuthorizedKeys: u.SSHAuthorizedKeys, Sudo: "ALL=(ALL) NOPASSWD:ALL"})
	}
	if h := g.MachineConfig.Spec.HostOSConfiguration; h != nil {
		if h.NTPConfiguration != nil && len(h.NTPConfiguration.Servers) > 0 {
			kc.NTP = bootstrapv1.NTP{Enabled: ptr.To(true), Servers: h.NTPConfiguration.Servers}
		}
		for _, b := range h.CertBundles {
			kc.Files = append(kc.Files, bootstrapv1.File{Path: "/usr/local/share/ca-certificates/" + b.Name + ".crt", Owner: "root:root", Permissions: "0644", Content: b.Data})
		}
		if len(h.CertBundles) > 0 {
			kc.PreKubeadmCommands = append(kc.PreKubeadmCommands, "update-ca-certificates")
		}
	}
	if m := s.Cluster.Spec.RegistryMirrorConfiguration; m != nil && m.Endpoint != "" {
		kc.Files = append(kc.Files, mirrorFiles(m)...)
		kc.PreKubeadmCommands = append(kc.PreKubeadmCommands, "systemctl restart containerd")
	}
	if p := s.Cluster.Spec.ProxyConfiguration; p != nil && (p.HTTPProxy != "" || p.HTTPSProxy != "") {
		noProxy := append(append([]string{}, p.NoProxy...), s.Cluster.Spec.ClusterNetwork.Pods.CIDRBlocks...)
		noProxy = append(noProxy, s.Cluster.Spec.ClusterNetwork.Services.CIDRBlocks...)
		noProxy = append(noProxy, s.Cluster.Spec.ControlPlaneConfiguration.Endpoint.Host, "localhost", "127.0.0.1", ".svc")
		kc.Files = append(kc.Files, bootstrapv1.File{
			Path: "/etc/systemd/system/containerd.service.d/http-proxy.conf", Owner: "root:root", Permissions: "0644",
			Content: fmt.Sprintf("[Service]\nEnvironment=\"HTTP_PROXY=%s\"\nEnvironment=\"HTTPS_PROXY=%s\"\nEnvironment=\"NO_PROXY=%s\"\n", p.HTTPProxy, p.HTTPSProxy, strings.Join(noProxy, ",")),
		})
	}
	return kc
}

// mirrorFiles writes containerd hosts.toml files that send pulls of every
// mirrored registry to the mirror, plus the mirror's CA.
func mirrorFiles(m *spec.RegistryMirrorConfiguration) []bootstrapv1.File {
	host := m.Endpoint
	if m.Port != "" {
		host += ":" + m.Port
	}
	var files []bootstrapv1.File
	trust := ""
	switch {
	case m.CACertContent != "":
		files = append(files, bootstrapv1.File{Path: "/etc/containerd/certs.d/" + host + "/ca.crt", Owner: "root:root", Permissions: "0644", Content: m.CACertContent})
		trust = fmt.Sprintf("  ca = %q\n", "/etc/containerd/certs.d/"+host+"/ca.crt")
	case m.InsecureSkipVerify:
		trust = "  skip_verify = true\n"
	}
	namespaces := m.OCINamespaces
	if len(namespaces) == 0 {
		namespaces = []spec.OCINamespace{{Registry: "docker.io"}, {Registry: "public.ecr.aws"}, {Registry: "registry.k8s.io"}, {Registry: "ghcr.io"}, {Registry: "quay.io"}}
	}
	for _, n := range namespaces {
		server := "https://" + n.Registry
		if n.Registry == "docker.io" {
			server = "https://registry-1.docker.io"
		}
		mirror := "https://" + host
		if n.Namespace != "" {
			mirror += "/v2/" + strings.Trim(n.Namespace, "/")
		}
		var b strings.Builder
		fmt.Fprintf(&b, "server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", server, mirror)
		if n.Namespace != "" {
			b.WriteString("  override_path = true\n")
		}
		b.WriteString(trust)
		files = append(files, bootstrapv1.File{Path: "/etc/containerd/certs.d/" + n.Registry + "/hosts.toml", Owner: "root:root", Permissions: "0644", Content: b.String()})
	}
	return files
}

// Marshal renders objects as a multi-document YAML stream with apiVersion
// and kind set and server-side fields (status, creationTimestamp) dropped.
func Marshal(objs []client.Object) ([]byte, error) {
	scheme, err := crds.Scheme()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for i, o := range objs {
		gvk, err := apiutil.GVKForObject(o, scheme)
		if err != nil {
			return nil, err
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, err
		}
		u["apiVersion"], u["kind"] = gvk.GroupVersion().String(), gvk.Kind
		delete(u, "status")
		if md, ok := u["metadata"].(map[string]any); ok {
			delete(md, "creationTimestamp")
		}
		data, err := yaml.Marshal(u)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(data)
	}
	return out.Bytes(), nil
}
