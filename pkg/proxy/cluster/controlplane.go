package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kiln-dev/kiln/pkg/proxy/confighash"
	"github.com/kiln-dev/kiln/pkg/proxy/declarative"
	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// ControlPlaneOptions configure a ControlPlane. Store and TLS are required;
// Store also keeps the data plane rows (store.DataPlaneStore).
type ControlPlaneOptions struct {
	Store store.Store
	TLS   *TLS
	Node
	// UpdateFrequency is the minimum time between two pushes after the
	// first (db_update_frequency; default 5 s).
	UpdateFrequency time.Duration
	// PurgeDelay is how long a DP's row outlives its last update
	// (cluster_data_plane_purge_delay; default 14 days).
	PurgeDelay time.Duration
}

// Node holds the options both roles share.
type Node struct {
	// Version is the Kong version the node speaks (default
	// entity.KongVersion).
	Version string
	// Plugins are the node's plugins (default LocalPlugins()).
	Plugins []PluginInfo
	// PingWait drops a link after this much silence (default 45 s).
	PingWait time.Duration
	Log      *slog.Logger
	Now      func() time.Time
}

func (n *Node) setDefaults() {
	if n.Version == "" {
		n.Version = entity.KongVersion
	}
	if n.Plugins == nil {
		n.Plugins = LocalPlugins()
	}
	if n.PingWait <= 0 {
		n.PingWait = PingWait
	}
	if n.Log == nil {
		n.Log = slog.New(slog.DiscardHandler)
	}
	if n.Now == nil {
		n.Now = time.Now
	}
}

// ControlPlane serves /v1/outlet to data planes and pushes the store's
// configuration to them. It records each DP in the store's data plane rows
// (Kong's clustering_data_planes table) on every ping, when its sync status
// changes and when it is refused, each time with a time to live of
// PurgeDelay: in a database, the rows survive a CP restart
// and CPs sharing the database list each other's DPs.
type ControlPlane struct {
	o        ControlPlaneOptions
	dps      store.DataPlaneStore
	log      *slog.Logger
	pluginsM map[string]pluginVersion
	upgrader websocket.Upgrader
	links    sync.WaitGroup // connected DPs' handlers
	exportMu sync.Mutex     // serialises refresh: snapshots publish in order

	mu      sync.Mutex
	current *export // the latest configuration frame
	clients map[*cpLink]struct{}
	closing bool // Serve is returning: no new links
}

// export is one rendered configuration.
type export struct {
	payload    []byte // gzip JSON reconfigure frame
	hash       string
	configured map[string]bool // plugin names present in the configuration
}

// purgeInterval is how often a control plane deletes expired DP rows.
const purgeInterval = time.Minute

