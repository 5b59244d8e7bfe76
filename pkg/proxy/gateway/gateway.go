// Package gateway runs a complete kiln gateway node: it opens the entity
// store (SQLite, PostgreSQL or in-memory for DB-less), serves the Admin API,
// the proxy listeners and the status listener, and recompiles the data plane
// on every committed change, swapping it in atomically without restarting
// listeners or pausing traffic. In hybrid mode (Options.Role) a control
// plane also serves data planes on the cluster listener, and a data plane
// fills its in-memory store from its control plane (pkg/proxy/cluster).
package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/admin"
	"github.com/kiln-dev/kiln/pkg/proxy/cluster"
	"github.com/kiln-dev/kiln/pkg/proxy/declarative"
	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/headerconf"
	"github.com/kiln-dev/kiln/pkg/proxy/loglevel"
	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
	"github.com/kiln-dev/kiln/pkg/proxy/schema"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// Options configure a gateway node. Listen values use Kong's syntax
// ("0.0.0.0:8000, 0.0.0.0:8443 http2 ssl"; "off" disables a listener).
type Options struct {
	ProxyListen  string
	AdminListen  string
	StatusListen string
	// Store holds the configuration; the gateway closes it on exit.
	Store store.Store
	// DeclarativeConfig is a DB-less file loaded into the store at start.
	DeclarativeConfig string
	// AccessLog receives one JSON line per request (nil: off).
	AccessLog io.Writer
	Log       *slog.Logger
	// Ready is called with the bound proxy, admin and status addresses
	// once every listener is up.
	Ready func(proxy, admin, status []string)
	// Role is Kong's role: RoleTraditional (""), RoleControlPlane or
	// RoleDataPlane.
	Role string
	// Cluster configures hybrid mode.
	Cluster ClusterOptions
	// TrustedIPs, RealIPHeader and RealIPRecursive are Kong's trusted_ips,
	// real_ip_header and real_ip_recursive (see server.Options).
	TrustedIPs      []netip.Prefix
	RealIPHeader    string
	RealIPRecursive bool
	// EventLoops is the number of event loops per cleartext proxy
	// listener (server.Options.EventLoops): 0 one per GOMAXPROCS, -1 none.
	EventLoops int
	// ProxyProtocolTimeout bounds the wait for a PROXY protocol header
	// (server.Options.ProxyProtocolTimeout; 0: 60 s).
	ProxyProtocolTimeout time.Duration
	// Headers and HeadersUpstream are Kong's headers and headers_upstream
	// settings, in Kong's syntax (see headerconf.ParseHeaders); "" is
	// Kong's default.
	Headers, HeadersUpstream string
	// LogLevel is Log's level, which the Admin API's
	// /debug/node/log-level reports and changes (nil: no such endpoint).
	LogLevel *loglevel.Level
	// LogLevelPoll is how often a node with a database checks for a level
	// set through /debug/cluster/log-level (0: 2 s).
	LogLevelPoll time.Duration
}

// Kong's roles.
const (
	RoleTraditional  = "traditional"
	RoleControlPlane = "control_plane"
	RoleDataPlane    = "data_plane"
)

// ClusterOptions configure hybrid mode. TLS is required for both roles.
type ClusterOptions struct {
	TLS *cluster.TLS
	// Listen is the control plane's cluster listener (cluster_listen).
	Listen string
	// ControlPlane is the data plane's control plane, host:port.
	ControlPlane string
	// Labels are the data plane's cluster_dp_labels.
	Labels map[string]string
	// UpdateFrequency is the control plane's minimum time between pushes
	// (db_update_frequency; 0: 5 s).
	UpdateFrequency time.Duration
	// PurgeDelay is how long the control plane keeps a silent data plane's
	// row (cluster_data_plane_purge_delay; 0: 14 days).
	PurgeDelay time.Duration
	// PersistDir is the data plane's directory for its last configuration
	// (config.json.gz) and node id (node_id); "" keeps nothing.
	PersistDir string
	// Version is the Kong version a data plane announces (default
	// entity.KongVersion); PingInterval and ReconnectDelay default to
	// Kong's 30 s and random 5–10 s. Tests shorten them.
	Version        string
	PingInterval   time.Duration
	ReconnectDelay func() time.Duration
	// Ready is called with the control plane's bound cluster address.
	Ready func(addr string)
}

