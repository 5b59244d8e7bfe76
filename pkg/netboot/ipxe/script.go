// Package ipxe renders the per-machine iPXE script (templates/ipxe) and
// serves it, together with the iPXE binaries for UEFI HTTP boot, over HTTP.
package ipxe

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/templates"
)

// DefaultGRPCPort is the workflow server's gRPC port (Tinkerbell's 42113).
const DefaultGRPCPort = 42113

// ScriptConfig is what every machine's script shares.
type ScriptConfig struct {
	// HTTPBase is kiln's HTTP listener as machines reach it, e.g. http://10.0.0.1:7080.
	HTTPBase string
	// HookURL is where vmlinuz-<arch> and initramfs-<arch> are served;
	// default HTTPBase + "/hook".
	HookURL string
	// GRPCAuthority is the workflow server ip:port (grpc_authority=).
	GRPCAuthority string
	SyslogIP      string // syslog_host= and iPXE's syslog, when set
	TLS           bool   // tinkerbell_tls=
	InsecureTLS   bool   // tinkerbell_insecure_tls=
	MetadataURL   string // kiln_metadata_url=; default HTTPBase
	// ExtraKernelArgs are appended after kiln's own (last wins in the agent).
	ExtraKernelArgs []string
	// Retries is how many times a failed kernel/initrd fetch is retried
	// (default 2); RetryDelay the pause in seconds (default 2).
	Retries    int
	RetryDelay int
}

// Script renders iPXE scripts.
type Script struct {
	cfg  ScriptConfig
	tmpl *template.Template
}

// NewScript parses the embedded template and checks cfg.
func NewScript(cfg ScriptConfig) (*Script, error) {
	if cfg.HTTPBase == "" {
		return nil, fmt.Errorf("iPXE script: the HTTP base URL is required")
	}
	cfg.HTTPBase = strings.TrimSuffix(cfg.HTTPBase, "/")
	if cfg.HookURL == "" {
		cfg.HookURL = cfg.HTTPBase + "/hook"
	}
	cfg.HookURL = strings.TrimSuffix(cfg.HookURL, "/")
	if cfg.MetadataURL == "" {
		cfg.MetadataURL = cfg.HTTPBase
	}
	if cfg.GRPCAuthority != "" {
		if _, err := netip.ParseAddrPort(cfg.GRPCAuthority); err != nil {
			return nil, fmt.Errorf("iPXE script: grpc authority %q must be ip:port: %w", cfg.GRPCAuthority, err)
		}
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 2
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 2
	}
	for _, a := range cfg.ExtraKernelArgs {
		if strings.ContainsAny(a, " \t\n\"'") {
			return nil, fmt.Errorf("extra kernel argument %q must not contain spaces or quotes", a)
		}
	}
	tmpl, err := template.New("auto.ipxe.tmpl").Funcs(template.FuncMap{"inc": func(i int) int { return i + 1 }}).
		ParseFS(templates.FS, "ipxe/auto.ipxe.tmpl")
	if err != nil {
		return nil, fmt.Errorf("parse embedded iPXE template: %w", err)
	}
	return &Script{cfg: cfg, tmpl: tmpl}, nil
}

// KernelArgs are the in-memory OS's kernel arguments for m (the names the
// agent parses).
func (s *Script) KernelArgs(m hardware.Machine, mac string) []string {
	mac = strings.ToLower(mac)
	args := []string{
		"worker_id=" + mac,
		"hw_addr=" + mac,
	}
	if s.cfg.GRPCAuthority != "" {
		args = append(args, "grpc_authority="+s.cfg.GRPCAuthority)
	}
	if s.cfg.SyslogIP != "" {
		args = append(args, "syslog_host="+s.cfg.SyslogIP)
	}
	args = append(args,
		"tinkerbell_tls="+strconv.FormatBool(s.cfg.TLS),
		"tinkerbell_insecure_tls="+strconv.FormatBool(s.cfg.InsecureTLS),
		"kiln_metadata_url="+s.cfg.MetadataURL,
	)
	if m.VLANID != "" {
		args = append(args, "vlan_id="+m.VLANID)
	}
	args = append(args, "console=tty0", "console=ttyS0,115200")
	return append(args, s.cfg.ExtraKernelArgs...)
}

// Render writes the script for machine m booting from NIC mac.
func (s *Script) Render(m hardware.Machine, mac string, now time.Time) ([]byte, error) {
	mac = strings.ToLower(mac)
	data := map[string]any{
		"Hostname":   m.Hostname,
		"MAC":        mac,
		"Rendered":   now.UTC().Format(time.RFC3339),
		"SyslogIP":   s.cfg.SyslogIP,
		"StartedURL": s.StartedURL(mac),
		"HookURL":    s.cfg.HookURL,
		"KernelArgs": strings.Join(s.KernelArgs(m, mac), " "),
		"Attempts":   make([]struct{}, s.cfg.Retries+1),
		"RetryDelay": s.cfg.RetryDelay,
	}
	var buf bytes.Buffer
	if err := s.tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render iPXE script for %s: %w", mac, err)
	}
	return buf.Bytes(), nil
}

// StartedURL is fetched by the script as its first action, so kiln knows
// (and logs) that the machine is running its script.
func (s *Script) StartedURL(mac string) string {
	return fmt.Sprintf("%s/ipxe/%s/started", s.cfg.HTTPBase, mac)
}
