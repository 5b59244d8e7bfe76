package cli

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	tink "github.com/tinkerbell/tink/api/v1alpha1"
	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	bmcv1 "github.com/kiln-dev/kiln/pkg/apis/bmc/v1alpha1"
)

// csvRows reads the example CSV independently of pkg/hardware: column name → value, per row.
func csvRows(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]string
	for _, rec := range records[1:] {
		row := map[string]string{}
		for i, col := range records[0] {
			row[col] = rec[i]
		}
		rows = append(rows, row)
	}
	return rows
}

// splitDocs splits a multi-document YAML stream.
func splitDocs(s string) []string {
	var docs []string
	for _, d := range strings.Split(s, "\n---\n") {
		d = strings.TrimPrefix(d, "---\n")
		if strings.TrimSpace(d) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

func TestGenerateHardwareDecodesBackToTheCSV(t *testing.T) {
	code, out, errOut := run(t, "generate", "hardware", "--hardware-csv", exampleCSV)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	hw := map[string]tink.Hardware{}
	bmc := map[string]bmcv1.Machine{}
	secrets := map[string]corev1.Secret{}
	for _, doc := range splitDocs(out) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		var err error
		switch meta.Kind {
		case "Hardware":
			var h tink.Hardware
			err = yaml.UnmarshalStrict([]byte(doc), &h)
			hw[h.Name] = h
		case "Machine":
			var m bmcv1.Machine
			err = yaml.UnmarshalStrict([]byte(doc), &m)
			bmc[m.Name] = m
		case "Secret":
			var s corev1.Secret
			err = yaml.UnmarshalStrict([]byte(doc), &s)
			secrets[s.Name] = s
		default:
			t.Fatalf("unexpected kind %q in output", meta.Kind)
		}
		if err != nil {
			t.Fatalf("decode %s: %v\n%s", meta.Kind, err, doc)
		}
	}

	rows := csvRows(t, exampleCSV)
	bmcRows := 0
	for _, row := range rows {
		name := row["hostname"]
		h, ok := hw[name]
		if !ok {
			t.Errorf("no Hardware for %s", name)
			continue
		}
		mac := strings.ToLower(row["mac"])
		dhcp := h.Spec.Interfaces[0].DHCP
		wantLabels := map[string]string{"clusterctl.cluster.x-k8s.io/move": "true"}
		for _, kv := range strings.Split(row["labels"], "|") {
			k, v, _ := strings.Cut(kv, "=")
			wantLabels[k] = v
		}
		fields := []struct {
			field     string
			got, want any
		}{
			{"apiVersion", h.APIVersion, "tinkerbell.org/v1alpha1"},
			{"namespace", h.Namespace, "eksa-system"},
			{"labels", h.Labels, wantLabels},
			{"disk", h.Spec.Disks[0].Device, row["disk"]},
			{"dhcp.mac", dhcp.MAC, mac},
			{"dhcp.hostname", dhcp.Hostname, name},
			{"dhcp.ip.address", dhcp.IP.Address, row["ip_address"]},
			{"dhcp.ip.netmask", dhcp.IP.Netmask, row["netmask"]},
			{"dhcp.ip.gateway", dhcp.IP.Gateway, row["gateway"]},
			{"dhcp.name_servers", dhcp.NameServers, strings.Split(row["nameservers"], "|")},
			{"dhcp.vlan_id", dhcp.VLANID, row["vlan_id"]},
			{"dhcp.uefi", dhcp.UEFI, true},
			{"netboot.allowPXE", *h.Spec.Interfaces[0].Netboot.AllowPXE, true},
			{"netboot.allowWorkflow", *h.Spec.Interfaces[0].Netboot.AllowWorkflow, true},
			{"metadata.instance.id", h.Spec.Metadata.Instance.ID, mac},
			{"metadata.instance.ips[0].address", h.Spec.Metadata.Instance.Ips[0].Address, row["ip_address"]},
		}
		for _, f := range fields {
			if !reflect.DeepEqual(f.got, f.want) {
				t.Errorf("%s: Hardware %s = %#v, CSV says %#v", name, f.field, f.got, f.want)
			}
		}

		if row["bmc_ip"] == "" {
			if h.Spec.BMCRef != nil {
				t.Errorf("%s has no BMC in the CSV but a bmcRef %+v", name, h.Spec.BMCRef)
			}
			if _, ok := bmc["bmc-"+name]; ok {
				t.Errorf("%s has no BMC in the CSV but a BMC Machine", name)
			}
			continue
		}
		bmcRows++
		if h.Spec.BMCRef == nil || h.Spec.BMCRef.Kind != "Machine" || h.Spec.BMCRef.Name != "bmc-"+name || *h.Spec.BMCRef.APIGroup != "bmc.tinkerbell.org" {
			t.Errorf("%s bmcRef = %+v", name, h.Spec.BMCRef)
		}
		m, ok := bmc["bmc-"+name]
		if !ok {
			t.Errorf("no BMC Machine for %s", name)
			continue
		}
		c := m.Spec.Connection
		if m.APIVersion != "bmc.tinkerbell.org/v1alpha1" || m.Namespace != "eksa-system" || m.Labels["clusterctl.cluster.x-k8s.io/move"] != "true" ||
			c.Host != row["bmc_ip"] || c.AuthSecretRef.Name != "bmc-"+name+"-auth" || c.AuthSecretRef.Namespace != "eksa-system" || !c.InsecureTLS {
			t.Errorf("%s BMC Machine = %+v", name, m)
		}
		s, ok := secrets["bmc-"+name+"-auth"]
		if !ok {
			t.Errorf("no Secret for %s", name)
			continue
		}
		if s.Type != corev1.SecretTypeBasicAuth || s.Namespace != "eksa-system" || s.Labels["clusterctl.cluster.x-k8s.io/move"] != "true" ||
			string(s.Data["username"]) != row["bmc_username"] || string(s.Data["password"]) != row["bmc_password"] {
			t.Errorf("%s Secret = %+v", name, s)
		}
	}
	if len(hw) != len(rows) || len(bmc) != bmcRows || len(secrets) != bmcRows {
		t.Errorf("got %d Hardware, %d Machines, %d Secrets for %d rows (%d with a BMC)", len(hw), len(bmc), len(secrets), len(rows), bmcRows)
	}

	// -o FILE writes the same objects, readable only by the owner.
	outFile := filepath.Join(t.TempDir(), "hardware.yaml")
	if code, _, errOut := run(t, "generate", "hardware", "--hardware-csv", exampleCSV, "-o", outFile); code != ExitOK {
		t.Fatalf("-o: exit %d: %s", code, errOut)
	}
	data, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != out {
		t.Errorf("-o file differs from standard output")
	}
	if st, _ := os.Stat(outFile); st.Mode().Perm() != 0o600 {
		t.Errorf("-o file mode %v, want 0600", st.Mode().Perm())
	}
}

func TestGenerateHardwareRejectsInvalidCSV(t *testing.T) {
	code, out, errOut := run(t, "generate", "hardware", "--hardware-csv", threeBadCSV)
	if code != ExitInvalidInput || out != "" || strings.Count(errOut, "✗ ") != 3 {
		t.Errorf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	if code, _, _ := run(t, "generate", "hardware"); code != ExitUsage {
		t.Errorf("no --hardware-csv: exit %d, want %d", code, ExitUsage)
	}
}

// fillIn replaces the address placeholders of a generated ClusterSpec.
func fillIn(s string) string {
	return strings.NewReplacer("<CONTROL_PLANE_IP>", "10.10.50.100", "<TINKERBELL_IP>", "10.10.50.101", "<IMAGE_SERVER_IP>", "10.10.50.5").Replace(s)
}

func TestGenerateClusterConfigValidatesOnceFilledIn(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "id.pub")
	if err := os.WriteFile(pub, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDNs6/l3RYoVl4oV6FaPZhCAo8NXFJh0TMF5dNu4y94t ops@admin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, "generate", "clusterconfig", "demo", "--ssh-key", pub)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	raw := filepath.Join(dir, "raw.yml")
	filled := filepath.Join(dir, "demo.yml")
	if err := os.WriteFile(raw, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filled, []byte(fillIn(out)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := run(t, "validate", "-f", raw, "--hardware-csv", exampleCSV); code != ExitInvalidInput || strings.Count(out, "✗ ") != 3 {
		t.Errorf("unfilled spec: exit %d, want three errors for the three placeholders:\n%s", code, out)
	}
	if code, out, _ := run(t, "validate", "-f", filled, "--hardware-csv", exampleCSV); code != ExitOK {
		t.Errorf("filled-in spec does not validate (exit %d):\n%s", code, out)
	}
	if !strings.Contains(out, "ops@admin") {
		t.Errorf("the --ssh-key key is not in the spec")
	}

	if code, _, _ := run(t, "generate", "clusterconfig", "Bad_Name", "--ssh-key", pub); code != ExitUsage {
		t.Errorf("invalid name: exit %d, want %d", code, ExitUsage)
	}
	if code, _, _ := run(t, "generate", "clusterconfig"); code != ExitUsage {
		t.Errorf("no name: exit %d, want %d", code, ExitUsage)
	}
}

func TestGenerateClusterConfigCreatesAKeyWhenNoneExists(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	keyOut := filepath.Join(dir, "demo.key")
	code, out, errOut := run(t, "generate", "clusterconfig", "demo", "--ssh-key-out", keyOut)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	pem, err := os.ReadFile(keyOut)
	if err != nil {
		t.Fatalf("private key not written: %v", err)
	}
	if st, _ := os.Stat(keyOut); st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", st.Mode().Perm())
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatalf("private key does not parse: %v", err)
	}
	pubLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if !strings.Contains(out, pubLine) {
		t.Errorf("spec does not carry the generated public key %s", pubLine)
	}
	// A second run must not overwrite the key.
	if code, _, errOut := run(t, "generate", "clusterconfig", "demo", "--ssh-key-out", keyOut); code != ExitInvalidInput || !strings.Contains(errOut, "already exists") {
		t.Errorf("second run: exit %d, stderr %q", code, errOut)
	}
	if again, _ := os.ReadFile(keyOut); !bytes.Equal(again, pem) {
		t.Errorf("private key was overwritten")
	}
}