// CheckRole reports the role / database / cluster address combinations
// Kong refuses, worded for kiln gateway run's flags: role is "" or a Role*
// constant, database the --database value, listen and controlPlane the
// --cluster-listen and --cluster-control-plane values.
func CheckRole(role, database, listen, controlPlane string) error {
	switch role {
	case "", RoleTraditional:
	case RoleControlPlane:
		if database == "off" {
			return errors.New("--role control_plane needs a database: in-memory storage can not be used on a control plane (use --database sqlite or postgres)")
		}
		if listen == "" || listen == "off" {
			return errors.New("--cluster-listen must be specified with --role control_plane")
		}
	case RoleDataPlane:
		if database != "off" {
			return fmt.Errorf("--role data_plane needs --database off: only in-memory storage can be used on a data plane (got --database %s)", database)
		}
		if _, _, err := net.SplitHostPort(controlPlane); err != nil {
			return fmt.Errorf("--cluster-control-plane %q: expected host:port", controlPlane)
		}
	default:
		return fmt.Errorf("--role %q is not supported; use traditional, control_plane or data_plane", role)
	}
	return nil
}

// checkRole is CheckRole for Run's options, which also need a data
// plane's store to be in memory and hybrid mode's cluster certificate.
func checkRole(o Options) error {
	if err := CheckRole(o.Role, o.Store.Database(), o.Cluster.Listen, o.Cluster.ControlPlane); err != nil {
		return err
	}
	if o.Role == RoleDataPlane {
		if _, ok := o.Store.(*store.Memory); !ok {
			return errors.New("--role data_plane needs --database off: only in-memory storage can be used on a data plane")
		}
	}
	if o.Role != "" && o.Role != RoleTraditional && o.Cluster.TLS == nil {
		return errors.New("cluster certificate and key must be provided to use hybrid mode: set --cluster-cert and --cluster-cert-key")
	}
	return nil
}

type listener struct {
	ln   net.Listener
	srv  *http.Server
	tls  bool
	kind string
	spec server.ListenSpec
}

