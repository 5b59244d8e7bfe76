package spec

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kiln-dev/kiln/pkg/diag"
)

var (
	clusterNameRE       = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	kubernetesVersionRE = regexp.MustCompile(`^1\.[0-9]+$`)
	userNameRE          = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
)

// maxClusterNameLength keeps derived object names (Machine, MachineDeployment,
// Secret names prefixed with the cluster name) within Kubernetes limits.
const maxClusterNameLength = 35

// checker collects the problems of a whole spec.
type checker struct {
	s        *ClusterSpec
	problems diag.List
}

func (c *checker) add(sev diag.Severity, doc *document, path, format string, args ...any) {
	p := diag.Problem{Severity: sev, File: c.s.Path, Message: fmt.Sprintf(format, args...), Field: path}
	if doc != nil {
		for q := path; q != ""; q = parentPath(q) {
			if doc.badPaths[q] {
				return // already reported as a decoding problem
			}
		}
		p.Document = doc.label()
		p.Line = doc.lineOf(path)
	}
	c.problems = append(c.problems, p)
}

func (c *checker) errorf(doc *document, path, format string, args ...any) {
	c.add(diag.SeverityError, doc, path, format, args...)
}

func (c *checker) warnf(doc *document, path, format string, args ...any) {
	c.add(diag.SeverityWarning, doc, path, format, args...)
}

// check runs every static check on a decoded, defaulted spec.
func (s *ClusterSpec) check() diag.List {
	c := &checker{s: s}
	c.documents()
	var cluster *document
	for _, d := range s.docs {
		switch o := d.obj.(type) {
		case *Cluster:
			if cluster == nil {
				cluster = d
			}
		case *TinkerbellMachineConfig:
			c.machineConfig(d, o)
		case *TinkerbellTemplateConfig:
			c.templateConfig(d, o)
		}
	}
	if cluster == nil {
		c.errorf(nil, "", "no Cluster document: a ClusterSpec needs one kind: Cluster document (see `kiln generate clusterconfig NAME`)")
		return c.problems
	}
	c.cluster(cluster, s.Cluster)
	return c.problems
}

// documents checks names and that each kind/name pair appears once.
func (c *checker) documents() {
	seen := map[string]*document{}
	count := map[string]int{}
	for _, d := range c.s.docs {
		count[d.kind]++
		if d.kind == KindCluster && count[d.kind] > 1 {
			c.errorf(d, "kind", "a ClusterSpec holds exactly one Cluster; this is Cluster number %d", count[d.kind])
		}
		if d.kind == KindTinkerbellDatacenterConfig && count[d.kind] > 1 {
			c.errorf(d, "kind", "a ClusterSpec holds exactly one TinkerbellDatacenterConfig; this is number %d", count[d.kind])
		}
		if d.name == "" {
			c.errorf(d, "metadata.name", "metadata.name is required")
			continue
		}
		if d.kind != KindCluster {
			if errs := validation.IsDNS1123Subdomain(d.name); len(errs) > 0 {
				c.errorf(d, "metadata.name", "%q is not a valid name: %s", d.name, strings.Join(errs, "; "))
			}
		}
		key := d.kind + "/" + d.name
		if first, dup := seen[key]; dup {
			c.errorf(d, "metadata.name", "%s is defined twice (first on line %d): rename one of them", key, first.line)
			continue
		}
		seen[key] = d
	}
}

// doc finds the document of a kind and name.
func (c *checker) doc(kind, name string) *document {
	for _, d := range c.s.docs {
		if d.kind == kind && d.name == name {
			return d
		}
	}
	return nil
}

