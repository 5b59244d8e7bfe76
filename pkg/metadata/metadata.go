// Package metadata is kiln's EC2-style instance metadata service: the
// 2009-04-04 subset cloud-init's Ec2 datasource reads (instance-id,
// hostname, local-hostname, local-ipv4, public-keys, user-data). The caller
// is identified by its source IP, which must be a machine's reserved
// address in the inventory.
package metadata

import (
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/pkg/hardware"
)

// Version is the metadata API version served.
const Version = "2009-04-04"

// Machines finds a machine by IP; *hardware.Inventory implements it.
type Machines interface {
	ByIP(ip string) (hardware.Machine, bool)
}

// Source supplies per-machine data kiln does not keep in Hardware.csv.
// Nil means no user-data and no keys.
type Source interface {
	UserData(m hardware.Machine) ([]byte, bool)
	PublicKeys(m hardware.Machine) []string
}

// Static is a Source that gives every machine the same user-data and keys.
type Static struct {
	Data []byte
	Keys []string
}

// UserData implements Source.
func (s Static) UserData(hardware.Machine) ([]byte, bool) { return s.Data, s.Data != nil }

// PublicKeys implements Source.
func (s Static) PublicKeys(hardware.Machine) []string { return s.Keys }

// Handler serves /2009-04-04/... .
type Handler struct {
	Machines Machines
	Source   Source
	Log      *slog.Logger
}

// InstanceID is the machine's instance id: its MAC, lower-case, which is
// stable across reinstalls and unique in the inventory.
func InstanceID(m hardware.Machine) string { return strings.ToLower(m.MAC) }

var metaDataKeys = []string{"hostname", "instance-id", "local-hostname", "local-ipv4", "public-keys/"}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, "cannot tell the caller's address", http.StatusBadRequest)
		return
	}
	m, ok := h.Machines.ByIP(host)
	if !ok {
		h.log().Warn("metadata request from an address that is no machine's ip_address in Hardware.csv", "remote", host, "path", r.URL.Path)
		http.Error(w, "no machine in the inventory has address "+host, http.StatusNotFound)
		return
	}
	body, found := h.lookup(m, strings.TrimPrefix(r.URL.Path, "/"+Version))
	if !found {
		http.NotFound(w, r)
		return
	}
	h.log().Debug("served metadata", "host", m.Hostname, "path", r.URL.Path)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(body))
}

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}

// lookup answers one path below /2009-04-04 for machine m.
func (h *Handler) lookup(m hardware.Machine, p string) (string, bool) {
	p = strings.TrimSuffix(p, "/")
	var keys []string
	if h.Source != nil {
		keys = h.Source.PublicKeys(m)
	}
	switch p {
	case "":
		return "meta-data\nuser-data", true
	case "/user-data":
		if h.Source == nil {
			return "", false
		}
		d, ok := h.Source.UserData(m)
		return string(d), ok
	case "/meta-data":
		return strings.Join(metaDataKeys, "\n"), true
	case "/meta-data/instance-id":
		return InstanceID(m), true
	case "/meta-data/hostname", "/meta-data/local-hostname":
		return m.Hostname, m.Hostname != ""
	case "/meta-data/local-ipv4":
		return m.IPAddress, true
	case "/meta-data/public-keys":
		lines := make([]string, len(keys))
		for i := range keys {
			lines[i] = strconv.Itoa(i) + "=kiln-" + strconv.Itoa(i)
		}
		return strings.Join(lines, "\n"), true
	}
	// /meta-data/public-keys/<i>[/openssh-key]
	rest, ok := strings.CutPrefix(p, "/meta-data/public-keys/")
	if !ok {
		return "", false
	}
	idx, sub, _ := strings.Cut(rest, "/")
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 || i >= len(keys) || strconv.Itoa(i) != idx {
		return "", false
	}
	switch sub {
	case "":
		return "openssh-key", true
	case "openssh-key":
		return keys[i], true
	}
	return "", false
}