// Run serves until ctx ends or a listener fails.
func Run(ctx context.Context, o Options) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st := o.Store
	defer st.Close()
	if err := checkRole(o); err != nil {
		return err
	}
	if o.Role == "" {
		o.Role = RoleTraditional
	}
	nodeID := ""
	var dp *cluster.DataPlane
	if o.Role == RoleDataPlane {
		id, err := dataPlaneNodeID(o.Cluster.PersistDir)
		if err != nil {
			return err
		}
		if dp, err = newDataPlane(o, id, log); err != nil {
			return err
		}
		nodeID = id
	}
	var dbReachable func() bool
	if st.Database() != "off" {
		dbReachable = func() bool {
			pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return st.Ping(pctx) == nil
		}
	}
	headersSetting, upstreamSetting := o.Headers, o.HeadersUpstream
	if headersSetting == "" {
		headersSetting = headerconf.DefaultHeaders
	}
	if upstreamSetting == "" {
		upstreamSetting = headerconf.DefaultHeadersUpstream
	}
	headers, err := headerconf.ParseHeaders(headersSetting)
	if err != nil {
		return fmt.Errorf("--headers: %w", err)
	}
	upHeaders, err := headerconf.ParseHeadersUpstream(upstreamSetting)
	if err != nil {
		return fmt.Errorf("--headers-upstream: %w", err)
	}
	tokens := oauth2Tokens(st)
	e, err := server.New(server.Options{Plugins: plugins.Registry(), Log: log, AccessLog: o.AccessLog, DatastoreReachable: dbReachable,
		NodeID: nodeID, OAuth2: tokens, TrustedIPs: o.TrustedIPs, RealIPHeader: o.RealIPHeader, RealIPRecursive: o.RealIPRecursive,
		EventLoops: o.EventLoops, ProxyProtocolTimeout: o.ProxyProtocolTimeout, Headers: headers, HeadersUpstream: upHeaders})
	if err != nil {
		return err
	}
	defer e.Close()
	if o.DeclarativeConfig != "" {
		if err := loadDeclarative(ctx, st, o.DeclarativeConfig); err != nil {
			return err
		}
	}
	if dp != nil {
		// A restarted data plane serves its last configuration while the
		// control plane is unreachable.
		if err := dp.LoadPersisted(ctx); err != nil {
			return err
		}
	}
	// Apply the stored configuration before accepting traffic.
	applied, err := sync1(ctx, st, e, 0, log)
	if err != nil {
		return err
	}

	var lns []listener
	closeAll := func() {
		for _, l := range lns {
			_ = l.ln.Close()
		}
	}
	proxySpecs, err := server.ParseListen(o.ProxyListen)
	if err != nil {
		return fmt.Errorf("--proxy-listen: %w", err)
	}
	var proxyAddrs, adminAddrs, statusAddrs []string
	for _, sp := range proxySpecs {
		ln, err := sp.Listen(ctx)
		if err != nil {
			closeAll()
			return fmt.Errorf("proxy listener %s: %w (is another gateway running? change --proxy-listen)", sp.Addr, err)
		}
		lns = append(lns, listener{ln: ln, tls: sp.SSL, kind: "proxy", spec: sp})
		proxyAddrs = append(proxyAddrs, scheme(sp.SSL)+ln.Addr().String())
	}
	var cp *cluster.ControlPlane
	var clusterLn net.Listener
	if o.Role == RoleControlPlane {
		if cp, err = cluster.NewControlPlane(cluster.ControlPlaneOptions{Store: st, TLS: o.Cluster.TLS,
			UpdateFrequency: o.Cluster.UpdateFrequency, PurgeDelay: o.Cluster.PurgeDelay, Node: cluster.Node{Log: log}}); err != nil {
			closeAll()
			return err
		}
		if clusterLn, err = net.Listen("tcp", o.Cluster.Listen); err != nil {
			closeAll()
			return fmt.Errorf("cluster listener %s: %w (change --cluster-listen)", o.Cluster.Listen, err)
		}
		lns = append(lns, listener{ln: clusterLn, kind: "cluster"})
	}
	conf := map[string]any{"proxy_listen": splitList(o.ProxyListen), "admin_listen": splitList(o.AdminListen),
		"status_listen": splitList(o.StatusListen), "role": o.Role}
	realIPConfiguration(conf, o)
	conf["headers"], conf["enabled_headers"] = headerconf.Tokens(headersSetting), headers.Enabled()
	conf["headers_upstream"], conf["enabled_headers_upstream"] = headerconf.Tokens(upstreamSetting), upHeaders.EnabledUpstream()
	if o.Role != RoleTraditional {
		conf["cluster_mtls"] = o.Cluster.TLS.Mode
		conf["cluster_listen"] = splitList(o.Cluster.Listen)
		conf["cluster_control_plane"] = o.Cluster.ControlPlane
	}
	var dpLister admin.DataPlaneLister
	if cp != nil {
		dpLister = cp
	}
	var clusterLevel store.ClusterLogLevelStore
	if cl, ok := st.(store.ClusterLogLevelStore); ok && st.Database() != "off" && o.LogLevel != nil {
		clusterLevel = cl
	}
	adm := admin.New(admin.Options{
		Store: st, NodeID: e.NodeID(), Logger: log, Health: healthReporter{e}, Clustering: dpLister,
		Configuration: conf, Headers: headers, LogLevel: o.LogLevel, ClusterLogLevel: clusterLevel,
		Ready: func() error {
			if e.Config().Version == 0 {
				if v, err := st.Version(context.Background()); err == nil && v > 0 {
					return errors.New("router not yet built")
				}
			}
			return nil
		},
		Stats:   func() admin.ServerStats { return stats(e) },
		Metrics: e.MetricsHandler(),
	})
	{
		adminSpecs, err := server.ParseListen(o.AdminListen)
		if err == nil {
			err = noProxyProtocol(adminSpecs)
		}
		if err != nil {
			closeAll()
			return fmt.Errorf("--admin-listen: %w", err)
		}
		h := adm.Handler()
		for _, sp := range adminSpecs {
			ln, err := sp.Listen(ctx)
			if err != nil {
				closeAll()
				return fmt.Errorf("admin listener %s: %w (change --admin-listen)", sp.Addr, err)
			}
			lns = append(lns, listener{ln: ln, srv: plainServer(h, e, sp), tls: sp.SSL, kind: "admin"})
			adminAddrs = append(adminAddrs, scheme(sp.SSL)+ln.Addr().String())
		}
	}
	statusSpecs, err := server.ParseListen(o.StatusListen)
	if err == nil {
		err = noProxyProtocol(statusSpecs)
	}
	if err != nil {
		closeAll()
		return fmt.Errorf("--status-listen: %w", err)
	}
	sh := statusHandler(adm, e)
	for _, sp := range statusSpecs {
		ln, err := sp.Listen(ctx)
		if err != nil {
			closeAll()
			return fmt.Errorf("status listener %s: %w (change --status-listen)", sp.Addr, err)
		}
		lns = append(lns, listener{ln: ln, srv: plainServer(sh, e, sp), tls: sp.SSL, kind: "status"})
		statusAddrs = append(statusAddrs, scheme(sp.SSL)+ln.Addr().String())
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(lns)+1)
	for _, l := range lns {
		wg.Add(1)
		go func(l listener) {
			defer wg.Done()
			var err error
			switch l.kind {
			case "proxy":
				err = e.ServeProxy(ctx, l.ln, l.spec)
			case "cluster":
				err = cp.Serve(ctx, l.ln)
			default:
				err = server.Serve(ctx, l.srv, l.ln, l.tls)
			}
			if err != nil {
				errc <- fmt.Errorf("%s listener %s: %w", l.kind, l.ln.Addr(), err)
			}
		}(l)
	}
	if dp != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = dp.Run(ctx)
		}()
	}
	if tokens != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			purgeOAuth2(ctx, tokens, log)
		}()
	}
	if clusterLevel != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			followClusterLogLevel(ctx, clusterLevel, o.LogLevel, cmp.Or(o.LogLevelPoll, 2*time.Second), log)
		}()
	}
	if clusterLn != nil && o.Cluster.Ready != nil {
		o.Cluster.Ready(clusterLn.Addr().String())
	}
	if o.Ready != nil {
		o.Ready(proxyAddrs, adminAddrs, statusAddrs)
	}
	log.Info("gateway started", "role", o.Role, "database", st.Database(), "proxy", strings.Join(proxyAddrs, ","),
		"admin", strings.Join(adminAddrs, ","), "status", strings.Join(statusAddrs, ","))

	// Follow the store: every committed change is compiled and swapped in.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			ch := st.Changed()
			v, err := sync1(ctx, st, e, applied, log)
			if err == nil {
				applied = v
			}
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
		}
	}()
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	wg.Wait()
	return runErr
}

