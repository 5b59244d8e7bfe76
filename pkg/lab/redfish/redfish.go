// Package redfish serves a minimal Redfish BMC for one machine: the service
// root, a session service, a Systems collection with one ComputerSystem whose
// PowerState, ComputerSystem.Reset action and Boot source override are backed
// by a System implementation (in the lab, a QEMU VM). It speaks enough of
// DMTF Redfish for bmclib/gofish clients, with HTTP basic or session (X-Auth-
// Token) authentication, over TLS with a generated self-signed certificate.
package redfish

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// PowerState is a ComputerSystem's PowerState.
type PowerState string

// Power states.
const (
	PowerOn  PowerState = "On"
	PowerOff PowerState = "Off"
)

// ResetType is a ComputerSystem.Reset ResetType.
type ResetType string

// Reset types the service accepts.
const (
	ResetOn               ResetType = "On"
	ResetForceOn          ResetType = "ForceOn"
	ResetForceOff         ResetType = "ForceOff"
	ResetGracefulShutdown ResetType = "GracefulShutdown"
	ResetGracefulRestart  ResetType = "GracefulRestart"
	ResetForceRestart     ResetType = "ForceRestart"
	ResetPowerCycle       ResetType = "PowerCycle"
	ResetPushPowerButton  ResetType = "PushPowerButton"
	ResetNmi              ResetType = "Nmi"
)

// ResetTypes lists every accepted ResetType.
var ResetTypes = []ResetType{ResetOn, ResetForceOn, ResetForceOff, ResetGracefulShutdown, ResetGracefulRestart, ResetForceRestart, ResetPowerCycle, ResetPushPowerButton, ResetNmi}

// Boot source override values.
const (
	TargetNone = "None"
	TargetPxe  = "Pxe"
	TargetHdd  = "Hdd"

	EnabledDisabled   = "Disabled"
	EnabledOnce       = "Once"
	EnabledContinuous = "Continuous"

	ModeUEFI   = "UEFI"
	ModeLegacy = "Legacy"
)

var (
	targets  = []string{TargetNone, TargetPxe, TargetHdd}
	enableds = []string{EnabledDisabled, EnabledOnce, EnabledContinuous}
	modes    = []string{ModeUEFI, ModeLegacy}
)

// BootOverride is a ComputerSystem's Boot source override.
type BootOverride struct {
	Target  string `json:"BootSourceOverrideTarget"`
	Enabled string `json:"BootSourceOverrideEnabled"`
	Mode    string `json:"BootSourceOverrideMode"`
}

// System is the machine behind the BMC.
type System interface {
	PowerState(ctx context.Context) (PowerState, error)
	// Reset performs a ComputerSystem.Reset of one of ResetTypes.
	Reset(ctx context.Context, t ResetType) error
	BootOverride(ctx context.Context) (BootOverride, error)
	SetBootOverride(ctx context.Context, o BootOverride) error
}

// Config describes one virtual BMC.
type Config struct {
	// ID is the system's Id in /redfish/v1/Systems/{ID}; default "1".
	ID string
	// Name is the machine's name shown as the system Name.
	Name string
	// UUID is the system's UUID (e.g. QEMU's -uuid); optional.
	UUID string
	// MAC is the machine's boot NIC, reported as an informational field.
	MAC      string
	Username string
	// Password is compared in constant time and never logged.
	Password string
	System   System
	Log      *slog.Logger
}

// maxSessions bounds the sessions kept; the oldest is dropped beyond it.
const maxSessions = 32

// Handler is the Redfish service as an http.Handler.
type Handler struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux

	mu       sync.Mutex
	sessions []session
}

type session struct{ id, token string }

