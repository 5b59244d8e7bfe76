// Package agent is kiln's provisioning agent: it polls the worker API for
// actions, runs kiln's built-in actions with their environment and timeout,
// streams their output to the server and to syslog, and reports each
// action's state. It runs as a plain process or as PID 1 of the in-memory OS,
// where it first mounts the kernel file systems, loads modules and brings up
// the provisioning interface with DHCP.
package agent

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// DefaultPort is the worker API port used when grpc_authority has none.
const DefaultPort = "42113"

// Config is what the agent needs to find and talk to the server.
type Config struct {
	// WorkerID is the agent id the server knows the machine by (its MAC).
	WorkerID string
	// HWAddr is the MAC of the interface to bring up with DHCP (PID 1 only).
	HWAddr string
	// Authority is the worker API host:port.
	Authority string
	// SyslogHost receives the agent's log over UDP syslog (port 514 unless given).
	SyslogHost string
	// TLS and InsecureTLS mirror tinkerbell_tls / tinkerbell_insecure_tls.
	TLS, InsecureTLS bool
	// MetadataURL is kiln's metadata service (kiln_metadata_url).
	MetadataURL string
	// Modules are kernel modules to load first (kiln_modules=a,b,c).
	Modules []string
}

// ParseCmdline reads the kernel arguments the netboot iPXE script emits:
// worker_id, hw_addr, grpc_authority, syslog_host, tinkerbell_tls,
// tinkerbell_insecure_tls, kiln_metadata_url, kiln_modules. Unknown
// arguments are ignored.
func ParseCmdline(cmdline string) (Config, error) {
	var c Config
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		v = strings.Trim(v, `"`)
		var err error
		switch k {
		case "worker_id":
			c.WorkerID = strings.ToLower(v)
		case "hw_addr":
			c.HWAddr = strings.ToLower(v)
		case "grpc_authority":
			c.Authority = v
		case "syslog_host":
			c.SyslogHost = v
		case "tinkerbell_tls":
			c.TLS, err = strconv.ParseBool(v)
		case "tinkerbell_insecure_tls":
			c.InsecureTLS, err = strconv.ParseBool(v)
		case "kiln_metadata_url":
			c.MetadataURL = v
		case "kiln_modules":
			for _, m := range strings.Split(v, ",") {
				if m = strings.TrimSpace(m); m != "" {
					c.Modules = append(c.Modules, m)
				}
			}
		}
		if err != nil {
			return c, fmt.Errorf("kernel argument %s: %q is not true or false", k, v)
		}
	}
	return c, nil
}

// Normalize fills defaults and checks the result: worker id defaults to
// hw_addr, the authority gets the default port.
func (c *Config) Normalize() error {
	if c.WorkerID == "" {
		c.WorkerID = c.HWAddr
	}
	if c.WorkerID == "" {
		return fmt.Errorf("no worker id: pass worker_id=<mac> on the kernel command line or --worker-id")
	}
	if c.Authority == "" {
		return fmt.Errorf("no worker API address: pass grpc_authority=<ip:port> on the kernel command line or --grpc-authority")
	}
	if _, _, err := net.SplitHostPort(c.Authority); err != nil {
		c.Authority = net.JoinHostPort(c.Authority, DefaultPort)
	}
	if c.HWAddr != "" {
		if _, err := net.ParseMAC(c.HWAddr); err != nil {
			return fmt.Errorf("hw_addr %q is not a MAC address", c.HWAddr)
		}
	}
	return nil
}
