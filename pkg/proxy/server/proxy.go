package server

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/balancer"
	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/headerconf"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
	"github.com/kiln-dev/kiln/pkg/proxy/router"
)

const viaValue = "1.1 kong/" + entity.KongVersion
const serverValue = "kong/" + entity.KongVersion

// msValues caches header values for small millisecond latencies so that the
// hot path does not allocate them. The slices have len == cap, so an
// append by a plugin copies instead of writing into the cache; they are
// never modified.
var msValues = func() [][]string {
	v := make([][]string, 1000)
	for i := range v {
		v[i] = []string{strconv.Itoa(i)}
	}
	return v
}()

func msHeader(d time.Duration) []string {
	ms := max(d.Milliseconds(), 0) // the coarse clock follows wall time
	if ms < int64(len(msValues)) {
		return msValues[ms][:1:1]
	}
	return []string{strconv.FormatInt(ms, 10)}
}

// Listener is the http.Handler for one proxy listener: it knows the
// listener's port and scheme, which routing needs.
type Listener struct {
	e       *Engine
	port    int
	portStr string
	scheme  string
}

// Handler returns the handler for a listener on port serving scheme
// ("http" or "https").
func (e *Engine) Handler(port int, scheme string) *Listener {
	return &Listener{e: e, port: port, portStr: strconv.Itoa(port), scheme: scheme}
}

func newRequestID() string {
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}

func clientIP(remote string) string {
	if i := strings.LastIndexByte(remote, ':'); i >= 0 {
		remote = remote[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(remote, "["), "]")
}

// hop-by-hop headers are never forwarded.
func isHopByHop(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Te", "Trailer", "Upgrade", "Proxy-Authenticate":
		return true
	}
	return false
}

// ServeHTTP proxies one request.
func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := l.e
	start := e.clock.Now()
	e.state.Metrics.TotalRequests.Add(1)
	if _, native := w.(*h2Req); r.ProtoMajor == 2 && !native {
		// net/http's HTTP/2 server: kiln's own bounds its waits itself.
		st := e.newH2Stream(w, r)
		defer st.end()
		w = st
	}
	s := e.snap.Load()
	reqID := newRequestID()
	sni := ""
	if r.TLS != nil {
		sni = r.TLS.ServerName
	}
	rawPath := r.URL.RawPath
	if rawPath == "" {
		rawPath = r.URL.Path
	} else {
		rawPath = r.URL.EscapedPath()
	}
	if (r.ProtoMajor == 2 && !validHost(r.Host)) || router.EscapesRoot(rawPath) {
		// A host nginx refuses (HTTP/1.x hosts and methods are checked
		// when the request is read), or a path that climbs above the root.
		e.writeError(w, r, http.StatusBadRequest, "Bad request", reqID, start, false)
		return
	}
	if r.Method == http.MethodConnect {
		e.writeError(w, r, http.StatusMethodNotAllowed, "Method not allowed", reqID, start, false)
		return
	}
	rreq := router.Request{Method: r.Method, Host: r.Host, Path: rawPath, Scheme: l.scheme, SNI: sni, Port: l.port, Header: r.Header}
	m, ok := s.router.Match(&rreq)
	wh := w.Header()
	if !ok {
		e.writeError(w, r, http.StatusNotFound, "no Route matched with those values", reqID, start, true)
		return
	}
	ri := m.Route.Value.(*routeInfo)
	peer := clientIP(r.RemoteAddr)
	client, trusted := peer, false
	if e.realIP != nil {
		client, trusted = e.realIP.client(r, peer)
	}
	allowed := m.ProtocolAllowed(l.scheme)
	if trusted {
		allowed = forwardedAllowed(r.Header, &m, allowed)
	}
	if !allowed {
		code := ri.route.HTTPSRedirectStatusCode
		if code == 0 || code == http.StatusUpgradeRequired {
			wh["Connection"] = []string{"Upgrade"}
			wh["Upgrade"] = []string{"TLS/1.2, HTTP/1.1"}
			e.writeError(w, r, http.StatusUpgradeRequired, "Please use HTTPS protocol", reqID, start, true)
			return
		}
		host := requestHostNoPort(r.Host)
		if trusted && len(r.Header["X-Forwarded-Host"]) > 0 {
			host = forwardedValue(r.Header["X-Forwarded-Host"])
		}
		wh["Location"] = []string{"https://" + host + r.URL.RequestURI()}
		e.writeError(w, r, code, plugin.DefaultMessage(code), reqID, start, true)
		return
	}
	if isGRPCRoute(ri.route.Protocols) {
		switch {
		case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc"):
			e.writeError(w, r, http.StatusUnsupportedMediaType, "Non-gRPC request matched gRPC route", reqID, start, true)
			return
		case r.ProtoMajor != 2:
			e.writeError(w, r, http.StatusUpgradeRequired, "Please use HTTP2 protocol", reqID, start, true)
			return
		}
	}
	c := e.ctxPool.Get().(*plugin.Context)
	c.Reset()
	defer e.ctxPool.Put(c)
	c.Req, c.ClientIP, c.PeerIP, c.Trusted, c.Scheme, c.RequestID, c.Start = r, client, peer, trusted, l.scheme, reqID, start
	if lp := servingLoop(w); lp != nil {
		// What plugins wait on (plugin.Context.Blocking) runs off the
		// event loop serving the request.
		c.Offload = lp.offloadFn
	}
	c.Route, c.Captures, c.Names = ri.route, m.Captures, m.Names
	if ri.svc != nil {
		c.Service = ri.svc.svc
	}
	if ri.svc != nil {
		c.UpstreamPath = m.UpstreamPath(ri.svc.path)
	} else {
		c.UpstreamPath = m.Path
	}
	c.UpstreamQuery = r.URL.RawQuery
	c.Prefix, c.RawPath = m.Prefix, rawPath
	if ri.chain.Len() > 0 {
		c.RunAccess(ri.chain)
	}
	if ex := c.Exited(); ex != nil {
		e.finishExit(w, r, c, ex)
		return
	}
	if ri.svc == nil {
		e.finishExit(w, r, c, &plugin.Exit{Status: http.StatusServiceUnavailable, Message: "no Service found with those values"})
		return
	}
	if ri.svc.h2 != nil {
		// net/http's HTTP/2 client waits on goroutines of its own: on an
		// event loop the call runs off it (its plugins too).
		call := func() { e.proxyGRPC(w, r, c, ri, &m, l.portStr) }
		switch w := w.(type) {
		case *h1Writer:
			if w.c.inLoop() {
				c.Offload = nil
				w.c.outsideLoop(w, call)
				return
			}
		case *h2Req:
			c.Offload = nil
			w.offload(call)
			return
		}
		call()
		return
	}
	e.proxy(w, r, c, ri, &m, l.portStr)
}