// NewControlPlane checks the options and returns a control plane.
func NewControlPlane(o ControlPlaneOptions) (*ControlPlane, error) {
	if o.Store == nil || o.TLS == nil {
		return nil, errors.New("cluster: a control plane needs a store and cluster TLS material")
	}
	dps, ok := o.Store.(store.DataPlaneStore)
	if !ok {
		return nil, fmt.Errorf("cluster: the %s store cannot keep data plane rows", o.Store.Database())
	}
	o.setDefaults()
	if o.UpdateFrequency <= 0 {
		o.UpdateFrequency = DefaultUpdateFrequency
	}
	if o.PurgeDelay <= 0 {
		o.PurgeDelay = DefaultPurgeDelay
	}
	cp := &ControlPlane{
		o: o, dps: dps, log: o.Log.With("component", "clustering", "role", "control_plane"),
		pluginsM: pluginMap(o.Plugins),
		clients:  map[*cpLink]struct{}{},
	}
	cp.upgrader = websocket.Upgrader{
		HandshakeTimeout: FrameTimeout,
		// DPs are not browsers; they are authenticated by certificate.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return cp, nil
}

// Serve accepts DP connections on ln (plain TCP: Serve adds TLS) until ctx
// ends, and follows the store to push every change.
func (cp *ControlPlane) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := cp.o.Store.Changed()
	if err := cp.refresh(ctx); err != nil {
		cp.log.Error("unable to export the initial configuration; data planes get it after the next change", "error", err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		cp.pushLoop(ctx, changed)
	}()
	go func() {
		defer wg.Done()
		cp.purgeLoop(ctx)
	}()
	srv := &http.Server{
		Handler:           cp,
		ReadHeaderTimeout: FrameTimeout * 2,
		ErrorLog:          slog.NewLogLogger(cp.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, cp.o.TLS.serverConfig())) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	_ = srv.Close()
	cancel()
	cp.mu.Lock()
	cp.closing = true
	for l := range cp.clients {
		_ = l.conn.Close()
	}
	cp.mu.Unlock()
	wg.Wait()
	cp.links.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// pushLoop exports and broadcasts the configuration after each change: the
// first change at once, later ones at most every UpdateFrequency.
func (cp *ControlPlane) pushLoop(ctx context.Context, changed <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		changed = cp.o.Store.Changed()
		if err := cp.refresh(ctx); err != nil {
			cp.log.Error("unable to export the configuration; data planes keep the previous one", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(cp.o.UpdateFrequency):
		}
	}
}

// purgeLoop deletes expired DP rows now and every purgeInterval. Every CP
// sharing a database does so; the deletes are idempotent.
func (cp *ControlPlane) purgeLoop(ctx context.Context) {
	t := time.NewTicker(purgeInterval)
	defer t.Stop()
	for {
		n, err := cp.dps.PurgeDataPlanes(ctx, cp.o.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			cp.log.Warn("unable to purge expired data plane rows; retrying later", "error", err)
		case n > 0:
			cp.log.Info("purged expired data plane rows", "rows", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh renders the store's configuration and queues it to every DP.
func (cp *ControlPlane) refresh(ctx context.Context) error {
	cp.exportMu.Lock()
	defer cp.exportMu.Unlock()
	cfg, err := cp.o.Store.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("read the configuration: %w", err)
	}
	table, err := declarative.Table(cfg)
	if err != nil {
		return err
	}
	msg, err := NewReconfigure(table, cp.o.Now())
	if err != nil {
		return err
	}
	payload, err := EncodeReconfigure(msg)
	if err != nil {
		return err
	}
	ex := &export{payload: payload, hash: msg.ConfigHash, configured: map[string]bool{}}
	for _, p := range cfg.Plugins {
		ex.configured[p.Name] = true
	}
	cp.mu.Lock()
	cp.current = ex
	for l := range cp.clients {
		l.notify()
	}
	n := len(cp.clients)
	cp.mu.Unlock()
	cp.log.Debug("configuration pushed", "config_hash", msg.ConfigHash, "data_planes", n)
	return nil
}

// ConfigHash is the hash of the configuration the CP currently serves.
func (cp *ControlPlane) ConfigHash() string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.current == nil {
		return confighash.Empty
	}
	return cp.current.hash
}

// ServeHTTP handles /v1/outlet.
func (cp *ControlPlane) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != OutletPath {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	id, hostname, version := q.Get("node_id"), q.Get("node_hostname"), q.Get("node_version")
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	log := cp.log.With("dp_id", id, "dp_host", hostname, "dp_ip", ip, "dp_version", version)
	if err := cp.o.TLS.checkPeer(r.TLS); err != nil {
		// Kong answers 444: close the connection without a response.
		log.Error("refusing data plane", "error", err)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		w.WriteHeader(http.StatusForbidden)
		return
	}
	if id == "" || version == "" {
		log.Warn("data plane did not pass its node_id and node_version")
		http.Error(w, "node_id and node_version are required", http.StatusBadRequest)
		return
	}
	cp.mu.Lock()
	if cp.closing {
		cp.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	cp.links.Add(1)
	cp.mu.Unlock()
	defer cp.links.Done()
	conn, err := cp.upgrader.Upgrade(w, r, nil)
	if err != nil {
		log.Error("failed to perform server side websocket handshake", "error", err)
		return
	}
	conn.SetReadLimit(MaxPayload)
	row := &store.DataPlane{ID: id, IP: ip, Hostname: hostname, Version: version, SyncStatus: string(StatusUnknown), ConfigHash: confighash.Empty}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		row.CertExpiry = r.TLS.PeerCertificates[0].NotAfter.Unix()
	}
	l := &cpLink{cp: cp, conn: conn, row: row, log: log, wake: make(chan struct{}, 1)}
	l.run(r.Context())
}

// cpLink is one connected DP.
type cpLink struct {
	cp   *ControlPlane
	conn *websocket.Conn
	log  *slog.Logger
	wake chan struct{}

	mu      sync.Mutex // guards row and plugins
	row     *store.DataPlane
	plugins map[string]pluginVersion
}

func (l *cpLink) notify() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *cpLink) run(ctx context.Context) {
	defer l.conn.Close()
	cp := l.cp
	_ = l.conn.SetReadDeadline(time.Now().Add(FrameTimeout))
	typ, data, err := l.conn.ReadMessage()
	if err == nil && typ != websocket.BinaryMessage {
		err = fmt.Errorf("expected a binary basic_info frame, got frame type %d", typ)
	}
	var info *BasicInfo
	if err == nil {
		info, err = DecodeBasicInfo(data)
	}
	if err != nil {
		l.log.Error("failed to receive websocket basic info frame", "error", err)
		l.close(websocket.CloseProtocolError, "")
		return
	}
	l.row.Labels = info.Labels
	l.plugins = pluginMap(info.Plugins)
	if status, err := CheckVersion(cp.o.Version, l.row.Version); err != nil {
		l.log.Error("refusing data plane", "error", err)
		l.row.SyncStatus = string(status)
		l.record(ctx, false)
		l.close(websocket.ClosePolicyViolation, "")
		return
	}
	l.log.Info("data plane connected")
	cp.mu.Lock()
	missing := cp.current == nil
	cp.mu.Unlock()
	if missing {
		// The export failed so far; try again for this DP, as Kong does.
		if err := cp.refresh(ctx); err != nil {
			l.log.Error("unable to export the configuration for the data plane", "error", err)
		}
	}
	cp.mu.Lock()
	cp.clients[l] = struct{}{}
	if cp.current != nil {
		status, _ := checkPlugins(cp.o.Plugins, cp.pluginsM, cp.current.configured, l.plugins)
		l.mu.Lock()
		l.row.SyncStatus = string(status)
		l.mu.Unlock()
		l.notify()
	}
	cp.mu.Unlock()
	defer func() {
		cp.mu.Lock()
		delete(cp.clients, l)
		cp.mu.Unlock()
	}()

	done := make(chan struct{})
	defer close(done)
	go l.writer(ctx, done)

	l.conn.SetPingHandler(func(payload string) error {
		_ = l.conn.SetReadDeadline(time.Now().Add(cp.o.PingWait))
		if len(payload) == 32 {
			l.mu.Lock()
			l.row.ConfigHash = payload
			l.mu.Unlock()
		} else {
			l.log.Warn("ignoring a ping whose payload is not a 32-character config hash", "length", len(payload))
		}
		l.record(ctx, true)
		err := l.conn.WriteControl(websocket.PongMessage, nil, time.Now().Add(FrameTimeout))
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
			return err
		}
		return nil
	})
	_ = l.conn.SetReadDeadline(time.Now().Add(cp.o.PingWait))
	for {
		typ, _, err := l.conn.NextReader()
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				l.log.Error(fmt.Sprintf("did not receive ping frame from data plane within %s", cp.o.PingWait))
			case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway):
				l.log.Info("data plane closed the connection")
			default:
				l.log.Info("data plane connection ended", "error", err)
			}
			return
		}
		// Sync v1 DPs only ping (Konnect DPs may report errors); nothing
		// else is expected, so data frames are logged and dropped.
		l.log.Debug("ignoring a data frame from the data plane", "type", typ)
	}
}

