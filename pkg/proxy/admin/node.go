package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/pkg/buildinfo"
	"github.com/kiln-dev/kiln/pkg/proxy/confighash"
	"github.com/kiln-dev/kiln/pkg/proxy/declarative"
	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/schema"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

func schemaOfField(def *entity.PluginDef) *schema.Schema {
	return &schema.Schema{Name: def.Name, Fields: []schema.Field{def.Config}}
}

// root answers GET / like Kong: version is the Kong release whose Admin
// API kiln implements (entity.KongVersion); kiln's own version is
// reported separately.
func (s *Server) root(ctx context.Context) (int, any, error) {
	cfg, err := s.st.Snapshot(ctx)
	if err != nil {
		return 0, nil, err
	}
	enabled := map[string]bool{}
	for _, p := range cfg.Plugins {
		enabled[p.Name] = true
	}
	inCluster := make([]string, 0, len(enabled))
	for n := range enabled {
		inCluster = append(inCluster, n)
	}
	sort.Strings(inCluster)
	available := map[string]any{}
	loaded := map[string]bool{}
	for name, def := range entity.Plugins {
		available[name] = map[string]any{"version": entity.PluginVersion, "priority": def.Priority}
		loaded[name] = true
	}
	conf := map[string]any{
		"database":       s.st.Database(),
		"role":           "traditional",
		"router_flavor":  "traditional_compatible",
		"plugins":        []string{"bundled"},
		"loaded_plugins": loaded,
	}
	for name, spec := range map[string]string{"proxy": s.opt.ProxyListen, "admin": s.opt.AdminListen, "status": s.opt.StatusListen} {
		if list, ok := s.opt.Configuration[name+"_listen"].([]string); ok && spec == "" {
			spec = strings.Join(list, ",")
		}
		if spec != "" {
			conf[name+"_listen"], conf[name+"_listeners"] = Listeners(spec)
		}
	}
	conf["stream_listeners"] = []any{}
	for k, v := range s.opt.Configuration {
		if _, derived := conf[k]; derived && strings.HasSuffix(k, "_listen") {
			continue
		}
		conf[k] = v
	}
	bi := buildinfo.Get()
	return http.StatusOK, map[string]any{
		"tagline":       "Welcome to kiln",
		"version":       entity.KongVersion,
		"edition":       "community",
		"kiln_version":  bi.Version,
		"hostname":      s.opt.Hostname,
		"node_id":       s.opt.NodeID,
		"lua_version":   "none (kiln is written in Go: " + runtime.Version() + ")",
		"timers":        map[string]any{"running": 0, "pending": 0},
		"pids":          map[string]any{"master": os.Getpid(), "workers": []int{os.Getpid()}},
		"plugins":       map[string]any{"available_on_server": available, "enabled_in_cluster": inCluster},
		"configuration": conf,
	}, nil
}

func (s *Server) status(r *http.Request, segs []string) (int, any, error) {
	ctx := r.Context()
	if len(segs) == 2 && segs[1] == "ready" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return 0, nil, errMethodNotAllowed
		}
		if err := s.st.Ping(ctx); err != nil {
			return http.StatusServiceUnavailable, map[string]any{"message": "failed to connect to database"}, nil
		}
		if s.dbless {
			cfg, err := s.st.Snapshot(ctx)
			if err != nil {
				return 0, nil, err
			}
			if cfg.Hash == entity.EmptyHash {
				return http.StatusServiceUnavailable, map[string]any{"message": "no configuration available (empty configuration present)"}, nil
			}
		}
		if s.opt.Ready != nil {
			if err := s.opt.Ready(); err != nil {
				return http.StatusServiceUnavailable, map[string]any{"message": err.Error()}, nil
			}
		}
		return http.StatusOK, map[string]any{"message": "ready"}, nil
	}
	if len(segs) != 1 {
		return 0, nil, errNotFound
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return 0, nil, errMethodNotAllowed
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var stats ServerStats
	if s.opt.Stats != nil {
		stats = s.opt.Stats()
	}
	body := map[string]any{
		"server": stats,
		"memory": map[string]any{
			"lua_shared_dicts": map[string]any{},
			"workers_lua_vms":  []any{map[string]any{"pid": os.Getpid(), "http_allocated_gc": fmt.Sprintf("%.2f MiB", float64(ms.HeapAlloc)/(1<<20))}},
		},
	}
	if s.dbless {
		cfg, err := s.st.Snapshot(ctx)
		if err != nil {
			return 0, nil, err
		}
		if body["configuration_hash"], err = s.currentHash(cfg); err != nil {
			return 0, nil, err
		}
	} else {
		body["database"] = map[string]any{"reachable": s.st.Ping(ctx) == nil}
	}
	return http.StatusOK, body, nil
}

