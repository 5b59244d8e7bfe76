// Package gateway runs a complete kiln gateway node: it opens the entity
// store (SQLite, PostgreSQL or in-memory for DB-less), serves the Admin API,
// the proxy listeners and the status listener, and recompiles the data plane
// on every committed change, swapping it in atomically without restarting
// listeners or pausing traffic.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/admin"
	"github.com/kiln-dev/kiln/pkg/proxy/declarative"
	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
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
	var dbReachable func() bool
	if st.Database() != "off" {
		dbReachable = func() bool {
			pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return st.Ping(pctx) == nil
		}
	}
	e, err := server.New(server.Options{Plugins: plugins.Registry(), Log: log, AccessLog: o.AccessLog, DatastoreReachable: dbReachable})
	if err != nil {
		return err
	}
	defer e.Close()
	if o.DeclarativeConfig != "" {
		if err := loadDeclarative(ctx, st, o.DeclarativeConfig); err != nil {
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
		ln, err := net.Listen("tcp", sp.Addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("proxy listener %s: %w (is another gateway running? change --proxy-listen)", sp.Addr, err)
		}
		lns = append(lns, listener{ln: ln, tls: sp.SSL, kind: "proxy", spec: sp})
		proxyAddrs = append(proxyAddrs, scheme(sp.SSL)+ln.Addr().String())
	}
	adm := admin.New(admin.Options{
		Store: st, NodeID: e.NodeID(), Logger: log, Health: healthReporter{e},
		Configuration: map[string]any{"proxy_listen": splitList(o.ProxyListen), "admin_listen": splitList(o.AdminListen),
			"status_listen": splitList(o.StatusListen)},
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
		if err != nil {
			closeAll()
			return fmt.Errorf("--admin-listen: %w", err)
		}
		h := adm.Handler()
		for _, sp := range adminSpecs {
			ln, err := net.Listen("tcp", sp.Addr)
			if err != nil {
				closeAll()
				return fmt.Errorf("admin listener %s: %w (change --admin-listen)", sp.Addr, err)
			}
			lns = append(lns, listener{ln: ln, srv: plainServer(h, e, sp), tls: sp.SSL, kind: "admin"})
			adminAddrs = append(adminAddrs, scheme(sp.SSL)+ln.Addr().String())
		}
	}
	statusSpecs, err := server.ParseListen(o.StatusListen)
	if err != nil {
		closeAll()
		return fmt.Errorf("--status-listen: %w", err)
	}
	sh := statusHandler(adm, e)
	for _, sp := range statusSpecs {
		ln, err := net.Listen("tcp", sp.Addr)
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
			if l.kind == "proxy" {
				err = e.ServeProxy(ctx, l.ln, l.spec)
			} else {
				err = server.Serve(ctx, l.srv, l.ln, l.tls)
			}
			if err != nil {
				errc <- fmt.Errorf("%s listener %s: %w", l.kind, l.ln.Addr(), err)
			}
		}(l)
	}
	if o.Ready != nil {
		o.Ready(proxyAddrs, adminAddrs, statusAddrs)
	}
	log.Info("gateway started", "database", st.Database(), "proxy", strings.Join(proxyAddrs, ","),
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
	recs, err := declarative.Parse(data, time.Now())
	if err != nil {
		return fmt.Errorf("--declarative-config %s: %w", path, err)
	}
	if err := st.Replace(ctx, recs); err != nil {
		return fmt.Errorf("load --declarative-config %s: %w", path, err)
	}
	return nil
}