// servingLoop is the event loop serving w's request (nil: a goroutine
// serves it).
func servingLoop(w http.ResponseWriter) *eventLoop {
	switch w := w.(type) {
	case *h1Writer:
		if w.c.inLoop() {
			return w.c.sc.lp
		}
	case *h2Req:
		if !w.offloaded {
			return w.hc.l
		}
	}
	return nil
}

// isGRPCRoute reports whether a route only accepts gRPC.
func isGRPCRoute(protocols []string) bool {
	if len(protocols) == 0 {
		return false
	}
	for _, p := range protocols {
		if p != "grpc" && p != "grpcs" {
			return false
		}
	}
	return true
}

// forwardedAllowed applies Kong's https-only route check to a trusted
// peer's request, which is judged by the X-Forwarded-Proto it sent (when
// it sent one) instead of the scheme of its own connection: a route
// accepting https but not http needs "https" there.
func forwardedAllowed(h http.Header, m *router.Match, allowed bool) bool {
	vs := h["X-Forwarded-Proto"]
	if len(vs) == 0 || m.ProtocolAllowed("http") || !m.ProtocolAllowed("https") {
		return allowed
	}
	return forwardedValue(vs) == "https"
}

// forwardedValue is a client header's value as nginx's $http_* variable
// gives it: its field lines joined with ", ".
func forwardedValue(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	return strings.Join(vs, ", ")
}

// appendForwarded appends an X-Forwarded-* header for a trusted peer: the
// peer's own field lines when it sent the header, else def.
func appendForwarded(b []byte, h http.Header, k, def string) []byte {
	vs := h[k]
	if len(vs) == 0 {
		return appendHeader(b, k, def)
	}
	b = append(b, k...)
	b = append(b, ": "...)
	for i, v := range vs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendValue(b, v)
	}
	return append(b, "\r\n"...)
}

func requestHostNoPort(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		return h[:i]
	}
	return h
}

// writeError sends a Kong error body. kongJSON selects
// kong.response.error's negotiation (JSON by default); otherwise the nginx
// error page negotiation (text/plain unless Accept/Content-Type say JSON...).
func (e *Engine) writeError(w http.ResponseWriter, r *http.Request, status int, msg, reqID string, start time.Time, kongJSON bool) {
	accept := r.Header.Get("Accept")
	if !kongJSON {
		accept = nginxAccept(r)
	}
	h := w.Header()
	body := errorAnswer(h, r, status, accept, msg, "", reqID)
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	e.producedHeaders(h, reqID, start)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	e.accessLog(r, reqID, status, int64(len(body)), start, nil, "")
}

// errorAnswer sets h's Content-Type and returns the body of an error
// answer negotiated with accept (plugin.ErrorBody). A gRPC call gets Kong's
// grpc-status and grpc-message instead, and no body: grpcMsg, or without
// one the status's name (grpcAnswer).
func errorAnswer(h http.Header, r *http.Request, status int, accept, msg, grpcMsg, reqID string) []byte {
	if grpcRequest(r) {
		grpcAnswer(h, status, grpcMsg)
		return nil
	}
	ct, body := plugin.ErrorBody(accept, msg, reqID)
	h["Content-Type"] = []string{ct}
	return body
}

// nginxAccept is what nginx's error pages are negotiated with: Accept,
// else the request's Content-Type, else text/plain.
func nginxAccept(r *http.Request) string {
	return cmp.Or(r.Header.Get("Accept"), r.Header.Get("Content-Type"), "text/plain")
}

