package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/diag"
)

// expectation is one problem an invalid testdata file must produce. Files
// declare them in header comments:
//
//	# want: <field path>: <message substring>   (on the line marked "# <- here")
//	# want@0: <message substring>               (not tied to a line)
type expectation struct {
	line  int
	field string
	text  string
}

func expectations(t *testing.T, data []byte) []expectation {
	t.Helper()
	var marks []int
	for i, l := range strings.Split(string(data), "\n") {
		if strings.HasSuffix(l, "# <- here") {
			marks = append(marks, i+1)
		}
	}
	var located, fileLevel []expectation
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(l, "# want@0: "):
			fileLevel = append(fileLevel, expectation{text: strings.TrimPrefix(l, "# want@0: ")})
		case strings.HasPrefix(l, "# want: "):
			rest := strings.TrimPrefix(l, "# want: ")
			e := expectation{text: rest}
			if field, msg, ok := strings.Cut(rest, ": "); ok && !strings.Contains(field, " ") {
				e.field, e.text = field, msg
			}
			located = append(located, e)
		}
	}
	if len(marks) != len(located) {
		t.Fatalf("testdata declares %d located problems but marks %d lines", len(located), len(marks))
	}
	for i := range located {
		located[i].line = marks[i]
	}
	return append(fileLevel, located...)
}

func TestLoadInvalid(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.yml"))
	if err != nil || len(paths) < 60 {
		t.Fatalf("want the invalid testdata files, got %d (%v)", len(paths), err)
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yml"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := expectations(t, data)
			s, err := LoadFile(path)
			if err == nil {
				t.Fatalf("LoadFile accepted an invalid spec: %+v", s)
			}
			var list diag.List
			if !errors.As(err, &list) {
				t.Fatalf("error %v (%T) is not a diag.List", err, err)
			}
			got := list.Errors()
			if len(got) != len(want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(got), len(want), got)
			}
			for i, w := range want {
				p := got[i]
				if p.File != path || p.Line != w.line || p.Field != w.field || !strings.Contains(p.Message, w.text) {
					t.Errorf("problem %d:\n got %+v\nwant line %d field %q message containing %q", i, p, w.line, w.field, w.text)
				}
				if w.line > 0 && p.Document == "" {
					t.Errorf("problem %d does not name its document: %+v", i, p)
				}
			}
		})
	}
}

func TestLoadValid(t *testing.T) {
	s, err := LoadFile(filepath.Join("testdata", "valid.yml"))
	if err != nil {
		t.Fatalf("valid spec rejected:\n%v", err)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("unexpected warnings: %v", s.Warnings)
	}
	if s.Name() != "lab" || s.Datacenter.Spec.TinkerbellIP != "10.0.50.101" || len(s.MachineConfigs) != 2 || len(s.TemplateConfigs) != 1 {
		t.Fatalf("spec not decoded: %+v", s)
	}
	groups := s.NodeGroups()
	if len(groups) != 2 || !groups[0].ControlPlane || groups[0].MachineConfig.Metadata.Name != "lab-cp" || groups[0].Template == nil ||
		groups[1].Name != "md-0" || groups[1].MachineConfig.Metadata.Name != "lab-worker" || groups[1].Template != nil {
		t.Errorf("node groups = %+v", groups)
	}
	action := s.TemplateConfig("lab-template").Spec.Template.Tasks[0].Actions[0]
	if action.Environment["DEST_DISK"] != "{{ index .Hardware.Disks 0 }}" || action.Environment["COMPRESSED"] != "true" ||
		action.Environment["RETRY_DURATION_MINUTES"] != "10" || action.Timeout != 600 {
		t.Errorf("template action = %+v", action)
	}
	if got := s.OSImageURL(s.MachineConfig("lab-worker")); got != "http://10.0.50.5:8080/ubuntu-2204-kube-1-33.gz" {
		t.Errorf("OSImageURL = %q", got)
	}
	if s.KubernetesVersion() != "1.33" || s.ControlPlaneEndpoint() != "10.0.50.100" || s.PodCIDR() != "192.168.0.0/16" ||
		s.ServiceCIDR() != "10.96.0.0/12" || s.TinkerbellIP() != "10.0.50.101" {
		t.Errorf("accessors: %s %s %s %s %s", s.KubernetesVersion(), s.ControlPlaneEndpoint(), s.PodCIDR(), s.ServiceCIDR(), s.TinkerbellIP())
	}
}

