package kind

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"

	"github.com/kiln-dev/kiln/pkg/bootstrap"
)

func TestConfigNetworkingAndPorts(t *testing.T) {
	cfg := bootstrap.Config{
		Name: "mgmt", Dir: "/tmp/x", PodSubnet: "192.168.0.0/16", ServiceSubnet: "10.96.0.0/12",
		BindAddress: "10.10.50.5", NodeImage: "kindest/node:v1.36.0",
		Ports: []bootstrap.PortMapping{{HostPort: 42113}, {HostPort: 7172, ContainerPort: 7173, ListenAddress: "10.10.50.5"}, {HostPort: 69, Protocol: "udp"}},
	}
	kc, files, err := Config(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 0 {
		t.Errorf("no mirror configured but files %v", files)
	}
	if kc.Name != "mgmt-kiln-bootstrap" || kc.APIVersion != "kind.x-k8s.io/v1alpha4" {
		t.Errorf("name/apiVersion: %q %q", kc.Name, kc.APIVersion)
	}
	if kc.Networking.PodSubnet != "192.168.0.0/16" || kc.Networking.ServiceSubnet != "10.96.0.0/12" || kc.Networking.APIServerAddress != "10.10.50.5" {
		t.Errorf("networking: %+v", kc.Networking)
	}
	if len(kc.Nodes) != 1 || kc.Nodes[0].Role != v1alpha4.ControlPlaneRole || kc.Nodes[0].Image != "kindest/node:v1.36.0" {
		t.Fatalf("nodes: %+v", kc.Nodes)
	}
	want := []v1alpha4.PortMapping{
		{ContainerPort: 42113, HostPort: 42113, Protocol: "TCP"},
		{ContainerPort: 7173, HostPort: 7172, ListenAddress: "10.10.50.5", Protocol: "TCP"},
		{ContainerPort: 69, HostPort: 69, Protocol: "UDP"},
	}
	got := kc.Nodes[0].ExtraPortMappings
	if len(got) != len(want) {
		t.Fatalf("port mappings: %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("port mapping %d: got %+v want %+v", i, got[i], want[i])
		}
	}
	if len(kc.Nodes[0].ExtraMounts) != 0 || len(kc.ContainerdConfigPatches) != 0 {
		t.Errorf("mounts/patches without a mirror: %+v %v", kc.Nodes[0].ExtraMounts, kc.ContainerdConfigPatches)
	}
}

func TestConfigMirror(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "mirror-ca.pem")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		mirror    bootstrap.RegistryMirror
		wantFiles map[string][]string // relative path -> substrings
		wantErr   string
	}{
		{
			name:   "CA and two registries",
			mirror: bootstrap.RegistryMirror{Endpoint: "harbor.lab:5000", Registries: []string{"docker.io", "public.ecr.aws"}, CACertFile: ca},
			wantFiles: map[string][]string{
				"harbor.lab:5000/ca.crt":    {"BEGIN CERTIFICATE"},
				"docker.io/hosts.toml":      {`server = "https://registry-1.docker.io"`, `[host."https://harbor.lab:5000"]`, `capabilities = ["pull", "resolve"]`, `ca = "/etc/containerd/certs.d/harbor.lab:5000/ca.crt"`},
				"public.ecr.aws/hosts.toml": {`server = "https://public.ecr.aws"`, `[host."https://harbor.lab:5000"]`},
			},
		},
		{
			name:      "insecure, default registry",
			mirror:    bootstrap.RegistryMirror{Endpoint: "10.0.0.9:443", InsecureSkipVerify: true},
			wantFiles: map[string][]string{"docker.io/hosts.toml": {"skip_verify = true", `[host."https://10.0.0.9:443"]`}},
		},
		{name: "bad endpoint", mirror: bootstrap.RegistryMirror{Endpoint: "https://x/y"}, wantErr: "must be host[:port]"},
		{name: "missing CA", mirror: bootstrap.RegistryMirror{Endpoint: "m:5000", CACertFile: filepath.Join(dir, "nope")}, wantErr: "reading registry mirror CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.mirror
			cfg := bootstrap.Config{Name: "mgmt", Dir: dir, Mirror: &m}
			kc, files, err := Config(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			base := filepath.Join(dir, "generated", "certs.d")
			got := map[string]string{}
			for _, f := range files {
				rel, _ := filepath.Rel(base, f.Path)
				got[rel] = string(f.Data)
			}
			if len(got) != len(tt.wantFiles) {
				t.Fatalf("files %v, want %d", keys(got), len(tt.wantFiles))
			}
			for path, subs := range tt.wantFiles {
				for _, s := range subs {
					if !strings.Contains(got[path], s) {
						t.Errorf("%s lacks %q:\n%s", path, s, got[path])
					}
				}
			}
			mounts := kc.Nodes[0].ExtraMounts
			if len(mounts) != 1 || mounts[0].HostPath != base || mounts[0].ContainerPath != "/etc/containerd/certs.d" || !mounts[0].Readonly {
				t.Errorf("mounts: %+v", mounts)
			}
			if len(kc.ContainerdConfigPatches) != 1 || !strings.Contains(kc.ContainerdConfigPatches[0], `config_path = "/etc/containerd/certs.d"`) {
				t.Errorf("containerd patch: %v", kc.ContainerdConfigPatches)
			}
		})
	}
}

func TestConfigRejects(t *testing.T) {
	for _, cfg := range []bootstrap.Config{
		{Name: "a", BindAddress: "not-an-ip"},
		{Name: "a", Ports: []bootstrap.PortMapping{{HostPort: 80, Protocol: "sctp2"}}},
		{Name: "a", Ports: []bootstrap.PortMapping{{HostPort: 70000}}},
	} {
		if _, _, err := Config(cfg); err == nil {
			t.Errorf("Config(%+v) accepted", cfg)
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
