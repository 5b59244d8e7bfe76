package server

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"

	"github.com/kiln-dev/kiln/pkg/proxy/proxyproto"
)

// The PROXY protocol on proxy listeners (Kong's proxy_protocol listen
// flag): ServeProxy wraps such a listener so that every connection's
// header is read before HTTP (or TLS) starts, and the header's client
// address travels with each request in its context, for real_ip_header
// proxy_protocol.

// proxyAddrKey is the request context key of the PROXY header's client
// address (a string as clientIP returns addresses).
type proxyAddrKey struct{}

// proxyProtoListener wraps ln when spec asks for the PROXY protocol.
func (e *Engine) proxyProtoListener(ln net.Listener, spec ListenSpec) net.Listener {
	if !spec.ProxyProtocol {
		return ln
	}
	return proxyproto.NewListener(ln, proxyproto.Options{HeaderTimeout: e.opts.ProxyProtocolTimeout, Log: e.log})
}

// connProxyAddr returns the PROXY header's client address of nc (as
// accepted from a wrapped listener, possibly inside a TLS or h2c hand-off
// connection); false for other connections and for headers without an
// address (LOCAL, UNKNOWN).
func connProxyAddr(nc net.Conn) (string, bool) {
	for {
		switch c := nc.(type) {
		case *proxyproto.Conn:
			ap, ok := c.ProxyAddr()
			if !ok {
				return "", false
			}
			return ap.Addr().Unmap().String(), true
		case *tls.Conn:
			nc = c.NetConn()
		case *tlsSocket:
			nc = c.Conn
		case *prefixConn:
			nc = c.Conn
		case *sysConn:
			if c.outer == nil {
				return "", false
			}
			nc = c.outer
		default:
			return "", false
		}
	}
}

// proxyConnContext returns the request context for the HTTP/1.x server's
// connection nc: nil (none needed) unless nc has a PROXY header address.
func proxyConnContext(nc net.Conn) context.Context {
	a, ok := connProxyAddr(nc)
	if !ok {
		return nil
	}
	return context.WithValue(context.Background(), proxyAddrKey{}, a)
}

// withProxyAddr is net/http's ConnContext for PROXY protocol listeners.
func withProxyAddr(ctx context.Context, nc net.Conn) context.Context {
	if a, ok := connProxyAddr(nc); ok {
		return context.WithValue(ctx, proxyAddrKey{}, a)
	}
	return ctx
}

// rawConn returns the TCP connection under a PROXY protocol connection
// whose header left no bytes pending, so that the HTTP/1.x server keeps
// its raw-socket path; nc otherwise.
func rawConn(nc net.Conn) net.Conn {
	if pc, ok := nc.(*proxyproto.Conn); ok {
		if r, ok := pc.Raw(); ok {
			return r
		}
	}
	return nc
}

// proxyAddr returns the PROXY header's client address of r's connection.
func proxyAddr(r *http.Request) (string, bool) {
	a, ok := r.Context().Value(proxyAddrKey{}).(string)
	return a, ok
}