func TestDefaults(t *testing.T) {
	in := `apiVersion: anywhere.eks.amazonaws.com/v1alpha1
kind: Cluster
metadata: {name: d}
spec:
  kubernetesVersion: "1.33"
  controlPlaneConfiguration:
    endpoint: {host: 10.0.0.100}
    machineGroupRef: {kind: TinkerbellMachineConfig, name: cp}
  workerNodeGroupConfigurations:
  - name: md-0
    machineGroupRef: {kind: TinkerbellMachineConfig, name: wk}
  - name: md-1
    count: 0
    machineGroupRef: {kind: TinkerbellMachineConfig, name: wk}
  datacenterRef: {kind: TinkerbellDatacenterConfig, name: d}
---
apiVersion: anywhere.eks.amazonaws.com/v1alpha1
kind: TinkerbellDatacenterConfig
metadata: {name: d}
spec: {tinkerbellIP: 10.0.0.101, osImageURL: "https://images.example/ubuntu-1.33.gz"}
---
apiVersion: anywhere.eks.amazonaws.com/v1alpha1
kind: TinkerbellMachineConfig
metadata: {name: cp, namespace: eksa-system, uid: 1234, resourceVersion: "5"}
spec:
  hardwareSelector: {type: cp}
  osFamily: ubuntu
  users: [{name: ec2-user, sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDNs6/l3RYoVl4oV6FaPZhCAo8NXFJh0TMF5dNu4y94t"]}]
---
apiVersion: anywhere.eks.amazonaws.com/v1alpha1
kind: TinkerbellMachineConfig
metadata: {name: wk}
spec:
  hardwareAffinity:
    required:
    - labelSelector:
        matchExpressions: [{key: type, operator: In, values: [worker, gpu]}]
  osFamily: ubuntu
  users: [{name: ec2-user, sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDNs6/l3RYoVl4oV6FaPZhCAo8NXFJh0TMF5dNu4y94t"]}]
---
apiVersion: anywhere.eks.amazonaws.com/v1alpha1
kind: OIDCConfig
metadata: {name: ignored}
spec: {issuerUrl: "https://x"}
`
	s, err := Load([]byte(in), "defaults.yml")
	if err != nil {
		t.Fatalf("spec rejected:\n%v", err)
	}
	sp := s.Cluster.Spec
	checks := []struct {
		name      string
		got, want any
	}{
		{"control-plane count", sp.ControlPlaneConfiguration.Count, 1},
		{"worker count omitted", sp.WorkerNodeGroupConfigurations[0].Count, 1},
		{"worker count zero kept", sp.WorkerNodeGroupConfigurations[1].Count, 0},
		{"pod CIDR", sp.ClusterNetwork.Pods.CIDRBlocks, []string{DefaultPodCIDR}},
		{"service CIDR", sp.ClusterNetwork.Services.CIDRBlocks, []string{DefaultServiceCIDR}},
		{"CNI", sp.ClusterNetwork.CNIConfig != nil && sp.ClusterNetwork.CNIConfig.Cilium != nil, true},
		{"management cluster", sp.ManagementCluster.Name, "d"},
		{"namespace", s.Cluster.Metadata.Namespace, DefaultNamespace},
		{"explicit namespace", s.MachineConfig("cp").Metadata.Namespace, "eksa-system"},
		{"node startup timeout", sp.MachineHealthCheck.NodeStartupTimeout, DefaultNodeStartupTimeout},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0].Message, "OIDCConfig is not used by kiln") {
		t.Errorf("warnings = %v, want one for the OIDCConfig document", s.Warnings)
	}
	// Defaults are visible in the JSON form.
	out, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"count":1`, `"cidrBlocks":["192.168.0.0/16"]`, `"nodeStartupTimeout":"20m0s"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("JSON lacks %s", want)
		}
	}
}

func TestMatches(t *testing.T) {
	s, err := LoadFile(filepath.Join("testdata", "valid.yml"))
	if err != nil {
		t.Fatal(err)
	}
	mc := s.MachineConfig("lab-cp")
	affinity := &TinkerbellMachineConfig{Spec: TinkerbellMachineConfigSpec{HardwareAffinity: &HardwareAffinity{Required: []HardwareAffinityTerm{
		{LabelSelector: LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "type", Operator: "In", Values: []string{"worker", "gpu"}}, {Key: "broken", Operator: "DoesNotExist"}}}},
		{LabelSelector: LabelSelector{MatchLabels: map[string]string{"rack": "r9"}}},
	}}}}
	tests := []struct {
		mc     *TinkerbellMachineConfig
		labels map[string]string
		want   bool
	}{
		{mc, map[string]string{"type": "cp", "rack": "r1"}, true},
		{mc, map[string]string{"type": "worker"}, false},
		{mc, nil, false},
		{affinity, map[string]string{"type": "gpu"}, true},
		{affinity, map[string]string{"type": "gpu", "broken": "yes"}, false},
		{affinity, map[string]string{"type": "cp", "rack": "r9"}, true},
		{affinity, map[string]string{"type": "cp"}, false},
	}
	for i, tt := range tests {
		if got := tt.mc.Matches(tt.labels); got != tt.want {
			t.Errorf("%d: %s matches %v = %v, want %v", i, tt.mc.SelectorString(), tt.labels, got, tt.want)
		}
	}
	if got := affinity.SelectorString(); got != "affinity(type In (worker,gpu),broken DoesNotExist OR rack=r9)" {
		t.Errorf("SelectorString = %q", got)
	}
}

func FuzzLoad(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "invalid", "*.yml"))
	paths = append(paths, filepath.Join("testdata", "valid.yml"), filepath.Join("..", "..", "hardware", "examples", "ClusterSpec.yml"))
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Load(data, "fuzz.yml")
		if err != nil {
			var list diag.List
			if !errors.As(err, &list) || !list.HasErrors() {
				t.Fatalf("error is not a diag.List with errors: %v", err)
			}
			for _, p := range list {
				if p.Message == "" {
					t.Fatalf("problem without a message: %+v", p)
				}
			}
			return
		}
		if s.Cluster == nil || s.Datacenter == nil || len(s.NodeGroups()) == 0 {
			t.Fatalf("a valid spec lacks its cluster, datacenter or node groups")
		}
		for _, g := range s.NodeGroups() {
			if g.MachineConfig == nil {
				t.Fatalf("node group %s has no machine config in a valid spec", g.Name)
			}
		}
	})
}
