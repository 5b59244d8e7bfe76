// Package server is the gateway's data plane: it compiles configuration
// snapshots (entity.Config) into a router, balancers, plugin chains and a
// TLS certificate index, swaps them atomically on every change, and proxies
// HTTP/1.1, HTTP/2 (TLS and cleartext) and WebSocket traffic the way Kong
// does — headers, upstream path composition, timeouts, retries and error
// bodies included — over pooled keep-alive upstream connections.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/balancer"
	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/headerconf"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// Options configure an Engine.
type Options struct {
	// Plugins are the plugin implementations available.
	Plugins plugin.Registry
	// Log receives operational messages.
	Log *slog.Logger
	// AccessLog, when set, receives one JSON line per proxied request.
	AccessLog io.Writer
	// NodeID identifies this node in metrics and /status.
	NodeID string
	// DefaultCert is served when no SNI matches (Kong's default
	// certificate); generated self-signed when nil.
	DefaultCert *tls.Certificate
	// DatastoreReachable reports the database state for metrics (nil:
	// DB-less, always reachable).
	DatastoreReachable func() bool
	// OAuth2 stores the oauth2 plugin's tokens (nil: no database, the
	// plugin refuses to run).
	OAuth2 store.OAuth2Store
	// Now replaces the plugins' clock (tests); nil: the cached clock.
	Now func() time.Time
	// TrustedIPs are Kong's trusted_ips (see ParseTrustedIPs): peers whose
	// X-Forwarded-* headers are passed upstream as sent and whose
	// RealIPHeader gives the client address. Empty (the default): no peer
	// is trusted.
	TrustedIPs []netip.Prefix
	// RealIPHeader is Kong's real_ip_header ("": X-Real-IP): a header
	// name, or RealIPHeaderProxyProtocol for the address in the PROXY
	// protocol header of connections to proxy_protocol listeners.
	RealIPHeader string
	// RealIPRecursive is Kong's real_ip_recursive.
	RealIPRecursive bool
	// EventLoops is the number of event loops per cleartext proxy
	// listener: 0 is one per GOMAXPROCS, a negative number none (a
	// goroutine per connection).
	EventLoops int
	// ProxyProtocolTimeout bounds the wait for a connection's PROXY
	// protocol header on proxy_protocol listeners (0: 60 s, as nginx's
	// client_header_timeout).
	ProxyProtocolTimeout time.Duration
	// Headers and HeadersUpstream are Kong's headers and headers_upstream
	// settings (headerconf.ParseHeaders, ParseHeadersUpstream): the
	// headers kiln adds to client responses and to upstream requests.
	// Zero: Kong's defaults.
	Headers, HeadersUpstream headerconf.Set
	// ClientBodyTimeout and SendTimeout bound the wait between two reads
	// of a request body and between two writes of a response (on an
	// HTTP/1.x connection or an HTTP/2 stream), as nginx's
	// client_body_timeout and send_timeout: a transfer that keeps moving
	// is never cut, a stalled one is. Zero: 60 s, the value Kong keeps.
	ClientBodyTimeout, SendTimeout time.Duration
}

// Engine is the proxy. Create it with New, feed it configurations with
// Update and serve it with Serve / ServeHTTP-style listeners.
type Engine struct {
	opts   Options
	log    *slog.Logger
	snap   atomic.Pointer[snapshot]
	state  *plugin.State
	bals   *balancer.Manager
	pool   *pool
	ctx    context.Context
	cancel context.CancelFunc
	clock  *coarseClock
	// holds is shared by the event loops of all listeners.
	holds   holdSlots
	ctxPool sync.Pool
	bufPool sync.Pool
	// h1Readers / h1Writers recycle client connection buffers.
	h1Readers sync.Pool
	h1Writers sync.Pool
	// h1Exchanges recycles client connections' request state.
	h1Exchanges sync.Pool
	defCert     *tls.Certificate
	accessMu    sync.Mutex
	// realIP is nil when no peer is trusted.
	realIP *realIP
	// headers and upHeaders are the headers kiln adds to client
	// responses and upstream requests (Options.Headers, HeadersUpstream).
	headers, upHeaders headerconf.Set
	// bodyTimeout and sendTimeout: Options.ClientBodyTimeout, SendTimeout.
	bodyTimeout, sendTimeout time.Duration

	updateMu sync.Mutex
}

