// Package admin is kiln's Kong-compatible Admin API (Kong's :8001): CRUD on
// every gateway entity with nested endpoints, PUT upserts by id or name,
// PATCH, pagination (size/offset/next), tag filters, Kong's error bodies and
// status codes, GET / (node information), /status, /status/ready,
// /schemas/..., and in DB-less mode /config with write endpoints answering
// 405. It works on any store.Store; the data plane learns about changes from
// the store, never from this package.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/headerconf"
	"github.com/kiln-dev/kiln/pkg/proxy/loglevel"
	"github.com/kiln-dev/kiln/pkg/proxy/schema"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// HealthReporter is implemented by the data plane's balancer so that
// /upstreams/{u}/health and the manual healthy/unhealthy endpoints work.
type HealthReporter interface {
	// UpstreamHealth returns each target's health by target id (HEALTHY,
	// UNHEALTHY, DNS_ERROR or HEALTHCHECKS_OFF) and the whole balancer's
	// (HEALTHY or UNHEALTHY).
	UpstreamHealth(upstreamID string) (targets map[string]string, balancer string)
	// SetTargetHealth overrides a target's health (address "host:port").
	SetTargetHealth(upstreamID, target string, healthy bool) error
}

// DataPlaneLister is a control plane's view of its data planes.
type DataPlaneLister interface {
	// DataPlanes returns up to limit /clustering/data-planes rows (all of
	// them when limit <= 0) whose id sorts after after, ordered by id.
	DataPlanes(ctx context.Context, after string, limit int) ([]map[string]any, error)
}

// ServerStats are the proxy's connection counters reported by /status.
type ServerStats struct {
	ConnectionsAccepted int64 `json:"connections_accepted"`
	ConnectionsActive   int64 `json:"connections_active"`
	ConnectionsHandled  int64 `json:"connections_handled"`
	ConnectionsReading  int64 `json:"connections_reading"`
	ConnectionsWaiting  int64 `json:"connections_waiting"`
	ConnectionsWriting  int64 `json:"connections_writing"`
	TotalRequests       int64 `json:"total_requests"`
}

// Options configure a Server. Only Store is required.
type Options struct {
	Store    store.Store
	NodeID   string
	Hostname string
	// ProxyListen, AdminListen and StatusListen are the listen
	// specifications (Kong syntax) reported in GET / configuration.
	ProxyListen, AdminListen, StatusListen string
	// Configuration is merged into GET / "configuration".
	Configuration map[string]any
	// Health is optional; without it targets report HEALTHCHECKS_OFF.
	Health HealthReporter
	// Ready is optional; a non-nil error makes /status/ready answer 503
	// with its text (e.g. the router is not built yet).
	Ready func() error
	// Stats is optional; it feeds /status "server".
	Stats func() ServerStats
	// Metrics is optional; it serves /metrics (prometheus plugin).
	Metrics http.Handler
	// Clustering is set on a hybrid-mode control plane; without it the
	// /clustering endpoints answer 400 as on any other Kong node.
	Clustering DataPlaneLister
	Logger     *slog.Logger
	Now        func() time.Time
	// Headers is Kong's headers setting (zero: Kong's default): it
	// gates X-Kong-Admin-Latency and Server on Admin API responses.
	Headers headerconf.Set
	// LogLevel is the node's log level, reported and changed through
	// /debug/node/log-level (nil: those endpoints answer 404).
	LogLevel *loglevel.Level
	// ClusterLogLevel, on a node with a database, carries
	// /debug/cluster/log-level to the other nodes sharing it (nil: that
	// endpoint answers 404).
	ClusterLogLevel store.ClusterLogLevelStore
}

// Server is the Admin API handler.
type Server struct {
	opt    Options
	st     store.Store
	dbless bool
	log    *slog.Logger
	now    func() time.Time

	hashMu sync.Mutex
	hashOf *entity.Config // the configuration hash was computed for
	hash   string
}