// producedHeaders sets the headers Kong adds to a response it produces
// itself (an error, a plugin's exit), as far as the headers setting
// enables them. As in Kong, Server is removed when disabled, except on a
// response that carries kiln's own Via entry while Via is enabled.
func (e *Engine) producedHeaders(h http.Header, reqID string, start time.Time) {
	if e.headers.Has(headerconf.ResponseLatency) {
		h["X-Kong-Response-Latency"] = msHeader(e.clock.Now().Sub(start))
	}
	if !e.headers.Has(headerconf.Via) || len(h["Via"]) != 1 || h["Via"][0] != serverValue {
		if e.headers.Has(headerconf.Server) {
			h["Server"] = []string{serverValue}
		} else {
			delete(h, "Server")
		}
	}
	if e.headers.Has(headerconf.RequestID) {
		h["X-Kong-Request-Id"] = []string{reqID}
	}
}

// finishExit sends a plugin-produced response, running the header filter
// and log phases.
func (e *Engine) finishExit(w http.ResponseWriter, r *http.Request, c *plugin.Context, ex *plugin.Exit) {
	h := w.Header()
	for k, v := range c.RespHeader {
		h[k] = v
	}
	var body []byte
	if ex.Body != nil || ex.ContentType != "" {
		body = ex.Body
		if ex.ContentType != "" {
			h["Content-Type"] = []string{ex.ContentType}
		}
	} else {
		// A gRPC call gets the plugin's message in grpc-message, as
		// kong.response.exit sends it.
		msg := cmp.Or(ex.Message, plugin.DefaultMessage(ex.Status))
		body = errorAnswer(h, r, ex.Status, r.Header.Get("Accept"), msg, msg, c.RequestID)
	}
	e.producedHeaders(h, c.RequestID, c.Start)
	c.Status, c.ResponseHeader = ex.Status, h
	c.RunHeaderFilter()
	if c.WantsBody() {
		body = c.RunBodyFilter(body)
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(c.Status)
	if r.Method != http.MethodHead {
		n, _ := w.Write(body)
		c.BytesSent = int64(n)
	}
	c.RunLog()
	e.accessLog(r, c.RequestID, c.Status, c.BytesSent, c.Start, c, "")
}

// proxyError maps an upstream failure to Kong's nginx-level error.
func (e *Engine) proxyError(w http.ResponseWriter, r *http.Request, c *plugin.Context, status int, msg string) {
	h := w.Header()
	for k, v := range c.RespHeader {
		h[k] = v
	}
	if e.headers.Has(headerconf.RequestID) {
		h["X-Kong-Request-Id"] = []string{c.RequestID}
	}
	// Kong's error handler answers a gRPC call with its message in
	// grpc-message (kong.response.exit).
	body := errorAnswer(h, r, status, nginxAccept(r), msg, msg, c.RequestID)
	if e.headers.Has(headerconf.Server) {
		h["Server"] = []string{serverValue}
	}
	c.Status, c.ResponseHeader = status, h
	c.RunHeaderFilter()
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		n, _ := w.Write(body)
		c.BytesSent = int64(n)
	}
	c.RunLog()
	e.accessLog(r, c.RequestID, status, c.BytesSent, c.Start, c, c.Upstream)
}

// clientBodyFailed answers a request whose body could not be read to the
// end as nginx does: 408 when the client was too slow, else 400; the
// connection, whose framing is lost, is closed.
func (e *Engine) clientBodyFailed(w http.ResponseWriter, r *http.Request, c *plugin.Context, err *clientBodyError) {
	status, msg := http.StatusBadRequest, "Bad request"
	if isTimeout(err.err) {
		status, msg = http.StatusRequestTimeout, "Request timeout"
	}
	e.log.Info("client request body failed", "request_id", c.RequestID, "status", status, "error", err.err)
	if r.ProtoMajor == 1 {
		w.Header()["Connection"] = []string{"close"}
	}
	e.proxyError(w, r, c, status, msg)
}

// idempotent reports whether sending a request with this method twice has
// the effect of sending it once (RFC 9110 §9.2.2): only such a request is
// sent again after its body reached a connection that then failed, since
// the upstream may have acted on it before closing.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// maxReplayBody is how much of a request body kiln keeps so that a request
// sent on a kept-alive connection the upstream had already closed can be
// sent again on a fresh one (nginx buffers whole bodies for the same
// reason; kiln streams them and keeps only this much).
const maxReplayBody = 64 << 10

// countingReader counts the request body bytes sent on the current attempt
// and, for an idempotent request (keep), holds the first maxReplayBody of
// them for rewind; other bodies are never sent twice, so nothing is held.
type countingReader struct {
	r    io.Reader
	n    int64
	keep bool
	kept []byte
	pos  int  // next byte of kept to replay
	lost bool // a byte was sent that kept does not hold
}