// NewHandler returns the Redfish service for cfg.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.System == nil {
		return nil, errors.New("redfish: no System to control")
	}
	if cfg.Username == "" || cfg.Password == "" {
		return nil, fmt.Errorf("redfish BMC of %s: a username and password are required", cfg.Name)
	}
	if cfg.ID == "" {
		cfg.ID = "1"
	}
	if strings.ContainsAny(cfg.ID, "/?#") {
		return nil, fmt.Errorf("redfish BMC of %s: system id %q must not contain '/', '?' or '#'", cfg.Name, cfg.ID)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, log: cfg.Log.With("bmc", cfg.Name), mux: http.NewServeMux()}
	sys := "/redfish/v1/Systems/" + cfg.ID
	h.mux.HandleFunc("GET /redfish", h.versions)
	h.mux.HandleFunc("GET /redfish/{$}", h.versions)
	h.mux.HandleFunc("GET /redfish/v1", h.root)
	h.mux.HandleFunc("GET /redfish/v1/{$}", h.root)
	h.mux.HandleFunc("GET /redfish/v1/SessionService", h.auth(h.sessionService))
	h.mux.HandleFunc("GET /redfish/v1/SessionService/Sessions", h.auth(h.listSessions))
	h.mux.HandleFunc("POST /redfish/v1/SessionService/Sessions", h.createSession)
	h.mux.HandleFunc("GET /redfish/v1/SessionService/Sessions/{id}", h.auth(h.getSession))
	h.mux.HandleFunc("DELETE /redfish/v1/SessionService/Sessions/{id}", h.auth(h.deleteSession))
	h.mux.HandleFunc("GET /redfish/v1/Systems", h.auth(h.systems))
	h.mux.HandleFunc("GET "+sys, h.auth(h.getSystem))
	h.mux.HandleFunc("PATCH "+sys, h.auth(h.patchSystem))
	h.mux.HandleFunc("POST "+sys+"/Actions/ComputerSystem.Reset", h.auth(h.reset))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Base.1.0.ResourceMissingAtURI", fmt.Sprintf("%s %s is not a resource of this BMC", r.Method, r.URL.Path))
	})
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("OData-Version", "4.0")
	// Tolerate the trailing slashes some clients add.
	if len(r.URL.Path) > len("/redfish/v1/") && strings.HasSuffix(r.URL.Path, "/") {
		r.URL.Path = strings.TrimRight(r.URL.Path, "/")
	}
	h.mux.ServeHTTP(w, r)
}

func odata(id string) map[string]string { return map[string]string{"@odata.id": id} }

func (h *Handler) versions(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"v1": "/redfish/v1/"})
}

func (h *Handler) root(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":      "/redfish/v1",
		"@odata.type":    "#ServiceRoot.v1_5_0.ServiceRoot",
		"Id":             "RootService",
		"Name":           "kiln virtual BMC",
		"RedfishVersion": "1.6.0",
		"UUID":           h.cfg.UUID,
		"Vendor":         "kiln",
		"Systems":        odata("/redfish/v1/Systems"),
		"SessionService": odata("/redfish/v1/SessionService"),
		"Links":          map[string]any{"Sessions": odata("/redfish/v1/SessionService/Sessions")},
	})
}

func (h *Handler) sessionService(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":      "/redfish/v1/SessionService",
		"@odata.type":    "#SessionService.v1_1_6.SessionService",
		"Id":             "SessionService",
		"Name":           "Session Service",
		"ServiceEnabled": true,
		"Sessions":       odata("/redfish/v1/SessionService/Sessions"),
	})
}

func (h *Handler) listSessions(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	members := make([]map[string]string, 0, len(h.sessions))
	for _, s := range h.sessions {
		members = append(members, odata("/redfish/v1/SessionService/Sessions/"+s.id))
	}
	h.mu.Unlock()
	writeCollection(w, "/redfish/v1/SessionService/Sessions", "#SessionCollection.SessionCollection", "Sessions", members)
}

func (h *Handler) createSession(w http.ResponseWriter, r *http.Request) {
	var req struct {
		UserName string
		Password string
	}
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.0.MalformedJSON", err.Error())
		return
	}
	if !h.credentialsOK(req.UserName, req.Password) {
		h.log.Warn("rejected a session request with wrong credentials", "remote", r.RemoteAddr, "user", req.UserName)
		writeError(w, http.StatusUnauthorized, "Base.1.0.NoValidSession", "wrong user name or password")
		return
	}
	s := session{id: randomHex(8), token: randomHex(24)}
	h.mu.Lock()
	h.sessions = append(h.sessions, s)
	if len(h.sessions) > maxSessions {
		h.sessions = h.sessions[len(h.sessions)-maxSessions:]
	}
	h.mu.Unlock()
	loc := "/redfish/v1/SessionService/Sessions/" + s.id
	w.Header().Set("X-Auth-Token", s.token)
	w.Header().Set("Location", loc)
	writeJSON(w, http.StatusCreated, h.sessionBody(s))
}

