package ipxe

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/netboot/binary"
)

// Machines finds machines by MAC or by IP; *hardware.Inventory implements it.
type Machines interface {
	ByMAC(mac string) (hardware.Machine, bool)
	ByIP(ip string) (hardware.Machine, bool)
}

// Policy says whether a machine may netboot now; nil means always.
type Policy interface {
	NetbootAllowed(m hardware.Machine) bool
}

// Recorder is told what each machine fetched (for kiln's per-machine
// netboot journal); nil is allowed.
type Recorder interface {
	Record(mac, event string)
}

// Handler serves /ipxe/<mac>/auto.ipxe, /ipxe/<mac>/started and
// /ipxe/binary/[<mac>/]<file>.
type Handler struct {
	Script   *Script
	Machines Machines
	Policy   Policy
	Binaries *binary.Set
	Recorder Recorder
	Log      *slog.Logger
}

// ServeHTTP implements http.Handler for paths under /ipxe/.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/ipxe/"), "/")
	switch {
	case len(parts) >= 2 && len(parts) <= 3 && parts[0] == "binary":
		h.serveBinary(w, r, parts[1:])
	case len(parts) == 2 && parts[1] == "auto.ipxe":
		h.serveScript(w, r, parts[0])
	case len(parts) == 2 && parts[1] == "started":
		h.serveStarted(w, r, parts[0])
	default:
		http.NotFound(w, r)
	}
}

// machine finds the caller: by the MAC in the path, else by source IP.
func (h *Handler) machine(r *http.Request, macPart string) (hardware.Machine, string, bool) {
	if hw, err := net.ParseMAC(macPart); err == nil {
		m, ok := h.Machines.ByMAC(hw.String())
		return m, hw.String(), ok
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return hardware.Machine{}, "", false
	}
	m, ok := h.Machines.ByIP(host)
	return m, strings.ToLower(m.MAC), ok
}

func (h *Handler) serveScript(w http.ResponseWriter, r *http.Request, macPart string) {
	m, mac, ok := h.machine(r, macPart)
	if !ok {
		h.Log.Warn("iPXE script requested for a machine not in the inventory", "path", r.URL.Path, "remote", r.RemoteAddr)
		http.Error(w, "no machine in the inventory for "+macPart+" or "+r.RemoteAddr, http.StatusNotFound)
		return
	}
	var body []byte
	if h.Policy != nil && !h.Policy.NetbootAllowed(m) {
		h.Log.Info("netboot disabled: iPXE script tells the machine to boot its next device", "host", m.Hostname, "mac", mac)
		body = []byte("#!ipxe\necho kiln: netboot is disabled for " + mac + "; booting the next device\nexit 1\n")
		h.record(mac, "script (netboot disabled)")
	} else {
		var err error
		body, err = h.Script.Render(m, mac, time.Now())
		if err != nil {
			h.Log.Error("render iPXE script", "host", m.Hostname, "mac", mac, "err", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h.Log.Info("served iPXE script", "host", m.Hostname, "mac", mac, "remote", r.RemoteAddr)
		h.record(mac, "script")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, r, "auto.ipxe", time.Time{}, bytes.NewReader(body))
}

func (h *Handler) serveStarted(w http.ResponseWriter, r *http.Request, macPart string) {
	m, mac, ok := h.machine(r, macPart)
	if !ok {
		http.NotFound(w, r)
		return
	}
	h.Log.Info("machine is running its iPXE script", "host", m.Hostname, "mac", mac, "arch", r.URL.Query().Get("arch"), "remote", r.RemoteAddr)
	h.record(mac, "script started")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("#!ipxe\n"))
}

func (h *Handler) serveBinary(w http.ResponseWriter, r *http.Request, parts []string) {
	name, mac := parts[len(parts)-1], ""
	if len(parts) == 2 {
		hw, err := net.ParseMAC(parts[0])
		if err != nil {
			http.NotFound(w, r)
			return
		}
		mac = hw.String()
	}
	f, ok := h.Binaries.Get(name)
	if !ok {
		h.Log.Warn("HTTP request for an iPXE binary kiln does not serve", "file", name, "remote", r.RemoteAddr)
		http.NotFound(w, r)
		return
	}
	if mac != "" {
		h.record(mac, "http "+name)
	}
	w.Header().Set("ETag", f.ETag)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, name, f.ModTime, f.Reader())
}

func (h *Handler) record(mac, event string) {
	if h.Recorder != nil && mac != "" {
		h.Recorder.Record(mac, event)
	}
}