// sourceHash is md5 of the declarative document the store's contents were
// loaded from, when the store tracks it ("" otherwise).
func (s *Server) sourceHash() string {
	if t, ok := s.st.(interface{ SourceHash() string }); ok {
		return t.SourceHash()
	}
	return ""
}

// currentHash is what the store's contents were loaded with (md5 of a
// declarative document, or a hybrid-mode control plane's config_hash), as
// Kong reports it; otherwise Kong's hybrid-mode hash of the configuration
// (pkg/proxy/confighash), so the value means the same on every node.
func (s *Server) currentHash(cfg *entity.Config) (string, error) {
	if cfg.Hash == entity.EmptyHash {
		return entity.EmptyHash, nil
	}
	if h := s.sourceHash(); h != "" {
		return h, nil
	}
	s.hashMu.Lock()
	defer s.hashMu.Unlock()
	if s.hashOf == cfg {
		return s.hash, nil
	}
	table, err := declarative.Table(cfg)
	if err != nil {
		return "", err
	}
	h, _, err := confighash.Config(table)
	if err != nil {
		return "", err
	}
	s.hashOf, s.hash = cfg, h
	return h, nil
}

func schemaByName(name string) *entity.Kind {
	if k := entity.KindByName(name); k != nil {
		return k
	}
	return kindByAdminPath(name)
}

func (s *Server) schemas(r *http.Request, segs []string) (int, any, error) {
	switch {
	case len(segs) == 3 && segs[1] == "plugins" && segs[2] == "validate":
		if r.Method != http.MethodPost {
			return 0, nil, errMethodNotAllowed
		}
		return s.validate(r, entity.KindByName("plugins"))
	case len(segs) == 3 && segs[1] == "plugins":
		if r.Method != http.MethodGet {
			return 0, nil, errMethodNotAllowed
		}
		def := entity.Plugins[segs[2]]
		if def == nil {
			return 0, nil, plainError(http.StatusNotFound, "No plugin named '"+segs[2]+"'")
		}
		ps := entity.PluginSchema.Describe()
		fields := []any{}
		for _, f := range ps["fields"].([]any) {
			m := f.(map[string]any)
			if _, ok := m["config"]; ok {
				continue
			}
			fields = append(fields, m)
		}
		if def.NoConsumer {
			for i, f := range fields {
				if _, ok := f.(map[string]any)["consumer"]; ok {
					fields[i] = map[string]any{"consumer": map[string]any{"type": "foreign", "reference": "consumers", "eq": nil}}
				}
			}
		}
		fields = append(fields, map[string]any{"config": schema.DescribeField(&def.Config)})
		return http.StatusOK, map[string]any{"fields": fields}, nil
	case len(segs) == 2:
		if r.Method != http.MethodGet {
			return 0, nil, errMethodNotAllowed
		}
		if segs[1] == "tags" {
			return http.StatusOK, entity.TagSchema.Describe(), nil
		}
		k := schemaByName(segs[1])
		if k == nil {
			return 0, nil, plainError(http.StatusNotFound, "No entity named '"+segs[1]+"'")
		}
		return http.StatusOK, k.Schema.Describe(), nil
	case len(segs) == 3 && segs[2] == "validate":
		if r.Method != http.MethodPost {
			return 0, nil, errMethodNotAllowed
		}
		k := schemaByName(segs[1])
		if k == nil {
			return 0, nil, plainError(http.StatusNotFound, "No entity named '"+segs[1]+"'")
		}
		return s.validate(r, k)
	}
	return 0, nil, errNotFound
}

func (s *Server) validate(r *http.Request, k *entity.Kind) (int, any, error) {
	in, err := readBody(r, k)
	if err != nil {
		return 0, nil, err
	}
	tr, errs := entity.Transform(k, in)
	if errs == nil {
		if tr["id"] == nil {
			tr["id"] = entity.NewID()
		}
		_, errs = entity.Validate(k, tr)
	}
	if errs != nil {
		return 0, nil, errs
	}
	return http.StatusOK, map[string]any{"message": "schema validation successful"}, nil
}