func (cr *countingReader) Read(p []byte) (int, error) {
	if cr.pos < len(cr.kept) {
		n := copy(p, cr.kept[cr.pos:])
		cr.pos += n
		cr.n += int64(n)
		return n, nil
	}
	n, err := cr.r.Read(p)
	if n > 0 && cr.keep && !cr.lost {
		if len(cr.kept)+n <= maxReplayBody {
			cr.kept = append(cr.kept, p[:n]...)
			cr.pos = len(cr.kept)
		} else {
			cr.lost, cr.kept, cr.pos = true, nil, 0
		}
	}
	cr.n += int64(n)
	if err != nil && err != io.EOF {
		err = &clientBodyError{err}
	}
	return n, err
}

// clientBodyError is a failure to read the client's request body while
// sending it upstream (a malformed chunk, a timeout, the client gone): the
// client's fault, so neither retried nor held against the upstream.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string {
	return "reading the client's request body: " + e.err.Error()
}
func (e *clientBodyError) Unwrap() error { return e.err }

// rewind makes the body readable again from its first byte, for another
// attempt; false when the body is not held (not idempotent, or larger than
// maxReplayBody).
func (cr *countingReader) rewind() bool {
	if !cr.keep || cr.lost {
		return false
	}
	cr.pos, cr.n = 0, 0
	return true
}

func isUpgrade(r *http.Request) bool {
	if r.ProtoMajor != 1 || r.Header.Get("Upgrade") == "" {
		return false
	}
	return hasToken(r.Header["Connection"], "upgrade")
}

type upstreamTry struct {
	target *balancer.Target
	addr   string
	host   string
}

// balancerHashKey is the consistent-hashing key of r for si's upstream
// ("" without one); a hash_on cookie the client did not send is set on
// the response.
func balancerHashKey(si *serviceInfo, r *http.Request, c *plugin.Context, m *router.Match) string {
	if si.bal == nil {
		return ""
	}
	key, cookie := si.bal.HashKey(&balancer.HashInput{
		ConsumerID: c.ConsumerID(), ClientIP: c.ClientIP, Path: m.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header, Captures: m.Captures, Names: m.Names,
	}, newRequestID)
	if cookie != nil {
		c.RespHeader.Add("Set-Cookie", cookie.String())
	}
	return key
}

// nextTry releases the previous attempt's target and picks the next
// attempt's (another than prev when it can) into try; when no target is
// left it answers Kong's 503 and returns false.
func (e *Engine) nextTry(w http.ResponseWriter, r *http.Request, c *plugin.Context, si *serviceInfo, hashKey string, try *upstreamTry, prev *balancer.Target) bool {
	if try.target != nil {
		try.target.Release()
		try.target = nil
	}
	next, err := si.pick(hashKey, prev)
	if err != nil {
		e.finishExit(w, r, c, &plugin.Exit{Status: http.StatusServiceUnavailable, Message: err.Error()})
		return false
	}
	*try = next
	c.Upstream = next.addr
	return true
}

// pick chooses the address to send an attempt to (a target of si's
// upstream other than prev when it can, or the service's host) and the
// Host the upstream is sent.
func (si *serviceInfo) pick(hashKey string, prev *balancer.Target) (upstreamTry, error) {
	try := upstreamTry{addr: si.addr, host: si.host}
	if si.bal != nil {
		t, err := si.bal.Pick(hashKey, prev)
		if err != nil {
			return try, err
		}
		try.target, try.addr = t, t.Addr()
		try.host = hostHeader(t.Host, t.Port, si.https)
	}
	if si.hostHeader != "" {
		try.host = si.hostHeader
	}
	return try, nil
}