// followClusterLogLevel applies the log levels set for the whole cluster
// (/debug/cluster/log-level, on this node or another sharing the database)
// as it finds them, checking every poll, for what is left of their time. A
// level set before the node started is applied only while its time runs.
func followClusterLogLevel(ctx context.Context, st store.ClusterLogLevelStore, lv *loglevel.Level, poll time.Duration, log *slog.Logger) {
	var seen int64 = -1
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		cur, err := st.ClusterLogLevel(ctx)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				log.Warn("cluster log level: cannot read it from the database; checking again later", "error", err)
			}
		case cur.Serial != seen:
			first := seen < 0
			seen = cur.Serial
			left := time.Until(cur.Until)
			level, ok := loglevel.Parse(cur.Level)
			if cur.Serial == 0 || !ok || (first && cur.Until.IsZero()) || (!cur.Until.IsZero() && left <= 0) {
				break
			}
			if cur.Until.IsZero() {
				left = 0 // until the next change
			}
			lv.Set(level, left)
			log.Info("log level set for the cluster", "level", cur.Level, "until", cur.Until)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sync1 applies the store's configuration when its version differs from
// applied and returns the version now served.
func sync1(ctx context.Context, st store.Store, e *server.Engine, applied uint64, log *slog.Logger) (uint64, error) {
	cfg, err := st.Snapshot(ctx)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return applied, err
		}
		log.Error("reading the configuration failed; still serving the previous one", "error", err)
		return applied, fmt.Errorf("read the configuration from the %s store: %w", st.Database(), err)
	}
	if cfg.Version == applied && applied != 0 {
		return applied, nil
	}
	if err := e.Update(cfg); err != nil {
		log.Error("configuration rejected; still serving the previous one", "error", err)
		return applied, err
	}
	return cfg.Version, nil
}

func scheme(tls bool) string {
	if tls {
		return "https://"
	}
	return "http://"
}

func plainServer(h http.Handler, e *server.Engine, sp server.ListenSpec) *http.Server {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	if sp.SSL && sp.HTTP2 {
		p.SetHTTP2(true)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 75 * time.Second, Protocols: p}
	if sp.SSL {
		srv.TLSConfig = e.TLSConfig()
	}
	return srv
}

