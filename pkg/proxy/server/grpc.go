package server

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"

	"github.com/kiln-dev/kiln/pkg/proxy/balancer"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
	"github.com/kiln-dev/kiln/pkg/proxy/router"
)

// gRPC proxying. A service whose protocol is grpc (HTTP/2 without TLS,
// "h2c") or grpcs (HTTP/2 over TLS) is spoken to in HTTP/2, as Kong's
// grpc_pass does: the call streams both ways at once, each message is
// passed on as it arrives, and the upstream's trailers (grpc-status,
// grpc-message) reach the client. Responses kiln produces itself for a
// gRPC call carry the status in grpc-status and grpc-message, as Kong's
// kong.response.exit and kong.response.error do.

// grpcRequest reports whether r is a gRPC call: HTTP/2 with an
// application/grpc content type (Kong's is_grpc_request).
func grpcRequest(r *http.Request) bool {
	return r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// grpcStatus is the gRPC status Kong sends with an HTTP status.
func grpcStatus(status int) int {
	switch status {
	case 200:
		return 0 // OK
	case 400:
		return 3 // InvalidArgument
	case 401:
		return 16 // Unauthenticated
	case 403:
		return 7 // PermissionDenied
	case 404:
		return 5 // NotFound
	case 409:
		return 6 // AlreadyExists
	case 429:
		return 8 // ResourceExhausted
	case 499:
		return 1 // Canceled
	case 500:
		return 13 // Internal
	case 501:
		return 12 // Unimplemented
	case 503:
		return 14 // Unavailable
	case 504:
		return 4 // DeadlineExceeded
	}
	switch {
	case status >= 500 && status <= 599:
		return 13
	case status >= 400 && status <= 499:
		return 3
	case status >= 200 && status <= 299:
		return 0
	}
	return 2 // Unknown
}

// grpcStatusName is the name Kong gives a gRPC status in grpc-message.
func grpcStatusName(code int) string {
	names := [...]string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
		"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
		"OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}
	if code < 0 || code >= len(names) {
		return "Unknown"
	}
	return names[code]
}

// grpcAnswer makes h the head of a gRPC answer without a body to status:
// grpc-status, and grpc-message with msg, as kong.response.exit sends a
// plugin's message; without msg (kong.response.error, nginx-level errors)
// the status's name and an application/grpc content type.
func grpcAnswer(h http.Header, status int, msg string) {
	code := grpcStatus(status)
	h["Grpc-Status"] = []string{strconv.Itoa(code)}
	if msg == "" {
		msg = grpcStatusName(code)
		h["Content-Type"] = []string{"application/grpc"}
	} else {
		delete(h, "Content-Type")
	}
	h["Grpc-Message"] = []string{msg}
}

// grpcService reports whether a service protocol is spoken in HTTP/2.
func grpcService(protocol string) bool { return protocol == "grpc" || protocol == "grpcs" }

// newGRPCTransport is the HTTP/2 client of a grpc or grpcs service: h2c
// when si.tls is nil, else TLS with si.tls (ALPN h2). Connections are
// kept per target address and multiplex the calls; a connection idle for
// 90 s is closed.
func newGRPCTransport(si *serviceInfo) *http2.Transport {
	t := &http2.Transport{
		AllowHTTP:       si.tls == nil,
		DialTLSContext:  si.dialGRPC,
		IdleConnTimeout: 90 * time.Second,
		// Ping a connection that has been silent for 30 s, and drop it
		// if the ping is not answered in 15 s (a target gone without a
		// word).
		ReadIdleTimeout: 30 * time.Second,
		PingTimeout:     15 * time.Second,
	}
	if si.tls != nil {
		t.TLSClientConfig = si.tls.Clone()
		t.TLSClientConfig.NextProtos = []string{"h2"}
	}
	return t
}

// grpcDialError is a failure to connect to a target (retried on another).
type grpcDialError struct{ err error }

func (e *grpcDialError) Error() string { return "connect to the upstream: " + e.err.Error() }
func (e *grpcDialError) Unwrap() error { return e.err }

// dialGRPC connects to a target within the service's connect_timeout,
// with a TLS handshake for grpcs.
func (si *serviceInfo) dialGRPC(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, si.connect)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &grpcDialError{err}
	}
	if si.tls == nil {
		return conn, nil
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, &grpcDialError{err}
	}
	return tc, nil
}

// errUpstreamStalled ends a gRPC call that moved in neither direction for
// the service's read_timeout.
var errUpstreamStalled = errors.New("the upstream sent nothing for read_timeout")