func (e *Engine) proxy(w http.ResponseWriter, r *http.Request, c *plugin.Context, ri *routeInfo, m *router.Match, port string) {
	si := ri.svc
	upgrade := isUpgrade(r)
	var body *countingReader
	if r.Body != nil && r.Body != http.NoBody && (r.ContentLength != 0 || r.ContentLength == -1) {
		body = &countingReader{r: r.Body, keep: idempotent(r.Method)}
	}
	// A request served by an event loop uses the loop's upstream pool.
	pool := e.pool
	if lp := servingLoop(w); lp != nil {
		pool = lp.pool
	}
	hashKey := balancerHashKey(si, r, c, m)
	var (
		uc      *upConn
		resp    *upResponse
		try     upstreamTry
		lastErr error
		timeout bool
		bodyErr *clientBodyError
	)
	tries := si.retries + 1
	stale := 0
	var prev *balancer.Target
	for attempt := 0; attempt < tries; attempt++ {
		if !e.nextTry(w, r, c, si, hashKey, &try, prev) {
			return
		}
		prev = try.target
		poolKey := try.addr
		if si.https {
			poolKey = "tls|" + try.addr + "|" + si.tls.ServerName
		}
		if !upgrade {
			uc = pool.get(poolKey)
		}
		if uc == nil {
			var err error
			uc, err = pool.dial(r.Context(), poolKey, try.addr, si.connect, si.tls)
			if err != nil {
				lastErr, timeout = err, isTimeout(err)
				if try.target != nil {
					si.bal.Report(try.target, 0, !timeout, timeout)
				}
				e.log.Debug("upstream connect failed", "service", si.name, "target", try.addr, "error", err, "try", attempt+1)
				if body != nil && body.n > 0 {
					break
				}
				continue
			}
		}
		uc.dc.arm(si.read, si.write)
		sent := e.clock.Now()
		c.ProxyLatency = sent.Sub(c.Start)
		err := writeRequest(uc.bw, uc.sc, r, c, ri, try.host, port, body, upgrade, e.upHeaders)
		if err == nil {
			method := r.Method
			if c.UpstreamMethod != "" {
				method = c.UpstreamMethod
			}
			resp, err = uc.readResponse(method)
		}
		if err != nil {
			reused, idleAt := uc.reused, uc.idleAt
			pool.close(uc)
			uc = nil
			if errors.As(err, &bodyErr) {
				break
			}
			if reused && stale < 3 && !isTimeout(err) && (body == nil || body.n == 0 || body.rewind()) {
				// A kept-alive connection the upstream had closed: try
				// again on a fresh one without spending a retry, and
				// drop the connections idle as long as it was, which
				// the upstream has most likely closed too.
				pool.dropIdleSince(poolKey, idleAt)
				stale++
				attempt--
				prev = nil
				continue
			}
			lastErr, timeout = err, isTimeout(err)
			if try.target != nil {
				si.bal.Report(try.target, 0, !timeout, timeout)
			}
			// Only connection failures are retried; a request that
			// reached the upstream is not sent twice.
			break
		}
		c.UpstreamLatency = e.clock.Now().Sub(sent)
		break
	}
	if try.target != nil {
		defer try.target.Release()
	}
	if bodyErr != nil {
		e.clientBodyFailed(w, r, c, bodyErr)
		return
	}
	if resp == nil {
		e.log.Warn("upstream request failed", "request_id", c.RequestID, "service", si.name, "upstream", c.Upstream,
			"timeout", timeout, "error", lastErr)
		if timeout {
			e.proxyError(w, r, c, http.StatusGatewayTimeout, "The upstream server is timing out")
		} else {
			e.proxyError(w, r, c, http.StatusBadGateway, "An invalid response was received from the upstream server")
		}
		return
	}
	if try.target != nil {
		si.bal.Report(try.target, resp.status, false, false)
	}
	if upgrade && resp.status == http.StatusSwitchingProtocols {
		e.tunnel(w, r, c, uc, resp)
		return
	}
	e.respond(w, r, c, uc, resp)
}

// writeRequest sends the request line, headers and body upstream. The head
// is assembled in the free part of the connection's write buffer. A
// request without a body on a raw socket (sc != nil) is only queued: the
// first receive of the response sends it (see sysConn.pending).
func writeRequest(bw *bufio.Writer, sc *sysConn, r *http.Request, c *plugin.Context, ri *routeInfo, host, port string, body *countingReader, upgrade bool, upHeaders headerconf.Set) error {
	method := r.Method
	if c.UpstreamMethod != "" {
		method = c.UpstreamMethod
	}
	b := bw.AvailableBuffer()
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, c.UpstreamPath...)
	if c.UpstreamQuery != "" {
		b = append(b, '?')
		b = append(b, c.UpstreamQuery...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, upstreamHost(ri, r, host)...)
	b = append(b, "\r\n"...)
	b = appendUpstreamHeaders(b, r, c, ri, port, upHeaders)
	h := r.Header
	if upgrade {
		b = append(b, "Connection: keep-alive, Upgrade\r\n"...)
		b = appendHeader(b, "Upgrade", h.Get("Upgrade"))
	}
	chunked := false
	switch {
	case body == nil:
		if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
			b = append(b, "Content-Length: 0\r\n"...)
		}
	case r.ContentLength >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, r.ContentLength, 10)
		b = append(b, "\r\n"...)
	default:
		chunked = true
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	b = append(b, "\r\n"...)
	if body == nil && !upgrade && sc != nil && bw.Buffered() == 0 {
		sc.pending = b
		return nil
	}
	if _, err := bw.Write(b); err != nil {
		return err
	}
	if body == nil {
		return bw.Flush()
	}
	if !chunked {
		if _, err := io.Copy(bw, body); err != nil {
			return err
		}
		return bw.Flush()
	}
	cw := newChunkedWriter(bw)
	if _, err := io.Copy(cw, body); err != nil {
		return err
	}
	bw.WriteString("0\r\n\r\n")
	return bw.Flush()
}

// upstreamHost is the Host (or HTTP/2 :authority) an attempt sends: the
// client's with preserve_host, else the target's host.
func upstreamHost(ri *routeInfo, r *http.Request, host string) string {
	if ri.route.PreserveHost && r.Host != "" {
		return r.Host
	}
	return host
}