func (h *Handler) sessionBody(s session) map[string]any {
	return map[string]any{
		"@odata.id":   "/redfish/v1/SessionService/Sessions/" + s.id,
		"@odata.type": "#Session.v1_0_0.Session",
		"Id":          s.id,
		"Name":        "User Session",
		"UserName":    h.cfg.Username,
	}
}

func (h *Handler) getSession(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	i := slices.IndexFunc(h.sessions, func(s session) bool { return s.id == r.PathValue("id") })
	var s session
	if i >= 0 {
		s = h.sessions[i]
	}
	h.mu.Unlock()
	if i < 0 {
		writeError(w, http.StatusNotFound, "Base.1.0.ResourceMissingAtURI", "no such session")
		return
	}
	writeJSON(w, http.StatusOK, h.sessionBody(s))
}

func (h *Handler) deleteSession(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	n := len(h.sessions)
	h.sessions = slices.DeleteFunc(h.sessions, func(s session) bool { return s.id == r.PathValue("id") })
	found := len(h.sessions) < n
	h.mu.Unlock()
	if !found {
		writeError(w, http.StatusNotFound, "Base.1.0.ResourceMissingAtURI", "no such session")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) systems(w http.ResponseWriter, _ *http.Request) {
	writeCollection(w, "/redfish/v1/Systems", "#ComputerSystemCollection.ComputerSystemCollection", "Computer System Collection",
		[]map[string]string{odata("/redfish/v1/Systems/" + h.cfg.ID)})
}

func (h *Handler) getSystem(w http.ResponseWriter, r *http.Request) {
	ps, err := h.cfg.System.PowerState(r.Context())
	if err != nil {
		h.internal(w, "read the power state", err)
		return
	}
	bo, err := h.cfg.System.BootOverride(r.Context())
	if err != nil {
		h.internal(w, "read the boot override", err)
		return
	}
	id := "/redfish/v1/Systems/" + h.cfg.ID
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":    id,
		"@odata.type":  "#ComputerSystem.v1_10_0.ComputerSystem",
		"Id":           h.cfg.ID,
		"Name":         h.cfg.Name,
		"UUID":         h.cfg.UUID,
		"SystemType":   "Virtual",
		"Manufacturer": "kiln",
		"Model":        "QEMU lab machine",
		"HostName":     h.cfg.Name,
		"PowerState":   ps,
		"Status":       map[string]string{"State": "Enabled", "Health": "OK"},
		"Boot": map[string]any{
			"BootSourceOverrideTarget":                         bo.Target,
			"BootSourceOverrideEnabled":                        bo.Enabled,
			"BootSourceOverrideMode":                           bo.Mode,
			"BootSourceOverrideTarget@Redfish.AllowableValues": targets,
		},
		"Actions": map[string]any{
			"#ComputerSystem.Reset": map[string]any{
				"target":                            id + "/Actions/ComputerSystem.Reset",
				"ResetType@Redfish.AllowableValues": ResetTypes,
			},
		},
		"Oem": map[string]any{"Kiln": map[string]string{"MACAddress": h.cfg.MAC}},
	})
}