// ref checks that a reference names an existing document of the wanted kind.
func (c *checker) ref(from *document, path string, r *Ref, want string) *document {
	if r == nil || (r.Kind == "" && r.Name == "") {
		c.errorf(from, path, "%s is required: {kind: %s, name: <name>}", lastSegment(path), want)
		return nil
	}
	if r.Kind != want {
		c.errorf(from, path+".kind", "kind must be %s, not %q", want, r.Kind)
		return nil
	}
	if r.Name == "" {
		c.errorf(from, path+".name", "name is required: the name of a %s document in this file", want)
		return nil
	}
	target := c.doc(want, r.Name)
	if target == nil {
		c.errorf(from, path+".name", "%s/%s is not defined in this file%s", want, r.Name, c.available(want))
	}
	return target
}

func (c *checker) available(kind string) string {
	var names []string
	for _, d := range c.s.docs {
		if d.kind == kind && d.name != "" {
			names = append(names, d.name)
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf(" (the file has no %s)", kind)
	}
	return fmt.Sprintf(" (defined: %s)", strings.Join(names, ", "))
}

func lastSegment(path string) string {
	if i := strings.LastIndex(path, "."); i >= 0 {
		return path[i+1:]
	}
	return path
}

func (c *checker) cluster(d *document, cl *Cluster) {
	sp := &cl.Spec
	if n := cl.Metadata.Name; n != "" && (!clusterNameRE.MatchString(n) || len(n) > maxClusterNameLength) {
		c.errorf(d, "metadata.name", "cluster name %q must be at most %d characters of lower-case letters, digits and '-', start with a letter and end with a letter or digit", n, maxClusterNameLength)
	}
	if sp.KubernetesVersion == "" {
		c.errorf(d, "spec.kubernetesVersion", "kubernetesVersion is required, e.g. \"1.33\"")
	} else if !kubernetesVersionRE.MatchString(sp.KubernetesVersion) {
		c.errorf(d, "spec.kubernetesVersion", "kubernetesVersion %q must be a Kubernetes minor version such as \"1.33\"", sp.KubernetesVersion)
	}

	// Control plane.
	cp := &sp.ControlPlaneConfiguration
	const cpPath = "spec.controlPlaneConfiguration"
	switch {
	case cp.Count < 1:
		c.errorf(d, cpPath+".count", "control-plane count must be positive, not %d", cp.Count)
	case cp.Count%2 == 0:
		c.errorf(d, cpPath+".count", "control-plane count must be odd (1, 3, 5) so stacked etcd keeps quorum, not %d", cp.Count)
	}
	var endpoint netip.Addr
	if cp.Endpoint == nil || cp.Endpoint.Host == "" {
		c.errorf(d, cpPath+".endpoint.host", "endpoint.host is required: an unused IP address on the machines' network for the Kubernetes API")
	} else if a, err := netip.ParseAddr(cp.Endpoint.Host); err != nil || !a.Is4() {
		c.errorf(d, cpPath+".endpoint.host", "endpoint.host %q must be an IPv4 address without a port (the API is served on 6443)", cp.Endpoint.Host)
	} else {
		endpoint = a
	}
	cpMC := c.ref(d, cpPath+".machineGroupRef", cp.MachineGroupRef, KindTinkerbellMachineConfig)
	c.taints(d, cpPath+".taints", cp.Taints)
	c.labels(d, cpPath+".labels", cp.Labels)
	c.machineHealthCheck(d, cpPath+".machineHealthCheck", cp.MachineHealthCheck)

	// Workers.
	names := map[string]int{}
	untaintedWorkers := false
	for i := range sp.WorkerNodeGroupConfigurations {
		w := &sp.WorkerNodeGroupConfigurations[i]
		p := workerPath(i)
		switch {
		case w.Name == "":
			c.errorf(d, p+".name", "worker group name is required")
		case len(validation.IsDNS1123Label(w.Name)) > 0:
			c.errorf(d, p+".name", "worker group name %q must be lower-case letters, digits and '-' (a DNS label)", w.Name)
		}
		if first, dup := names[w.Name]; dup && w.Name != "" {
			c.errorf(d, p+".name", "worker group name %q is already used by workerNodeGroupConfigurations[%d]: names must be unique", w.Name, first)
		} else {
			names[w.Name] = i
		}
		if w.Count < 0 {
			c.errorf(d, p+".count", "count must be zero or more, not %d", w.Count)
		}
		if a := w.AutoScalingConfiguration; a != nil {
			if a.MinCount < 0 || a.MaxCount < a.MinCount {
				c.errorf(d, p+".autoscalingConfiguration", "minCount (%d) must be zero or more and at most maxCount (%d)", a.MinCount, a.MaxCount)
			} else if w.Count < a.MinCount || w.Count > a.MaxCount {
				c.errorf(d, p+".count", "count %d must be between autoscalingConfiguration.minCount %d and maxCount %d", w.Count, a.MinCount, a.MaxCount)
			}
		}
		if w.KubernetesVersion != "" && w.KubernetesVersion != sp.KubernetesVersion {
			c.errorf(d, p+".kubernetesVersion", "kiln creates every node at the cluster's kubernetesVersion %q; remove this override (%q)", sp.KubernetesVersion, w.KubernetesVersion)
		}
		mc := c.ref(d, p+".machineGroupRef", w.MachineGroupRef, KindTinkerbellMachineConfig)
		if mc != nil && cpMC != nil && mc == cpMC {
			c.errorf(d, p+".machineGroupRef.name", "worker group %q uses TinkerbellMachineConfig/%s, which the control plane uses too: give the control plane its own machine config and hardware selector", w.Name, mc.name)
		}
		c.taints(d, p+".taints", w.Taints)
		c.labels(d, p+".labels", w.Labels)
		c.machineHealthCheck(d, p+".machineHealthCheck", w.MachineHealthCheck)
		if !hasNoScheduleTaint(w.Taints) {
			untaintedWorkers = true
		}
	}
	if len(sp.WorkerNodeGroupConfigurations) == 0 && hasNoScheduleTaint(cp.Taints) {
		c.errorf(d, cpPath+".taints", "the control plane cannot have NoSchedule/NoExecute taints when the cluster has no worker groups: nothing could run")
	}
	if len(sp.WorkerNodeGroupConfigurations) > 0 && !untaintedWorkers {
		c.errorf(d, "spec.workerNodeGroupConfigurations", "at least one worker group must have no NoSchedule/NoExecute taint, or cluster add-ons cannot be scheduled")
	}

	// Datacenter.
	dc := c.ref(d, "spec.datacenterRef", &sp.DatacenterRef, KindTinkerbellDatacenterConfig)
	if dc != nil {
		c.datacenter(dc, dc.obj.(*TinkerbellDatacenterConfig), endpoint, d)
	}

	// Network.
	pods := c.cidr(d, "spec.clusterNetwork.pods.cidrBlocks", "pod", sp.ClusterNetwork.Pods.CIDRBlocks)
	services := c.cidr(d, "spec.clusterNetwork.services.cidrBlocks", "service", sp.ClusterNetwork.Services.CIDRBlocks)
	if pods.IsValid() && services.IsValid() && pods.Overlaps(services) {
		c.errorf(d, "spec.clusterNetwork.services.cidrBlocks", "service CIDR %s overlaps pod CIDR %s: pick ranges that do not overlap", services, pods)
	}
	if endpoint.IsValid() {
		for _, p := range []struct {
			what   string
			prefix netip.Prefix
		}{{"pod", pods}, {"service", services}} {
			if p.prefix.IsValid() && p.prefix.Contains(endpoint) {
				c.errorf(d, cpPath+".endpoint.host", "endpoint.host %s is inside the %s CIDR %s: use an address on the machines' network", endpoint, p.what, p.prefix)
			}
		}
	}
	if cni := sp.ClusterNetwork.CNIConfig; cni != nil && cni.Cilium != nil && cni.Kindnetd != nil {
		c.errorf(d, "spec.clusterNetwork.cniConfig", "choose one CNI: cilium or kindnetd, not both")
	}
	if sp.ClusterNetwork.CNI != "" {
		c.errorf(d, "spec.clusterNetwork.cni", "cni %q is not supported: use cniConfig: {cilium: {}} or {kindnetd: {}}", sp.ClusterNetwork.CNI)
	}
	if n := sp.ClusterNetwork.Nodes; n != nil && n.CIDRMaskSize != nil && pods.IsValid() && (*n.CIDRMaskSize < pods.Bits() || *n.CIDRMaskSize > 30) {
		c.errorf(d, "spec.clusterNetwork.nodes.cidrMaskSize", "cidrMaskSize %d must be between the pod CIDR's /%d and /30", *n.CIDRMaskSize, pods.Bits())
	}

	// Everything else.
	if mgmt := sp.ManagementCluster.Name; mgmt != cl.Metadata.Name {
		c.errorf(d, "spec.managementCluster.name", "kiln creates self-managed clusters: managementCluster.name must be the cluster's own name %q (or be left out), not %q", cl.Metadata.Name, mgmt)
	}
	if sp.ExternalEtcdConfiguration != nil {
		c.errorf(d, "spec.externalEtcdConfiguration", "external etcd is not supported on bare metal: remove externalEtcdConfiguration (etcd runs stacked on the control-plane machines)")
	}
	if r := sp.RegistryMirrorConfiguration; r != nil {
		const rp = "spec.registryMirrorConfiguration"
		if r.Endpoint == "" {
			c.errorf(d, rp+".endpoint", "endpoint is required when registryMirrorConfiguration is set: the mirror's host name or IP")
		} else if strings.Contains(r.Endpoint, "/") || strings.Contains(r.Endpoint, ":") && net.ParseIP(r.Endpoint) == nil {
			c.errorf(d, rp+".endpoint", "endpoint %q must be a host name or IP without scheme, port or path (the port goes in port)", r.Endpoint)
		}
		if r.Port != "" && !validPort(r.Port) {
			c.errorf(d, rp+".port", "port %q must be a number from 1 to 65535", r.Port)
		}
	}
	if p := sp.ProxyConfiguration; p != nil {
		for _, f := range []struct{ path, value string }{{"httpProxy", p.HTTPProxy}, {"httpsProxy", p.HTTPSProxy}} {
			if f.value == "" {
				c.errorf(d, "spec.proxyConfiguration."+f.path, "%s is required when proxyConfiguration is set", f.path)
			}
		}
	}
	c.machineHealthCheck(d, "spec.machineHealthCheck", sp.MachineHealthCheck)

	// Machine configs the cluster does not use.
	used := map[string]bool{}
	if cp.MachineGroupRef != nil {
		used[cp.MachineGroupRef.Name] = true
	}
	for _, w := range sp.WorkerNodeGroupConfigurations {
		if w.MachineGroupRef != nil {
			used[w.MachineGroupRef.Name] = true
		}
	}
	usedTemplates := map[string]bool{}
	for _, doc := range c.s.docs {
		if mc, ok := doc.obj.(*TinkerbellMachineConfig); ok {
			if !used[doc.name] && doc.name != "" {
				c.warnf(doc, "metadata.name", "no node group uses this machine config; it is ignored")
			}
			usedTemplates[mc.Spec.TemplateRef.Name] = true
		}
	}
	for _, doc := range c.s.docs {
		if _, ok := doc.obj.(*TinkerbellTemplateConfig); ok && doc.name != "" && !usedTemplates[doc.name] {
			c.warnf(doc, "metadata.name", "no machine config references this template (templateRef); it is ignored")
		}
	}
}

func (c *checker) datacenter(d *document, dc *TinkerbellDatacenterConfig, endpoint netip.Addr, cluster *document) {
	const p = "spec"
	if dc.Spec.TinkerbellIP == "" {
		c.errorf(d, p+".tinkerbellIP", "tinkerbellIP is required: an unused IP address on the machines' network where the provisioning services stay reachable after the move")
	} else if a, err := netip.ParseAddr(dc.Spec.TinkerbellIP); err != nil || !a.Is4() {
		c.errorf(d, p+".tinkerbellIP", "tinkerbellIP %q must be an IPv4 address", dc.Spec.TinkerbellIP)
	} else if endpoint.IsValid() && a == endpoint {
		c.errorf(d, p+".tinkerbellIP", "tinkerbellIP %s is the same address as the Cluster's controlPlaneConfiguration.endpoint.host (line %d): they need two different addresses", a, cluster.lineOf("spec.controlPlaneConfiguration.endpoint.host"))
	}
	if dc.Spec.OSImageURL != "" {
		if msg := checkHTTPURL(dc.Spec.OSImageURL); msg != "" {
			c.errorf(d, p+".osImageURL", "osImageURL %s", msg)
		}
	}
	if dc.Spec.HookImagesURLPath != "" {
		if msg := checkHTTPURL(dc.Spec.HookImagesURLPath); msg != "" {
			c.errorf(d, p+".hookImagesURLPath", "hookImagesURLPath %s", msg)
		}
	}
	if dc.Spec.HookIsoURL != "" && !dc.Spec.IsoBoot {
		c.errorf(d, p+".hookIsoURL", "hookIsoURL can only be set together with isoBoot: true")
	}
	if dc.Spec.IsoBoot {
		c.errorf(d, p+".isoBoot", "isoBoot is not supported by kiln: machines network-boot over iPXE; remove isoBoot")
	}
}

func (c *checker) machineConfig(d *document, mc *TinkerbellMachineConfig) {
	sp := &mc.Spec
	hasSelector := len(sp.HardwareSelector) > 0
	hasAffinity := sp.HardwareAffinity != nil && (len(sp.HardwareAffinity.Required) > 0 || len(sp.HardwareAffinity.Preferred) > 0)
	switch {
	case hasSelector && hasAffinity:
		c.errorf(d, "spec.hardwareAffinity", "set either hardwareSelector or hardwareAffinity, not both")
	case !hasSelector && !hasAffinity:
		c.errorf(d, "spec.hardwareSelector", "either hardwareSelector or hardwareAffinity must be specified (e.g. hardwareSelector: {type: cp}) to pick machines from Hardware.csv")
	}
	if hasSelector {
		c.labels(d, "spec.hardwareSelector", sp.HardwareSelector)
	}
	if a := sp.HardwareAffinity; hasAffinity {
		if len(a.Required) == 0 {
			c.errorf(d, "spec.hardwareAffinity.required", "hardwareAffinity needs at least one required term: preferred terms only rank machines")
		}
		for i, t := range a.Required {
			c.labelSelector(d, fmt.Sprintf("spec.hardwareAffinity.required[%d].labelSelector", i), t.LabelSelector)
		}
		for i, t := range a.Preferred {
			p := fmt.Sprintf("spec.hardwareAffinity.preferred[%d]", i)
			if t.Weight < 1 || t.Weight > 100 {
				c.errorf(d, p+".weight", "weight must be from 1 to 100, not %d", t.Weight)
			}
			c.labelSelector(d, p+".hardwareAffinityTerm.labelSelector", t.HardwareAffinityTerm.LabelSelector)
		}
	}

	switch sp.OSFamily {
	case OSFamilyUbuntu:
	case "":
		c.errorf(d, "spec.osFamily", "osFamily is required: ubuntu")
	case "bottlerocket", "redhat":
		c.errorf(d, "spec.osFamily", "osFamily %s is not supported by kiln: kiln provisions Ubuntu images only; set osFamily: ubuntu and point osImageURL at an Ubuntu raw image", sp.OSFamily)
	default:
		c.errorf(d, "spec.osFamily", "osFamily %q is unknown: kiln provisions osFamily ubuntu", sp.OSFamily)
	}

	dcURL := ""
	if c.s.Datacenter != nil {
		dcURL = c.s.Datacenter.Spec.OSImageURL
	}
	switch {
	case sp.OSImageURL != "" && dcURL != "":
		c.errorf(d, "spec.osImageURL", "osImageURL is set both here and on the TinkerbellDatacenterConfig: set it in one place")
	case sp.OSImageURL != "":
		if msg := checkHTTPURL(sp.OSImageURL); msg != "" {
			c.errorf(d, "spec.osImageURL", "osImageURL %s", msg)
		}
	case dcURL == "" && c.s.Datacenter != nil: // without a datacenter document, its missing reference is the error
		c.errorf(d, "spec.osImageURL", "no OS image: set osImageURL (an http(s) URL of a gzip-compressed raw Ubuntu image) on the TinkerbellDatacenterConfig or on this machine config")
	}
	if url := c.s.OSImageURL(mc); url != "" && c.s.Cluster != nil && kubernetesVersionRE.MatchString(c.s.Cluster.Spec.KubernetesVersion) {
		if !versionInURL(url, c.s.Cluster.Spec.KubernetesVersion) {
			c.warnf(d, "spec.osImageURL", "osImageURL %s does not mention Kubernetes %s (as 1.33, 1-33, 1_33 or 133): make sure the image matches the cluster's version", url, c.s.Cluster.Spec.KubernetesVersion)
		}
	}

	if len(sp.Users) == 0 {
		c.errorf(d, "spec.users", "users is required: at least one user with an SSH key, e.g. users: [{name: ec2-user, sshAuthorizedKeys: [\"ssh-ed25519 AAAA... you@host\"]}]")
	}
	for i, u := range sp.Users {
		p := fmt.Sprintf("spec.users[%d]", i)
		if u.Name == "" {
			c.errorf(d, p+".name", "user name is required")
		} else if !userNameRE.MatchString(u.Name) || len(u.Name) > 32 {
			c.errorf(d, p+".name", "user name %q must be a Linux user name (lower-case letters, digits, '_' and '-', at most 32 characters)", u.Name)
		}
		if len(u.SSHAuthorizedKeys) == 0 {
			c.errorf(d, p+".sshAuthorizedKeys", "user %s needs at least one SSH public key in sshAuthorizedKeys", u.Name)
		}
		for j, k := range u.SSHAuthorizedKeys {
			if msg := checkSSHKey(k); msg != "" {
				c.errorf(d, fmt.Sprintf("%s.sshAuthorizedKeys[%d]", p, j), "%s", msg)
			}
		}
	}

	if r := sp.TemplateRef; r.Kind != "" || r.Name != "" {
		c.ref(d, "spec.templateRef", &r, KindTinkerbellTemplateConfig)
	}
	if h := sp.HostOSConfiguration; h != nil {
		if h.NTPConfiguration != nil {
			if len(h.NTPConfiguration.Servers) == 0 {
				c.errorf(d, "spec.hostOSConfiguration.ntpConfiguration.servers", "servers must list at least one NTP server when ntpConfiguration is set")
			}
			for i, s := range h.NTPConfiguration.Servers {
				if strings.TrimSpace(s) == "" {
					c.errorf(d, fmt.Sprintf("spec.hostOSConfiguration.ntpConfiguration.servers[%d]", i), "NTP server is empty")
				}
			}
		}
		for i, b := range h.CertBundles {
			if b.Name == "" || b.Data == "" {
				c.errorf(d, fmt.Sprintf("spec.hostOSConfiguration.certBundles[%d]", i), "a cert bundle needs a name and PEM data")
			}
		}
		if h.BottlerocketConfiguration != nil {
			c.errorf(d, "spec.hostOSConfiguration.bottlerocketConfiguration", "bottlerocketConfiguration does not apply: kiln provisions Ubuntu")
		}
	}
}

// templateConfig checks the workflow template's structure: what the workflow
// engine needs before it renders the template per machine.
func (c *checker) templateConfig(d *document, tc *TinkerbellTemplateConfig) {
	t := &tc.Spec.Template
	const p = "spec.template"
	if t.Version == "" {
		c.errorf(d, p+".version", "version is required (\"0.1\")")
	}
	if t.Name == "" {
		c.errorf(d, p+".name", "name is required")
	}
	if t.GlobalTimeout <= 0 {
		c.errorf(d, p+".global_timeout", "global_timeout is required: the workflow's time limit in seconds, e.g. 6000")
	}
	if len(t.Tasks) == 0 {
		c.errorf(d, p+".tasks", "tasks is required: at least one task with actions")
	}
	taskNames := map[string]bool{}
	for i, task := range t.Tasks {
		tp := fmt.Sprintf("%s.tasks[%d]", p, i)
		if task.Name == "" {
			c.errorf(d, tp+".name", "task name is required")
		} else if taskNames[task.Name] {
			c.errorf(d, tp+".name", "task name %q is used twice", task.Name)
		}
		taskNames[task.Name] = true
		if task.Worker == "" {
			c.errorf(d, tp+".worker", "worker is required: the machine that runs the task, usually \"{{.device_1}}\"")
		}
		if len(task.Actions) == 0 {
			c.errorf(d, tp+".actions", "task %q has no actions", task.Name)
		}
		actionNames := map[string]bool{}
		for j, a := range task.Actions {
			ap := fmt.Sprintf("%s.actions[%d]", tp, j)
			if a.Name == "" {
				c.errorf(d, ap+".name", "action name is required")
			} else if actionNames[a.Name] {
				c.errorf(d, ap+".name", "action name %q is used twice in task %q", a.Name, task.Name)
			}
			actionNames[a.Name] = true
			if a.Image == "" {
				c.errorf(d, ap+".image", "action %q needs an image", a.Name)
			}
			if a.Timeout < 0 {
				c.errorf(d, ap+".timeout", "timeout must be zero (no limit) or a number of seconds, not %d", a.Timeout)
			}
			if a.Pid != "" && a.Pid != "host" {
				c.errorf(d, ap+".pid", "pid may only be \"host\", not %q", a.Pid)
			}
		}
	}
}

func (c *checker) cidr(d *document, path, what string, blocks []string) netip.Prefix {
	if len(blocks) != 1 {
		c.errorf(d, path, "exactly one %s CIDR block is required, found %d", what, len(blocks))
		return netip.Prefix{}
	}
	pfx, err := netip.ParsePrefix(blocks[0])
	if err != nil || !pfx.Addr().Is4() {
		c.errorf(d, path+"[0]", "%q is not an IPv4 CIDR block such as %s", blocks[0], map[string]string{"pod": DefaultPodCIDR, "service": DefaultServiceCIDR}[what])
		return netip.Prefix{}
	}
	if pfx.Masked() != pfx {
		c.errorf(d, path+"[0]", "%s has host bits set: did you mean %s?", pfx, pfx.Masked())
		return netip.Prefix{}
	}
	return pfx
}

func (c *checker) taints(d *document, path string, taints []Taint) {
	for i, t := range taints {
		p := fmt.Sprintf("%s[%d]", path, i)
		if t.Key == "" {
			c.errorf(d, p+".key", "taint key is required")
		} else if errs := validation.IsQualifiedName(t.Key); len(errs) > 0 {
			c.errorf(d, p+".key", "taint key %q is invalid: %s", t.Key, strings.Join(errs, "; "))
		}
		switch t.Effect {
		case "NoSchedule", "PreferNoSchedule", "NoExecute":
		default:
			c.errorf(d, p+".effect", "taint effect must be NoSchedule, PreferNoSchedule or NoExecute, not %q", t.Effect)
		}
	}
}

func hasNoScheduleTaint(taints []Taint) bool {
	for _, t := range taints {
		if t.Effect == "NoSchedule" || t.Effect == "NoExecute" {
			return true
		}
	}
	return false
}

func (c *checker) labels(d *document, path string, labels map[string]string) {
	for k, v := range labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			c.errorf(d, path+"."+k, "label key %q is invalid: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			c.errorf(d, path+"."+k, "label value %q is invalid: %s", v, strings.Join(errs, "; "))
		}
	}
}