// appendUpstreamHeaders appends the request's end-to-end header fields
// (except Host and the framing) and the ones Kong adds upstream
// (X-Forwarded-*, X-Real-IP, Via, X-Kong-Request-Id) as header lines.
func appendUpstreamHeaders(b []byte, r *http.Request, c *plugin.Context, ri *routeInfo, port string, upHeaders headerconf.Set) []byte {
	h := r.Header
	// Fields the Connection header names are hop-by-hop too; its tokens
	// are matched in place (most requests name none or only close or
	// keep-alive), not collected.
	connection := h["Connection"]
	for k, vs := range h {
		if isHopByHop(k) || k == "Host" {
			continue
		}
		switch k {
		case "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Path", "X-Forwarded-Prefix", "X-Real-Ip", "Via", "Content-Length":
			continue
		case "Proxy":
			continue // cleared, as Kong does (httpoxy: CGI programs read it as HTTP_PROXY)
		case "X-Kong-Request-Id":
			if upHeaders.Has(headerconf.RequestIDUpstream) {
				continue // replaced by kiln's
			}
		}
		if len(connection) > 0 && hasToken(connection, k) {
			continue
		}
		for _, v := range vs {
			b = appendHeader(b, k, v)
		}
	}
	// X-Forwarded-For: the client's list plus the peer that connected
	// (Kong appends $realip_remote_addr), or the client address alone.
	b = append(b, "X-Forwarded-For: "...)
	if xff := h["X-Forwarded-For"]; len(xff) > 0 {
		for _, v := range xff {
			b = appendValue(b, v)
			b = append(b, ", "...)
		}
		b = append(b, c.PeerIP...)
	} else {
		b = append(b, c.ClientIP...)
	}
	b = append(b, "\r\n"...)
	// The other X-Forwarded-* headers are kiln's own unless the peer is in
	// trusted_ips (empty by default, as in Kong): a trusted peer's values
	// pass through, each one it sent.
	if !c.Trusted {
		b = appendHeader(b, "X-Forwarded-Proto", c.Scheme)
		b = appendHeader(b, "X-Forwarded-Host", requestHostNoPort(r.Host))
		b = appendHeader(b, "X-Forwarded-Port", port)
		b = appendHeader(b, "X-Forwarded-Path", c.RawPath)
		if ri.route.StripPath && c.Prefix != "" && c.Prefix != "/" {
			b = appendHeader(b, "X-Forwarded-Prefix", c.Prefix)
		}
	} else {
		b = appendForwarded(b, h, "X-Forwarded-Proto", c.Scheme)
		b = appendForwarded(b, h, "X-Forwarded-Host", requestHostNoPort(r.Host))
		b = appendForwarded(b, h, "X-Forwarded-Port", port)
		b = appendForwarded(b, h, "X-Forwarded-Path", c.RawPath)
		if len(h["X-Forwarded-Prefix"]) > 0 || (ri.route.StripPath && c.Prefix != "" && c.Prefix != "/") {
			b = appendForwarded(b, h, "X-Forwarded-Prefix", c.Prefix)
		}
	}
	b = appendHeader(b, "X-Real-IP", c.ClientIP)
	b = append(b, "Via: "...)
	for _, v := range h["Via"] {
		b = appendValue(b, v)
		b = append(b, ", "...)
	}
	b = append(b, viaProto(r)...)
	b = append(b, " kong/"+entity.KongVersion+"\r\n"...)
	if upHeaders.Has(headerconf.RequestIDUpstream) {
		b = appendHeader(b, "X-Kong-Request-Id", c.RequestID)
	}
	return b
}

func viaProto(r *http.Request) string {
	if r.ProtoMajor == 2 {
		return "2"
	}
	if r.ProtoMinor == 0 {
		return "1.0"
	}
	return "1.1"
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// appendHeader appends "k: v\r\n", replacing CR/LF in v.
func appendHeader(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	b = appendValue(b, v)
	return append(b, "\r\n"...)
}

// appendValue appends a header value with CR and LF replaced by spaces.
func appendValue(b []byte, v string) []byte {
	if strings.IndexByte(v, '\r') < 0 && strings.IndexByte(v, '\n') < 0 {
		return append(b, v...)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			b = append(b, ' ')
		} else {
			b = append(b, c)
		}
	}
	return b
}

type chunkedWriter struct{ bw *bufio.Writer }

func newChunkedWriter(bw *bufio.Writer) *chunkedWriter { return &chunkedWriter{bw: bw} }

func (cw *chunkedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	cw.bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
	cw.bw.WriteString("\r\n")
	cw.bw.Write(p)
	if _, err := cw.bw.WriteString("\r\n"); err != nil {
		return 0, err
	}
	// Flush so a streaming request body reaches the upstream promptly.
	return len(p), cw.bw.Flush()
}

// respond streams the upstream response to the client.
func (e *Engine) respond(w http.ResponseWriter, r *http.Request, c *plugin.Context, uc *upConn, resp *upResponse) {
	h := w.Header()
	if hw, direct := w.(*h1Writer); direct && !c.NeedsResponse() && len(h) == 0 {
		// No plugin looks at the response: write the head straight from
		// the upstream's fields (plus what access plugins set).
		hw.writeProxiedHead(resp, c)
		c.Status, c.Proxied = resp.status, true
	} else {
		e.responseHead(w, c, resp)
	}
	e.copyBody(w, r, c, uc, resp)
}

// responseHead builds the client response head in the header map, where
// plugins' header filters can change it.
func (e *Engine) responseHead(w http.ResponseWriter, c *plugin.Context, resp *upResponse) {
	e.proxiedHead(w.Header(), resp.header(), resp.status, c)
}