// writer sends the configuration whenever it changes (or the link opens),
// unless the DP lacks a configured plugin: then the frame is withheld and
// the link stays up, as in Kong.
func (l *cpLink) writer(ctx context.Context, done <-chan struct{}) {
	cp := l.cp
	for {
		select {
		case <-ctx.Done():
			l.close(websocket.CloseGoingAway, "")
			_ = l.conn.Close()
			return
		case <-done:
			return
		case <-l.wake:
		}
		cp.mu.Lock()
		ex := cp.current
		cp.mu.Unlock()
		if ex == nil {
			continue
		}
		status, err := checkPlugins(cp.o.Plugins, cp.pluginsM, ex.configured, l.plugins)
		l.mu.Lock()
		changed := l.row.SyncStatus != string(status)
		l.row.SyncStatus = string(status)
		l.mu.Unlock()
		if err != nil {
			l.log.Warn("unable to send updated configuration to data plane", "error", err)
			if changed {
				l.record(ctx, false)
			}
			continue
		}
		_ = l.conn.SetWriteDeadline(time.Now().Add(FrameTimeout * 6))
		if err := l.conn.WriteMessage(websocket.BinaryMessage, ex.payload); err != nil {
			l.log.Error("unable to send updated configuration to data plane", "error", err)
			_ = l.conn.Close()
			return
		}
		l.log.Debug("sent config update to data plane", "config_hash", ex.hash)
	}
}

func (l *cpLink) close(code int, text string) {
	_ = l.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(FrameTimeout))
}

// record upserts the DP's row with a fresh time to live; seen marks a ping
// (last_seen). A failed write is logged: the next ping writes again.
func (l *cpLink) record(ctx context.Context, seen bool) {
	now := l.cp.o.Now()
	l.mu.Lock()
	if seen || l.row.LastSeen.IsZero() {
		l.row.LastSeen = now
	}
	l.row.UpdatedAt = now
	l.row.ExpiresAt = now.Add(l.cp.o.PurgeDelay)
	row := *l.row
	l.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, FrameTimeout)
	defer cancel()
	if err := l.cp.dps.UpsertDataPlane(wctx, row); err != nil && ctx.Err() == nil {
		l.log.Error("unable to record the data plane", "error", err)
	}
}

// DataPlanes returns up to limit /clustering/data-planes rows (all when
// limit <= 0) whose id sorts after after, ordered by id; ttl is the number
// of seconds the row has left.
func (cp *ControlPlane) DataPlanes(ctx context.Context, after string, limit int) ([]map[string]any, error) {
	now := cp.o.Now()
	rows, err := cp.dps.ListDataPlanes(ctx, now, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, len(rows))
	for i, r := range rows {
		var labels any
		if r.Labels != nil {
			labels = r.Labels
		}
		var cert any
		if r.CertExpiry != 0 {
			cert = map[string]any{"expiry_timestamp": r.CertExpiry}
		}
		out[i] = map[string]any{
			"id": r.ID, "ip": r.IP, "hostname": r.Hostname, "version": r.Version,
			"sync_status": r.SyncStatus, "config_hash": r.ConfigHash,
			"last_seen": r.LastSeen.Unix(), "updated_at": r.UpdatedAt.Unix(),
			"labels": labels, "cert_details": cert, "rpc_capabilities": []string{},
			"ttl": int64(r.ExpiresAt.Sub(now) / time.Second),
		}
	}
	return out, nil
}