// New returns an Admin API handler.
func New(opt Options) *Server {
	s := &Server{opt: opt, st: opt.Store, dbless: opt.Store.Database() == "off", log: opt.Logger, now: opt.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.opt.Headers = s.opt.Headers.Or(headerconf.Default)
	if s.opt.NodeID == "" {
		s.opt.NodeID = entity.NewID()
	}
	if s.opt.Hostname == "" {
		s.opt.Hostname, _ = os.Hostname()
	}
	return s
}

// apiError is an error with Kong's body and an HTTP status.
type apiError struct {
	status int
	body   map[string]any
}

func (e *apiError) Error() string { m, _ := e.body["message"].(string); return m }

func plainError(status int, msg string) *apiError {
	return &apiError{status: status, body: map[string]any{"message": msg}}
}

var (
	errNotFound         = plainError(http.StatusNotFound, "Not found")
	errMethodNotAllowed = plainError(http.StatusMethodNotAllowed, "Method not allowed")
)

func schemaError(errs schema.Errors) *apiError {
	return &apiError{status: http.StatusBadRequest, body: map[string]any{
		"code": 2, "name": "schema violation", "message": errs.Message(), "fields": errs}}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	if s.opt.Headers.Has(headerconf.Server) {
		h["Server"] = []string{"kong/" + entity.KongVersion}
	}
	status, body := s.route(r)
	if status == http.StatusNotModified || status == http.StatusNoContent {
		s.setLatency(h, start)
		w.WriteHeader(status)
		return
	}
	if wh, ok := body.(withHeaders); ok {
		for k, v := range wh.header {
			h.Set(k, v)
		}
		body = wh.body
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	s.setLatency(h, start)
	out, err := json.Marshal(body)
	if err != nil {
		s.log.Error("admin: encode response", "path", r.URL.Path, "err", err)
		status, out = http.StatusInternalServerError, []byte(`{"message":"An unexpected error occurred"}`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

// setLatency sets X-Kong-Admin-Latency when the headers setting has it.
func (s *Server) setLatency(h http.Header, start time.Time) {
	if s.opt.Headers.Has(headerconf.AdminLatency) {
		h.Set("X-Kong-Admin-Latency", latency(start))
	}
}

func latency(start time.Time) string {
	return strconvI(time.Since(start).Milliseconds())
}

// route dispatches a request and returns the status and JSON body.
func (s *Server) route(r *http.Request) (int, any) {
	segs, err := splitPath(r.URL.EscapedPath())
	if err != nil {
		return s.errResponse(r, plainError(http.StatusBadRequest, "Bad request"))
	}
	status, body, err := s.dispatch(r, segs)
	if err != nil {
		return s.errResponse(r, err)
	}
	return status, body
}

func splitPath(p string) ([]string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil, nil
	}
	parts := strings.Split(p, "/")
	for i, part := range parts {
		u, err := url.PathUnescape(part)
		if err != nil {
			return nil, err
		}
		parts[i] = u
	}
	return parts, nil
}

func (s *Server) errResponse(r *http.Request, err error) (int, any) {
	var ae *apiError
	var se schema.Errors
	var ue *store.UniqueError
	var pke *store.PrimaryKeyError
	var fke *store.ForeignKeyError
	var re *store.ReferencedError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.body
	case errors.As(err, &se):
		e := schemaError(se)
		return e.status, e.body
	case errors.As(err, &ue):
		return http.StatusConflict, map[string]any{"code": 5, "name": "unique constraint violation", "message": ue.Error(), "fields": ue.Fields}
	case errors.As(err, &pke):
		return http.StatusBadRequest, map[string]any{"code": 3, "name": "primary key violation", "message": pke.Error(), "fields": map[string]any{"id": pke.ID}}
	case errors.As(err, &fke):
		return http.StatusBadRequest, map[string]any{"code": 4, "name": "foreign key violation", "message": fke.Error(),
			"fields": map[string]any{fke.Field: map[string]any{"id": fke.ID}}}
	case errors.As(err, &re):
		return http.StatusBadRequest, map[string]any{"code": 4, "name": "foreign key violation", "message": re.Error(),
			"fields": map[string]any{"@referenced_by": re.By}}
	case errors.Is(err, store.ErrNotFound):
		return errNotFound.status, errNotFound.body
	case errors.Is(err, store.ErrInvalidOffset):
		return http.StatusBadRequest, map[string]any{"code": 7, "name": "invalid offset", "message": "'" + r.URL.Query().Get("offset") + "' is not a valid offset: bad base64 encoding"}
	case errors.Is(err, context.Canceled):
		return 499, map[string]any{"message": "client closed request"}
	}
	s.log.Error("admin: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	return http.StatusInternalServerError, map[string]any{"message": "An unexpected error occurred"}
}

func (s *Server) dispatch(r *http.Request, segs []string) (int, any, error) {
	if len(segs) == 0 {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return 0, nil, errMethodNotAllowed
		}
		return s.root(r.Context())
	}
	switch segs[0] {
	case "status":
		return s.status(r, segs)
	case "schemas":
		return s.schemas(r, segs)
	case "config":
		return s.config(r, segs)
	case "tags":
		return s.tags(r, segs)
	case "clustering":
		return s.clustering(r, segs)
	case "oauth2_tokens":
		return s.oauth2Tokens(r, segs)
	case "debug":
		return s.debug(r, segs)
	case "endpoints":
		return http.StatusOK, map[string]any{"data": endpointList()}, nil
	case "metrics":
		return 0, nil, errNotFound
	}
	if segs[0] == "plugins" && len(segs) >= 2 {
		switch {
		case segs[1] == "enabled" && len(segs) == 2:
			return http.StatusOK, map[string]any{"enabled_plugins": entity.PluginNames()}, nil
		case segs[1] == "schema" && len(segs) == 3:
			def := entity.Plugins[segs[2]]
			if def == nil {
				return 0, nil, plainError(http.StatusNotFound, "No plugin named '"+segs[2]+"'")
			}
			return http.StatusOK, schema.DescribeField(&def.Config), nil
		}
	}
	return s.entities(r, segs)
}

// ServeMetrics lets the caller mount the data plane's /metrics handler.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) bool {
	if s.opt.Metrics == nil {
		return false
	}
	s.opt.Metrics.ServeHTTP(w, r)
	return true
}

// Handler returns the Admin API with /metrics served by Options.Metrics.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && s.metrics(w, r) {
			return
		}
		s.ServeHTTP(w, r)
	})
}

func endpointList() []string {
	var out []string
	for _, k := range entity.Kinds {
		if k.AdminPath != "" {
			out = append(out, "/"+k.AdminPath, "/"+k.AdminPath+"/{"+k.Name+"}")
		}
	}
	return append(out, "/", "/status", "/status/ready", "/config", "/tags", "/tags/{tags}", "/schemas/{db_entity_name}",
		"/schemas/plugins/{name}", "/plugins/enabled", "/clustering/data-planes", "/clustering/status", "/upstreams/{upstreams}/health", "/upstreams/{upstreams}/targets",
		"/oauth2_tokens", "/oauth2_tokens/{oauth2_tokens}", "/debug/node/log-level", "/debug/node/log-level/{log_level}", "/debug/cluster/log-level/{log_level}")
}