// proxiedHead sets h to the upstream's response fields, what access
// plugins set and the headers Kong adds to proxied responses, then runs
// the plugins' header filters.
func (e *Engine) proxiedHead(h, upstream http.Header, status int, c *plugin.Context) {
	for k, vs := range upstream {
		h[k] = vs
	}
	for k, v := range c.RespHeader {
		h[k] = v
	}
	if e.headers.Has(headerconf.UpstreamStatus) {
		h["X-Kong-Upstream-Status"] = []string{strconv.Itoa(status)}
	}
	if e.headers.Has(headerconf.Via) {
		if via := h["Via"]; len(via) > 0 {
			h["Via"] = []string{strings.Join(via, ", ") + ", " + viaValue}
		} else {
			h["Via"] = []string{viaValue}
		}
	}
	if e.headers.Has(headerconf.Server) && len(h["Server"]) == 0 {
		h["Server"] = []string{serverValue}
	}
	if e.headers.Has(headerconf.UpstreamLatency) {
		h["X-Kong-Upstream-Latency"] = msHeader(c.UpstreamLatency)
	}
	if e.headers.Has(headerconf.ProxyLatency) {
		h["X-Kong-Proxy-Latency"] = msHeader(c.ProxyLatency)
	}
	if e.headers.Has(headerconf.RequestID) {
		h["X-Kong-Request-Id"] = []string{c.RequestID}
	}
	c.Status, c.ResponseHeader, c.Proxied = status, h, true
	c.RunHeaderFilter()
}

// copyBody streams (or, for body filters, buffers and rewrites) the
// upstream body to the client, then releases the upstream connection.
func (e *Engine) copyBody(w http.ResponseWriter, r *http.Request, c *plugin.Context, uc *upConn, resp *upResponse) {
	h := w.Header()
	var sent int64
	var copyErr error
	hw, direct := w.(*h1Writer)
	switch {
	case c.WantsBody():
		data, err := io.ReadAll(resp.body)
		copyErr = err
		data = c.RunBodyFilter(data)
		h.Del("Content-Length")
		h["Content-Length"] = []string{strconv.Itoa(len(data))}
		w.WriteHeader(c.Status)
		n, _ := w.Write(data)
		sent = int64(n)
	case direct && resp.body == &resp.lr:
		// A fixed-length body goes from the upstream connection's read
		// buffer straight into the client's write buffer.
		hw.WriteHeader(c.Status)
		sent, copyErr = copyFixed(hw, uc.br, &resp.lr)
	default:
		w.WriteHeader(c.Status)
		sent, copyErr = e.relayBody(w, resp.body, resp.contentLength < 0)
	}
	c.BytesSent = sent
	if copyErr == nil && !resp.close {
		uc.p.put(uc)
	} else {
		uc.p.close(uc)
		if copyErr != nil && !errors.Is(copyErr, io.EOF) {
			// The client sees a truncated body; nothing else can be done
			// once headers are sent.
			e.log.Debug("response body copy failed", "request_id", c.RequestID, "error", copyErr)
		}
	}
	c.RunLog()
	e.accessLog(r, c.RequestID, c.Status, sent, c.Start, c, c.Upstream)
}

// relayBody copies src to w through one of the engine's buffers, flushing
// after every write when flush is set (a body of unknown length, a gRPC
// stream: each piece goes out as it arrives). It returns the bytes written
// and the first error other than src's io.EOF.
func (e *Engine) relayBody(w http.ResponseWriter, src io.Reader, flush bool) (int64, error) {
	bufp := e.bufPool.Get().(*[]byte)
	defer e.bufPool.Put(bufp)
	buf := *bufp
	fl, _ := w.(http.Flusher)
	var sent int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			wn, werr := w.Write(buf[:n])
			sent += int64(wn)
			if werr != nil {
				return sent, werr
			}
			if flush && fl != nil {
				fl.Flush()
			}
		}
		if err != nil {
			if err != io.EOF {
				return sent, err
			}
			return sent, nil
		}
	}
}