// statusHandler serves Kong's status listener: /status and /status/ready
// (answered by the Admin API's implementation) and /metrics.
func statusHandler(adm *admin.Server, e *server.Engine) http.Handler {
	metrics := e.MetricsHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			metrics.ServeHTTP(w, r)
		case "/status", "/status/ready":
			adm.ServeHTTP(w, r)
		default:
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"Not found"}`))
		}
	})
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func stats(e *server.Engine) admin.ServerStats {
	m := e.Metrics()
	active := m.ConnsActive.Load()
	return admin.ServerStats{
		ConnectionsAccepted: m.ConnsAccepted.Load(), ConnectionsHandled: m.ConnsAccepted.Load(),
		ConnectionsActive: active, ConnectionsWaiting: active, TotalRequests: m.TotalRequests.Load(),
	}
}

// healthReporter exposes the balancers' target health to the Admin API.
type healthReporter struct{ e *server.Engine }

func (h healthReporter) UpstreamHealth(upstreamID string) (map[string]string, string) {
	byName, overall := h.e.Balancers().UpstreamHealth(upstreamID)
	out := map[string]string{}
	for _, t := range h.e.Config().Targets {
		if t.Upstream != nil && t.Upstream.ID == upstreamID {
			if st, ok := byName[t.Target]; ok {
				out[t.ID] = st
			}
		}
	}
	return out, overall
}

func (h healthReporter) SetTargetHealth(upstreamID, target string, healthy bool) error {
	return h.e.Balancers().SetHealth(upstreamID, target, healthy)
}

// loadDeclarative parses a DB-less file and replaces the store's contents.
func loadDeclarative(ctx context.Context, st store.Store, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read --declarative-config: %w", err)
	}
	// declarative.Load records the md5 of the file, which /status reports
	// as configuration_hash and POST /config?check_hash=1 compares with.
	if _, err := declarative.Load(ctx, st, data, time.Now()); err != nil {
		return fmt.Errorf("--declarative-config %s: %w", path, err)
	}
	return nil
}

// newDataPlane builds the hybrid-mode client of a data plane node.
func newDataPlane(o Options, nodeID string, log *slog.Logger) (*cluster.DataPlane, error) {
	persist := ""
	if o.Cluster.PersistDir != "" {
		persist = filepath.Join(o.Cluster.PersistDir, "config.json.gz")
	}
	return cluster.NewDataPlane(cluster.DataPlaneOptions{
		Store: o.Store.(*store.Memory), ControlPlane: o.Cluster.ControlPlane, TLS: o.Cluster.TLS,
		NodeID: nodeID, Node: cluster.Node{Version: o.Cluster.Version, Log: log}, Labels: o.Cluster.Labels, PersistPath: persist,
		PingInterval: o.Cluster.PingInterval, ReconnectDelay: o.Cluster.ReconnectDelay,
		ProcessConf: map[string]any{"role": RoleDataPlane, "database": "off", "proxy_listen": splitList(o.ProxyListen)},
	})
}

// dataPlaneNodeID keeps a data plane's node id across restarts in
// <dir>/node_id, as Kong keeps it in its prefix, so the control plane
// lists one row per node. Without a directory a fresh id is used.
func dataPlaneNodeID(dir string) (string, error) {
	if dir == "" {
		return entity.NewID(), nil
	}
	path := filepath.Join(dir, "node_id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); schema.IsUUID(id) {
			return id, nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create the data plane directory %s (--prefix): %w", dir, err)
	}
	id := entity.NewID()
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s (--prefix): %w", path, err)
	}
	return id, nil
}

// realIPConfiguration reports trusted_ips, real_ip_header and
// real_ip_recursive in GET / configuration as Kong does (a single address
// without its /32 or /128).
func realIPConfiguration(conf map[string]any, o Options) {
	ips := make([]string, 0, len(o.TrustedIPs))
	for _, p := range o.TrustedIPs {
		if p.IsSingleIP() {
			ips = append(ips, p.Addr().String())
		} else {
			ips = append(ips, p.String())
		}
	}
	header := o.RealIPHeader
	if header == "" {
		header = server.RealIPHeaderDefault
	}
	recursive := "off"
	if o.RealIPRecursive {
		recursive = "on"
	}
	conf["trusted_ips"], conf["real_ip_header"], conf["real_ip_recursive"] = ips, header, recursive
}

// noProxyProtocol refuses the proxy_protocol flag on the admin and status
// listeners: kiln reads the PROXY protocol on proxy listeners only.
func noProxyProtocol(specs []server.ListenSpec) error {
	for _, sp := range specs {
		if sp.ProxyProtocol {
			return fmt.Errorf("%s: the proxy_protocol flag is supported on --proxy-listen entries only; remove it here", sp.Addr)
		}
	}
	return nil
}