func (c *checker) labelSelector(d *document, path string, s LabelSelector) {
	if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
		c.errorf(d, path, "labelSelector is empty: it would match every machine")
	}
	c.labels(d, path+".matchLabels", s.MatchLabels)
	for i, e := range s.MatchExpressions {
		p := fmt.Sprintf("%s.matchExpressions[%d]", path, i)
		if errs := validation.IsQualifiedName(e.Key); len(errs) > 0 {
			c.errorf(d, p+".key", "key %q is invalid: %s", e.Key, strings.Join(errs, "; "))
		}
		switch e.Operator {
		case "In", "NotIn":
			if len(e.Values) == 0 {
				c.errorf(d, p+".values", "operator %s needs at least one value", e.Operator)
			}
		case "Exists", "DoesNotExist":
			if len(e.Values) > 0 {
				c.errorf(d, p+".values", "operator %s takes no values", e.Operator)
			}
		default:
			c.errorf(d, p+".operator", "operator must be In, NotIn, Exists or DoesNotExist, not %q", e.Operator)
		}
	}
}

func (c *checker) machineHealthCheck(d *document, path string, m *MachineHealthCheck) {
	if m == nil {
		return
	}
	for _, f := range []struct{ name, value string }{{"nodeStartupTimeout", m.NodeStartupTimeout}, {"unhealthyMachineTimeout", m.UnhealthyMachineTimeout}} {
		if f.value == "" {
			continue
		}
		if dur, err := time.ParseDuration(f.value); err != nil || dur <= 0 {
			c.errorf(d, path+"."+f.name, "%s %q must be a positive duration such as 20m0s", f.name, f.value)
		}
	}
}