// New returns an Engine with an empty configuration (every request gets
// Kong's 404 until Update is called).
func New(opts Options) (*Engine, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.NodeID == "" {
		opts.NodeID = entity.NewID()
	}
	clk := newCoarseClock()
	e := &Engine{opts: opts, log: opts.Log, state: plugin.NewState(), bals: balancer.NewManager(opts.Log), pool: newPool(clk), clock: clk}
	e.holds.max = int32(runtime.GOMAXPROCS(0) - 1)
	e.state.Now, e.state.OAuth2 = clk.Now, opts.OAuth2
	if opts.Now != nil {
		e.state.Now = opts.Now
	}
	rip, err := newRealIP(opts)
	if err != nil {
		return nil, err
	}
	e.realIP = rip
	e.headers, e.upHeaders = opts.Headers.Or(headerconf.Default), opts.HeadersUpstream.Or(headerconf.DefaultUpstream)
	e.bodyTimeout, e.sendTimeout = cmp.Or(opts.ClientBodyTimeout, 60*time.Second), cmp.Or(opts.SendTimeout, 60*time.Second)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.ctxPool.New = func() any { return &plugin.Context{} }
	e.bufPool.New = func() any { b := make([]byte, 32<<10); return &b }
	e.defCert = opts.DefaultCert
	if e.defCert == nil {
		c, err := selfSigned()
		if err != nil {
			return nil, fmt.Errorf("generate the default TLS certificate: %w", err)
		}
		e.defCert = c
	}
	m := e.state.Metrics
	m.NodeID, m.Version = opts.NodeID, entity.KongVersion
	m.TargetHealth = e.targetHealth
	m.DatastoreReachable = opts.DatastoreReachable
	empty, err := entity.NewConfig(0, entity.Records{})
	if err != nil {
		return nil, err
	}
	s, err := compile(empty, opts.Plugins, e.state, e.bals.Update(e.ctx, empty), caPoolFor)
	if err != nil {
		return nil, err
	}
	e.snap.Store(s)
	return e, nil
}

// Update compiles cfg and swaps it in atomically; requests in flight finish
// on the snapshot they started with. On error the running configuration is
// kept.
func (e *Engine) Update(cfg *entity.Config) error {
	e.updateMu.Lock()
	defer e.updateMu.Unlock()
	bals := e.bals.Update(e.ctx, cfg)
	s, err := compile(cfg, e.opts.Plugins, e.state, bals, caPoolFor)
	if err != nil {
		return fmt.Errorf("configuration version %d was not applied: %w", cfg.Version, err)
	}
	e.snap.Swap(s).closeIdle()
	for _, p := range s.plugins.Problems {
		e.log.Error("plugin not applied", "version", cfg.Version, "error", p)
	}
	e.log.Info("configuration applied", "version", cfg.Version, "hash", cfg.Hash, "routes", s.router.Len())
	return nil
}

// NodeID identifies this node.
func (e *Engine) NodeID() string { return e.opts.NodeID }

// Config returns the configuration being served.
func (e *Engine) Config() *entity.Config { return e.snap.Load().cfg }

// Metrics returns the Prometheus registry (for /metrics).
func (e *Engine) Metrics() *plugin.Metrics { return e.state.Metrics }

// Balancers returns the balancer manager (upstream health endpoints).
func (e *Engine) Balancers() *balancer.Manager { return e.bals }

// Close stops health checks and closes idle upstream connections.
func (e *Engine) Close() {
	e.cancel()
	e.bals.Close()
	e.pool.closeAll()
	e.clock.Close()
}

func (e *Engine) targetHealth() []plugin.TargetHealth {
	s := e.snap.Load()
	var out []plugin.TargetHealth
	for _, up := range s.cfg.Upstreams {
		b := s.balancers.ByID(up.ID)
		if b == nil {
			continue
		}
		for _, t := range b.Targets() {
			st := "healthchecks_off"
			switch b.TargetHealth(t) {
			case balancer.Healthy:
				st = "healthy"
			case balancer.Unhealthy:
				st = "unhealthy"
			}
			out = append(out, plugin.TargetHealth{Upstream: up.Name, Target: t.Name, Address: t.Name, State: st})
		}
	}
	return out
}

// GetCertificate serves the certificate for a TLS ClientHello from the
// current snapshot's SNIs, or the default certificate.
func (e *Engine) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := e.snap.Load().certs.lookup(hello); c != nil {
		return c, nil
	}
	return e.defCert, nil
}

// ConnState tracks connection metrics; install it as http.Server.ConnState.
func (e *Engine) ConnState(_ net.Conn, st http.ConnState) {
	m := e.state.Metrics
	switch st {
	case http.StateNew:
		m.ConnsAccepted.Add(1)
		m.ConnsActive.Add(1)
	case http.StateHijacked, http.StateClosed:
		m.ConnsActive.Add(-1)
	}
}

// handedOffConnState is ConnState for net/http's HTTP/2 server, which gets
// its connections from the HTTP/1.x server: that one counted them as
// accepted (and, handing them over, as no longer active).
func (e *Engine) handedOffConnState(nc net.Conn, st http.ConnState) {
	if st == http.StateNew {
		e.state.Metrics.ConnsActive.Add(1)
		return
	}
	e.ConnState(nc, st)
}
