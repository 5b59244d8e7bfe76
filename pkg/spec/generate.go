package spec

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
)

//go:embed clusterconfig.yaml.tmpl
var clusterConfigTemplate string

// DefaultKubernetesVersion is the version `kiln generate clusterconfig` writes.
const DefaultKubernetesVersion = "1.33"

// Placeholders GenerateClusterConfig leaves for the operator to replace with
// addresses of their network.
const (
	PlaceholderEndpointIP    = "<CONTROL_PLANE_IP>"
	PlaceholderTinkerbellIP  = "<TINKERBELL_IP>"
	PlaceholderImageServerIP = "<IMAGE_SERVER_IP>"
)

// GenerateOptions parameterise a starting ClusterSpec.
type GenerateOptions struct {
	Name              string
	KubernetesVersion string
	// SSHAuthorizedKey is the public key (authorized_keys format) the nodes'
	// ec2-user accepts.
	SSHAuthorizedKey string
}

// GenerateClusterConfig returns a complete starting ClusterSpec: a Cluster
// with one control-plane node and one worker group, its
// TinkerbellDatacenterConfig and a TinkerbellMachineConfig per node group.
// Only the three addresses (see the Placeholder constants) need filling in
// for it to validate.
func GenerateClusterConfig(o GenerateOptions) ([]byte, error) {
	if o.KubernetesVersion == "" {
		o.KubernetesVersion = DefaultKubernetesVersion
	}
	if !clusterNameRE.MatchString(o.Name) || len(o.Name) > maxClusterNameLength {
		return nil, fmt.Errorf("cluster name %q must be at most %d characters of lower-case letters, digits and '-', starting with a letter", o.Name, maxClusterNameLength)
	}
	if !kubernetesVersionRE.MatchString(o.KubernetesVersion) {
		return nil, fmt.Errorf("kubernetes version %q must be a minor version such as %s", o.KubernetesVersion, DefaultKubernetesVersion)
	}
	if msg := checkSSHKey(o.SSHAuthorizedKey); msg != "" {
		return nil, fmt.Errorf("%s", msg)
	}
	tmpl, err := template.New("clusterconfig").Option("missingkey=error").Parse(clusterConfigTemplate)
	if err != nil {
		return nil, fmt.Errorf("parse cluster config template: %w", err)
	}
	var buf bytes.Buffer
	err = tmpl.Execute(&buf, map[string]string{
		"Name":                    o.Name,
		"KubernetesVersion":       o.KubernetesVersion,
		"KubernetesVersionDashed": strings.ReplaceAll(o.KubernetesVersion, ".", "-"),
		"SSHAuthorizedKey":        yamlQuote(strings.TrimSpace(o.SSHAuthorizedKey)),
	})
	if err != nil {
		return nil, fmt.Errorf("render cluster config: %w", err)
	}
	return buf.Bytes(), nil
}

// yamlQuote renders s as a double-quoted YAML scalar (JSON string syntax is a
// subset of YAML's double-quoted style).
func yamlQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