func (s *Server) tags(r *http.Request, segs []string) (int, any, error) {
	if r.Method != http.MethodGet {
		return 0, nil, errMethodNotAllowed
	}
	if len(segs) > 2 {
		return 0, nil, errNotFound
	}
	want := ""
	if len(segs) == 2 {
		want = segs[1]
	}
	data := []any{}
	for _, k := range entity.Kinds {
		q := store.Query{Size: 1000}
		if want != "" {
			q.Tags = []string{want}
		}
		for {
			page, err := s.st.List(r.Context(), k.Name, q)
			if err != nil {
				return 0, nil, err
			}
			for _, rec := range page.Data {
				tags, _ := rec["tags"].([]any)
				for _, t := range tags {
					if want == "" || t == want {
						data = append(data, map[string]any{"entity_name": k.Name, "entity_id": rec["id"], "tag": t})
					}
				}
			}
			if page.Offset == "" {
				break
			}
			q.Offset = page.Offset
		}
	}
	return http.StatusOK, map[string]any{"data": data, "next": nil}, nil
}

func (s *Server) config(r *http.Request, segs []string) (int, any, error) {
	if len(segs) != 1 {
		return 0, nil, errNotFound
	}
	if !s.dbless {
		return 0, nil, plainError(http.StatusBadRequest, "this endpoint is only available when Kong is configured to not use a database")
	}
	ctx := r.Context()
	switch r.Method {
	case http.MethodGet:
		cfg, err := s.st.Snapshot(ctx)
		if err != nil {
			return 0, nil, err
		}
		doc, err := declarative.Export(cfg)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]any{"config": string(doc)}, nil
	case http.MethodPost:
		raw, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			return 0, nil, plainError(http.StatusBadRequest, "could not read request body")
		}
		if len(raw) > maxBody {
			return 0, nil, plainError(http.StatusRequestEntityTooLarge, "Payload too large")
		}
		doc := extractConfig(r.Header.Get("Content-Type"), raw)
		q := r.URL.Query()
		if q.Get("check_hash") == "1" && s.sourceHash() == declarative.SourceHash(doc) {
			return http.StatusNotModified, nil, nil
		}
		loaded, err := s.LoadDeclarative(ctx, doc)
		if err != nil {
			var de *declarative.Error
			if errors.As(err, &de) {
				body := map[string]any{"code": 14, "name": "invalid declarative configuration", "message": de.Error(), "fields": de.Fields()}
				if q.Get("flatten_errors") == "1" {
					flat := make([]any, 0, len(de.Entities))
					for _, e := range de.Entities {
						flat = append(flat, e)
					}
					body["flattened_errors"] = flat
				}
				return http.StatusBadRequest, body, nil
			}
			return 0, nil, err
		}
		return http.StatusCreated, loaded, nil
	}
	return 0, nil, errMethodNotAllowed
}

// extractConfig accepts the document itself or a {"config": "<doc>"}
// wrapper (JSON or form field), as Kong's POST /config does.
func extractConfig(contentType string, raw []byte) []byte {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data" {
		if m, err := decodeBody(contentType, raw, nil); err == nil {
			if c, ok := m["config"].(string); ok {
				return []byte(c)
			}
		}
		return raw
	}
	var wrapper map[string]any
	if json.Unmarshal(raw, &wrapper) == nil {
		if c, ok := wrapper["config"].(string); ok && wrapper["_format_version"] == nil {
			return []byte(c)
		}
	}
	return raw
}

// LoadDeclarative parses a declarative document and atomically replaces
// the store's configuration with it (POST /config; start-up can call
// declarative.Load directly). It returns the loaded entities keyed by kind
// and id; a *declarative.Error describes an invalid document.
func (s *Server) LoadDeclarative(ctx context.Context, doc []byte) (map[string]any, error) {
	recs, err := declarative.Load(ctx, s.st, doc, s.now())
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for kind, list := range recs {
		byID := map[string]any{}
		for _, rec := range list {
			byID[rec["id"].(string)] = rec
		}
		out[kind] = byID
	}
	return out, nil
}

// Listeners parses a Kong listen specification ("0.0.0.0:8000,
// 0.0.0.0:8443 http2 ssl", or "off") into the configuration's *_listen
// list and *_listeners objects that GET / reports.
func Listeners(spec string) ([]string, []map[string]any) {
	listen := []string{}
	listeners := []map[string]any{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" || part == "off" {
			continue
		}
		listen = append(listen, part)
		fields := strings.Fields(part)
		host, port, err := net.SplitHostPort(fields[0])
		if err != nil {
			continue
		}
		n, _ := strconv.Atoi(port)
		l := map[string]any{"ip": host, "port": n, "listener": part, "ssl": false, "http2": false,
			"proxy_protocol": false, "deferred": false, "reuseport": false, "bind": false}
		for _, flag := range fields[1:] {
			switch flag {
			case "ssl", "http2", "proxy_protocol", "deferred", "reuseport", "bind":
				l[flag] = true
			}
		}
		listeners = append(listeners, l)
	}
	return listen, listeners
}