// checkHTTPURL returns why s is not an absolute http(s) URL, or "".
func checkHTTPURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Sprintf("%q is not a valid URL: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Sprintf("%q must be an http:// or https:// URL", s)
	}
	if u.Host == "" {
		return fmt.Sprintf("%q has no host", s)
	}
	if h := u.Hostname(); net.ParseIP(h) == nil && len(validation.IsDNS1123Subdomain(strings.ToLower(h))) > 0 {
		return fmt.Sprintf("%q: host %q is neither an IP address nor a DNS name", s, h)
	}
	if p := u.Port(); p != "" && !validPort(p) {
		return fmt.Sprintf("%q: port %q must be a number from 1 to 65535", s, p)
	}
	return ""
}

func validPort(s string) bool {
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || fmt.Sprint(n) != s {
		return false
	}
	return n >= 1 && n <= 65535
}

// versionInURL reports whether the URL names the Kubernetes version with any
// of the separators image builders use.
func versionInURL(u, version string) bool {
	strip := strings.NewReplacer("-", "", ".", "", "_", "")
	return strings.Contains(strip.Replace(u), strip.Replace(version))
}

// checkSSHKey returns why s is not an authorized_keys public key line, or "".
func checkSSHKey(s string) string {
	if strings.TrimSpace(s) == "" {
		return "SSH key is empty"
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s)); err != nil {
		fields := strings.Fields(s)
		if len(fields) >= 2 {
			if _, derr := base64.StdEncoding.DecodeString(fields[1]); derr != nil {
				return fmt.Sprintf("SSH key %q is not a public key: the part after %q is not base64", abbreviate(s), fields[0])
			}
		}
		return fmt.Sprintf("SSH key %q is not an authorized_keys public key line (\"ssh-ed25519 AAAA... comment\"): %v", abbreviate(s), err)
	}
	return ""
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}