// proxyGRPC proxies a call to a grpc or grpcs service. Only a failure to
// connect is retried (on another target), as for HTTP/1.1 services.
func (e *Engine) proxyGRPC(w http.ResponseWriter, r *http.Request, c *plugin.Context, ri *routeInfo, m *router.Match, port string) {
	si := ri.svc
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	// The call ends when it moves in neither direction for read_timeout:
	// every request or response message moves the timer.
	stall := time.AfterFunc(si.read, func() { cancel(errUpstreamStalled) })
	defer stall.Stop()
	var body *countingReader
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = &countingReader{r: progressReader{r.Body, stall, si.read}}
	}
	hashKey := balancerHashKey(si, r, c, m)
	header := upstreamHeader(r, c, ri, port, e)
	method := cmp.Or(c.UpstreamMethod, r.Method)
	var (
		resp    *http.Response
		try     upstreamTry
		lastErr error
		prev    *balancer.Target
	)
	for attempt := 0; attempt <= si.retries; attempt++ {
		if !e.nextTry(w, r, c, si, hashKey, &try, prev) {
			return
		}
		prev = try.target
		authority := upstreamHost(ri, r, try.host)
		scheme, path := "http", c.UpstreamPath
		if si.tls != nil {
			scheme = "https"
		}
		if strings.HasPrefix(path, "//") {
			// URL.Opaque's form for a path that would read as an authority.
			path = "//" + authority + path
		}
		out := &http.Request{
			Method: method, URL: &url.URL{Scheme: scheme, Host: try.addr, Opaque: path, RawQuery: c.UpstreamQuery},
			Proto: "HTTP/2.0", ProtoMajor: 2, Header: header, Host: authority, ContentLength: r.ContentLength,
		}
		if body != nil {
			out.Body = io.NopCloser(body)
		}
		out = out.WithContext(ctx)
		sent := e.clock.Now()
		c.ProxyLatency = sent.Sub(c.Start)
		var err error
		resp, err = si.h2.RoundTrip(out)
		if err == nil {
			c.UpstreamLatency = e.clock.Now().Sub(sent)
			break
		}
		lastErr = err
		var bodyErr *clientBodyError
		if errors.As(err, &bodyErr) || r.Context().Err() != nil {
			break // the client's failure, not held against the target
		}
		timeout := isTimeout(err) || context.Cause(ctx) == errUpstreamStalled
		if try.target != nil {
			si.bal.Report(try.target, 0, !timeout, timeout)
		}
		e.log.Debug("gRPC upstream request failed", "service", si.name, "target", try.addr, "error", err, "try", attempt+1)
		var dialErr *grpcDialError
		if !errors.As(err, &dialErr) || (body != nil && body.n > 0) {
			break
		}
	}
	if try.target != nil {
		defer try.target.Release()
	}
	if resp == nil {
		var bodyErr *clientBodyError
		switch {
		case errors.As(lastErr, &bodyErr):
			e.clientBodyFailed(w, r, c, bodyErr)
		case context.Cause(ctx) == errUpstreamStalled || isTimeout(lastErr):
			e.log.Warn("gRPC upstream timed out", "request_id", c.RequestID, "service", si.name, "upstream", c.Upstream, "error", lastErr)
			e.proxyError(w, r, c, http.StatusGatewayTimeout, "The upstream server is timing out")
		default:
			e.log.Warn("gRPC upstream request failed", "request_id", c.RequestID, "service", si.name, "upstream", c.Upstream, "error", lastErr)
			e.proxyError(w, r, c, http.StatusBadGateway, "An invalid response was received from the upstream server")
		}
		return
	}
	defer resp.Body.Close()
	if try.target != nil {
		si.bal.Report(try.target, resp.StatusCode, false, false)
	}
	e.relayGRPC(ctx, w, r, c, resp, stall, si.read)
}

// relayGRPC streams a gRPC response to the client, flushing each piece as
// it arrives (every piece moves the call's stall timer), then sends the
// upstream's trailers. A response that breaks
// off resets the client's stream, so the client sees the call fail rather
// than end without a status.
func (e *Engine) relayGRPC(ctx context.Context, w http.ResponseWriter, r *http.Request, c *plugin.Context, resp *http.Response, stall *time.Timer, readTimeout time.Duration) {
	h := w.Header()
	upstream := resp.Header
	for k := range upstream {
		if isHopByHop(k) {
			delete(upstream, k)
		}
	}
	e.proxiedHead(h, upstream, resp.StatusCode, c)
	delete(h, "Content-Length")
	if resp.ContentLength >= 0 {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	w.WriteHeader(c.Status)
	sent, copyErr := e.relayBody(w, progressReader{resp.Body, stall, readTimeout}, true)
	c.BytesSent = sent
	if copyErr == nil {
		for k, vs := range resp.Trailer {
			h[http.TrailerPrefix+k] = vs
		}
	}
	c.RunLog()
	e.accessLog(r, c.RequestID, c.Status, sent, c.Start, c, c.Upstream)
	if copyErr != nil {
		e.log.Debug("gRPC response relay failed", "request_id", c.RequestID, "error", copyErr, "cause", context.Cause(ctx))
		// net/http resets the client's stream.
		panic(http.ErrAbortHandler)
	}
}

// progressReader moves a stall timer on every read that returns data.
type progressReader struct {
	r       io.Reader
	stall   *time.Timer
	timeout time.Duration
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.stall.Reset(p.timeout)
	}
	return n, err
}

// upstreamHeader is the header of a request sent upstream in HTTP/2: the
// fields appendUpstreamHeaders writes for HTTP/1.1, and TE: trailers,
// which gRPC servers may require and which is hop-by-hop in HTTP/1.1.
func upstreamHeader(r *http.Request, c *plugin.Context, ri *routeInfo, port string, e *Engine) http.Header {
	lines := appendUpstreamHeaders(nil, r, c, ri, port, e.upHeaders)
	h := make(http.Header, 16)
	for len(lines) > 0 {
		line, rest, _ := bytes.Cut(lines, []byte("\r\n"))
		lines = rest
		if k, v, ok := bytes.Cut(line, []byte(": ")); ok {
			key := http.CanonicalHeaderKey(string(k))
			h[key] = append(h[key], string(v))
		}
	}
	for _, v := range r.Header["Te"] {
		if hasToken([]string{v}, "trailers") {
			h["Te"] = []string{"trailers"}
		}
	}
	return h
}
