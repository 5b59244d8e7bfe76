package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/pkg/pki"
)

// ListenSpec is one proxy listener, parsed from Kong's listen syntax
// ("0.0.0.0:8000", "0.0.0.0:8443 http2 ssl").
type ListenSpec struct {
	Addr  string
	SSL   bool
	HTTP2 bool
	// ProxyProtocol (the proxy_protocol flag): every connection starts
	// with a PROXY protocol header (v1 or v2), before TLS on ssl
	// listeners; connections without one are closed.
	ProxyProtocol bool
	// KeepAlive is the so_keepalive flag: TCP keep-alive probes on the
	// accepted connections. Off unless the flag turns it on, as in Kong
	// (nginx's default), which also spares four system calls per accepted
	// connection. Negative durations and count keep the system's values.
	KeepAlive net.KeepAliveConfig
}

// Listen opens the listening socket, with the spec's socket options.
func (ls ListenSpec) Listen(ctx context.Context) (net.Listener, error) {
	lc := net.ListenConfig{KeepAliveConfig: ls.KeepAlive}
	if !ls.KeepAlive.Enable {
		lc.KeepAlive = -1
	}
	return lc.Listen(ctx, "tcp", ls.Addr)
}

// parseKeepAlive reads so_keepalive's value: on, off, or
// [keepidle]:[keepintvl]:[keepcnt] (times in seconds or with a unit, as
// 30m; an empty part keeps the system's value).
func parseKeepAlive(v string) (net.KeepAliveConfig, error) {
	switch v {
	case "off":
		return net.KeepAliveConfig{}, nil
	case "on":
		return net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}, nil
	}
	parts := strings.Split(v, ":")
	if len(parts) != 3 {
		return net.KeepAliveConfig{}, fmt.Errorf("so_keepalive=%s: use on, off or keepidle:keepintvl:keepcnt (e.g. 30m::10)", v)
	}
	ka := net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
	for i, d := range []*time.Duration{&ka.Idle, &ka.Interval} {
		if parts[i] == "" {
			continue
		}
		t, err := time.ParseDuration(parts[i])
		if n, nerr := strconv.Atoi(parts[i]); nerr == nil {
			t, err = time.Duration(n)*time.Second, nil
		}
		if err != nil || t < time.Second {
			return net.KeepAliveConfig{}, fmt.Errorf("so_keepalive=%s: %q is not a time of at least 1s (seconds, or with a unit: 30s, 30m, 2h)", v, parts[i])
		}
		*d = t
	}
	if parts[2] != "" {
		n, err := strconv.Atoi(parts[2])
		if err != nil || n < 1 {
			return net.KeepAliveConfig{}, fmt.Errorf("so_keepalive=%s: keepcnt %q is not a positive number", v, parts[2])
		}
		ka.Count = n
	}
	return ka, nil
}

// ParseListen parses a comma-separated Kong listen value.
func ParseListen(v string) ([]ListenSpec, error) {
	var out []ListenSpec
	for _, part := range strings.Split(v, ",") {
		f := strings.Fields(part)
		if len(f) == 0 {
			continue
		}
		if f[0] == "off" {
			return nil, nil
		}
		if _, _, err := net.SplitHostPort(f[0]); err != nil {
			return nil, fmt.Errorf("listen address %q: want host:port: %w", f[0], err)
		}
		ls := ListenSpec{Addr: f[0]}
		for _, flag := range f[1:] {
			switch flag {
			case "ssl":
				ls.SSL = true
			case "http2":
				ls.HTTP2 = true
			case "proxy_protocol":
				ls.ProxyProtocol = true
			case "reuseport", "backlog", "deferred", "bind":
			default:
				name, value, isOpt := strings.Cut(flag, "=")
				switch {
				case name == "so_keepalive":
					ka, err := parseKeepAlive(value)
					if err != nil {
						return nil, fmt.Errorf("listen %q: %w", part, err)
					}
					ls.KeepAlive = ka
				case !isOpt:
					return nil, fmt.Errorf("listen %q: unknown flag %q (use ssl, http2, proxy_protocol, so_keepalive=)", part, flag)
				}
			}
		}
		out = append(out, ls)
	}
	return out, nil
}

// NewHTTPServer builds the net/http server that serves a proxy listener's
// HTTP/2 connections, which kiln's HTTP/1.x server hands to it: h2c (prior
// knowledge) on cleartext listeners, h2 chosen by ALPN on TLS ones with
// http2 (its TLSConfig is the one kiln terminates TLS with).
func (e *Engine) NewHTTPServer(ln net.Listener, spec ListenSpec) *http.Server {
	port := 0
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		port = ta.Port
	}
	scheme := "http"
	if spec.SSL {
		scheme = "https"
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	if spec.SSL {
		p.SetHTTP2(spec.HTTP2)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{
		Handler:           e.Handler(port, scheme),
		ReadHeaderTimeout: 60 * time.Second,
		IdleTimeout:       75 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ConnState:         e.handedOffConnState,
		Protocols:         p,
		// What net/http reports of its connections (an HTTP/2 client's
		// protocol error, a failed handshake) goes to the structured log
		// at debug level: a client can cause any amount of it.
		ErrorLog: slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
		// send_timeout for HTTP/2 connections: closed when nothing
		// could be written to them for that long.
		HTTP2: &http.HTTP2Config{WriteByteTimeout: e.sendTimeout},
	}
	if spec.SSL {
		// The HTTP/1.x server terminates TLS itself and hands h2
		// connections to srv, which serves HTTP/2 on them only if its
		// configuration offers h2 (net/http's rule for Serve).
		srv.TLSConfig = e.TLSConfig()
		srv.TLSConfig.NextProtos = []string{"http/1.1"}
		if spec.HTTP2 {
			srv.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
		}
	}
	if spec.ProxyProtocol {
		srv.ConnContext = withProxyAddr
	}
	return srv
}

// TLSConfig serves the configuration's certificates by SNI (the default
// certificate otherwise).
func (e *Engine) TLSConfig() *tls.Config {
	return &tls.Config{GetCertificate: e.GetCertificate, MinVersion: tls.VersionTLS12}
}

// Serve runs srv on ln until ctx ends, then shuts it down gracefully.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, tlsOn bool) error {
	errc := make(chan error, 1)
	go func() {
		var err error
		if tlsOn {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		return nil
	}
}

// MetricsHandler serves the Prometheus metrics (Kong's prometheus plugin
// output, on the status and admin listeners).
func (e *Engine) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = e.state.Metrics.WriteText(w)
	})
}

// selfSigned makes the default certificate served when no SNI matches.
func selfSigned() (*tls.Certificate, error) {
	kp, err := pki.SelfSigned(pki.Options{
		CommonName: "localhost", Organization: []string{"kiln"},
		Hosts: []string{"localhost"}, Usage: pki.ServerAuth, Validity: 10 * pki.DefaultValidity,
	})
	if err != nil {
		return nil, err
	}
	c := kp.TLS()
	return &c, nil
}