// parseBootPatch reads a PATCH body and merges its Boot fields into cur.
func parseBootPatch(body []byte, cur BootOverride) (BootOverride, error) {
	var req struct {
		Boot *struct {
			Target  *string `json:"BootSourceOverrideTarget"`
			Enabled *string `json:"BootSourceOverrideEnabled"`
			Mode    *string `json:"BootSourceOverrideMode"`
		}
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return cur, fmt.Errorf("the request body is not valid JSON: %w", err)
	}
	if req.Boot == nil {
		return cur, errors.New("only the Boot property can be changed on this system")
	}
	set := func(dst *string, v *string, name string, allowed []string) error {
		if v == nil {
			return nil
		}
		if !slices.Contains(allowed, *v) {
			return fmt.Errorf("%s %q is not supported; use one of %v", name, *v, allowed)
		}
		*dst = *v
		return nil
	}
	next := cur
	if err := errors.Join(
		set(&next.Target, req.Boot.Target, "BootSourceOverrideTarget", targets),
		set(&next.Enabled, req.Boot.Enabled, "BootSourceOverrideEnabled", enableds),
		set(&next.Mode, req.Boot.Mode, "BootSourceOverrideMode", modes),
	); err != nil {
		return cur, err
	}
	return next, nil
}

func (h *Handler) patchSystem(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.0.MalformedJSON", err.Error())
		return
	}
	cur, err := h.cfg.System.BootOverride(r.Context())
	if err != nil {
		h.internal(w, "read the boot override", err)
		return
	}
	next, err := parseBootPatch(body, cur)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.0.PropertyValueNotInList", err.Error())
		return
	}
	if err := h.cfg.System.SetBootOverride(r.Context(), next); err != nil {
		h.internal(w, "set the boot override", err)
		return
	}
	h.log.Info("boot override set", "target", next.Target, "enabled", next.Enabled, "mode", next.Mode)
	w.WriteHeader(http.StatusNoContent)
}

// parseReset reads a ComputerSystem.Reset body.
func parseReset(body []byte) (ResetType, error) {
	var req struct{ ResetType ResetType }
	if err := json.Unmarshal(body, &req); err != nil {
		return "", fmt.Errorf("the request body is not valid JSON: %w", err)
	}
	if !slices.Contains(ResetTypes, req.ResetType) {
		return "", fmt.Errorf("ResetType %q is not supported; use one of %v", req.ResetType, ResetTypes)
	}
	return req.ResetType, nil
}

func (h *Handler) reset(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.0.MalformedJSON", err.Error())
		return
	}
	rt, err := parseReset(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.0.ActionParameterNotSupported", err.Error())
		return
	}
	if err := h.cfg.System.Reset(r.Context(), rt); err != nil {
		h.internal(w, "reset ("+string(rt)+")", err)
		return
	}
	h.log.Info("reset", "type", rt)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) internal(w http.ResponseWriter, what string, err error) {
	h.log.Error("virtual BMC operation failed", "op", what, "err", err)
	writeError(w, http.StatusInternalServerError, "Base.1.0.InternalError", fmt.Sprintf("could not %s: %v", what, err))
}

// auth requires HTTP basic credentials or a session token.
func (h *Handler) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if tok := r.Header.Get("X-Auth-Token"); tok != "" {
			h.mu.Lock()
			ok := slices.ContainsFunc(h.sessions, func(s session) bool {
				return subtle.ConstantTimeCompare([]byte(s.token), []byte(tok)) == 1
			})
			h.mu.Unlock()
			if ok {
				next(w, r)
				return
			}
		} else if u, p, ok := r.BasicAuth(); ok && h.credentialsOK(u, p) {
			next(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="kiln virtual BMC"`)
		writeError(w, http.StatusUnauthorized, "Base.1.0.NoValidSession", "authentication required: HTTP basic credentials or an X-Auth-Token from /redfish/v1/SessionService/Sessions")
	}
}

func (h *Handler) credentialsOK(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(h.cfg.Username))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(h.cfg.Password))
	return u&p == 1
}

const maxBody = 64 << 10

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read the request body: %w", err)
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("the request body is larger than %d bytes", maxBody)
	}
	return b, nil
}

func decodeBody(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("the request body is not valid JSON: %w", err)
	}
	return nil
}

func writeCollection(w http.ResponseWriter, id, typ, name string, members []map[string]string) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":           id,
		"@odata.type":         typ,
		"Name":                name,
		"Members":             members,
		"Members@odata.count": len(members),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code":    code,
		"message": msg,
		"@Message.ExtendedInfo": []map[string]string{{
			"MessageId": code,
			"Message":   msg,
		}},
	}})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