// copyFixed copies the rest of a fixed-length upstream body from br to w
// without an intermediate buffer, with lengthReader's errors.
func copyFixed(w io.Writer, br *bufio.Reader, lr *lengthReader) (int64, error) {
	var sent int64
	for lr.n > 0 {
		n := br.Buffered()
		if n == 0 {
			if _, err := br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return sent, err
			}
			n = br.Buffered()
		}
		p, _ := br.Peek(int(min(int64(n), lr.n)))
		wn, err := w.Write(p)
		_, _ = br.Discard(wn)
		lr.n -= int64(wn)
		sent += int64(wn)
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// tunnel completes a WebSocket (or other Upgrade) handshake and pipes bytes
// both ways until either side closes.
func (e *Engine) tunnel(w http.ResponseWriter, r *http.Request, c *plugin.Context, uc *upConn, resp *upResponse) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		uc.p.close(uc)
		e.proxyError(w, r, c, http.StatusBadGateway, "An invalid response was received from the upstream server")
		return
	}
	cc, cbuf, err := hj.Hijack()
	if err != nil {
		uc.p.close(uc)
		return
	}
	defer cc.Close()
	defer uc.nc.Close()
	h := http.Header{}
	for _, f := range resp.fields {
		h[f.name] = append(h[f.name], f.value)
	}
	if e.headers.Has(headerconf.Via) {
		h["Via"] = []string{viaValue}
	}
	if e.headers.Has(headerconf.RequestID) {
		h["X-Kong-Request-Id"] = []string{c.RequestID}
	}
	_, _ = cbuf.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	_ = h.Write(cbuf)
	_, _ = cbuf.WriteString("\r\n")
	if err := cbuf.Flush(); err != nil {
		return
	}
	uc.dc.arm(0, 0)
	_ = uc.nc.SetDeadline(time.Time{})
	done := make(chan struct{}, 2)
	go func() {
		// Bytes the client sent after the handshake are in cbuf.Reader.
		_, _ = io.Copy(uc.nc, io.MultiReader(io.LimitReader(cbuf.Reader, int64(cbuf.Reader.Buffered())), cc))
		if !uc.tls && uc.raw != nil {
			_ = uc.raw.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(cc, uc.br)
		if cw, ok := cc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	<-done
	<-done
	c.Status = http.StatusSwitchingProtocols
	e.accessLog(r, c.RequestID, c.Status, 0, c.Start, c, c.Upstream)
}

type accessEntry struct {
	Time          string `json:"time"`
	RequestID     string `json:"request_id"`
	ClientIP      string `json:"client_ip"`
	Method        string `json:"method"`
	Host          string `json:"host"`
	URI           string `json:"uri"`
	Proto         string `json:"protocol"`
	Status        int    `json:"status"`
	BytesSent     int64  `json:"bytes_sent"`
	Route         string `json:"route,omitempty"`
	Service       string `json:"service,omitempty"`
	Consumer      string `json:"consumer,omitempty"`
	Upstream      string `json:"upstream,omitempty"`
	LatencyMS     int64  `json:"latency_ms"`
	ProxyMS       int64  `json:"proxy_latency_ms"`
	UpstreamMS    int64  `json:"upstream_latency_ms"`
	UserAgent     string `json:"user_agent,omitempty"`
	UpstreamURI   string `json:"upstream_uri,omitempty"`
	ClientRequest int64  `json:"request_size,omitempty"`
}

func (e *Engine) accessLog(r *http.Request, reqID string, status int, sent int64, start time.Time, c *plugin.Context, upstream string) {
	if e.opts.AccessLog == nil {
		return
	}
	ent := accessEntry{
		Time: start.UTC().Format(time.RFC3339Nano), RequestID: reqID, ClientIP: clientIP(r.RemoteAddr), Method: r.Method, Host: r.Host,
		URI: r.URL.RequestURI(), Proto: r.Proto, Status: status, BytesSent: sent, Upstream: upstream,
		LatencyMS: e.clock.Now().Sub(start).Milliseconds(), UserAgent: r.UserAgent(), ClientRequest: r.ContentLength,
	}
	if c == nil && e.realIP != nil {
		// A request answered before the plugins (404, 426...): the
		// client address still follows trusted_ips.
		ent.ClientIP, _ = e.realIP.client(r, ent.ClientIP)
	}
	if c != nil {
		ent.ClientIP = c.ClientIP
		if c.Route != nil {
			ent.Route = strOr(c.Route.Name, c.Route.ID)
		}
		if c.Service != nil {
			ent.Service = strOr(c.Service.Name, c.Service.ID)
		}
		if c.Consumer != nil {
			ent.Consumer = strOr(c.Consumer.Username, c.Consumer.ID)
		}
		ent.ProxyMS, ent.UpstreamMS = c.ProxyLatency.Milliseconds(), c.UpstreamLatency.Milliseconds()
		if upstream != "" {
			ent.UpstreamURI = c.UpstreamPath
		}
	}
	e.writeAccess(&ent)
}

// writeAccess writes one access log line.
func (e *Engine) writeAccess(ent *accessEntry) {
	line, _ := json.Marshal(ent)
	line = append(line, '\n')
	e.accessMu.Lock()
	_, _ = e.opts.AccessLog.Write(line)
	e.accessMu.Unlock()
}

// maxLoggedTarget bounds the request target an access log line quotes
// from a request that could not be parsed.
const maxLoggedTarget = 2 << 10

// accessLogRefused logs a request answered status before it could be
// parsed (a malformed or oversized head), as nginx logs its 400s: with what
// can be read of its start line.
func (e *Engine) accessLogRefused(remoteAddr string, head []byte, status int, sent int64) {
	if e.opts.AccessLog == nil {
		return
	}
	line := head
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	method, rest, _ := bytes.Cut(line, []byte(" "))
	uri, proto, _ := bytes.Cut(rest, []byte(" "))
	if len(uri) > maxLoggedTarget {
		uri = uri[:maxLoggedTarget]
	}
	now := e.clock.Now()
	e.writeAccess(&accessEntry{Time: now.UTC().Format(time.RFC3339Nano), RequestID: newRequestID(), ClientIP: clientIP(remoteAddr),
		Method: string(method), URI: string(uri), Proto: string(proto), Status: status, BytesSent: sent})
}
