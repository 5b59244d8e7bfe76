package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Req is one HTTP/2 stream of an h2Conn: its request, which its
// handler reads (the body through h2ReqBody), and the http.ResponseWriter
// the handler answers through. Everything runs on the connection's event
// loop; a handler that has to wait on goroutines (a gRPC call) runs on one
// with the stream offloaded, and its writes and reads come back to the
// loop (onLoop).
//
// The stream's waits for its client (request body data, flow-control
// window, a flush) are bounded as nginx bounds them (client_body_timeout,
// send_timeout): a wait without progress for that long ends the stream,
// with 408 for the body (the proxy's answer) or a reset.
type h2Req struct {
	hc  *h2Conn
	id  uint32
	req http.Request
	// co is the coroutine waiting (wait), woken by wake.
	co      *coro
	waiting bool
	// err ends the stream for the handler: reset, or the connection gone.
	err    error
	cancel context.CancelFunc

	// Request body: what arrived and was not read yet (from off), whether
	// it ended, the content-length declared (-1: none) and what came.
	body               []byte
	off                int
	bodyDone           bool
	declared, received int64
	recvWin, recvGrant int32
	bodyReader         h2ReqBody
	// expect: the client waits for 100 (Continue) before its body.
	expect bool

	// Response.
	hdr                      http.Header
	status                   int
	wroteHeader, headersSent bool
	ended                    bool // END_STREAM sent
	head                     bool // a HEAD request: no body goes out
	pending                  []byte
	sendWin                  int32

	// deadline is when the wait in progress times out (zero: never);
	// timer fires then (made once).
	deadline time.Time
	timer    *time.Timer
	timedOut bool
	// offloaded is set while the handler runs on a goroutine.
	offloaded bool
}

// h2ReqBody is a stream's request body.
type h2ReqBody struct{ st *h2Req }

// newH2Req makes a stream from its HEADERS, or says why not: a status to
// answer, or 0 for a malformed request (reset with PROTOCOL_ERROR). The
// Framer checked the fields' names, values and the pseudo-fields' order.
func newH2Req(hc *h2Conn, f *http2.MetaHeadersFrame) (*h2Req, int) {
	method, path := f.PseudoValue("method"), f.PseudoValue("path")
	scheme, authority := f.PseudoValue("scheme"), f.PseudoValue("authority")
	if method == "" || f.PseudoValue("protocol") != "" || f.PseudoValue("status") != "" {
		return nil, 0
	}
	if method == http.MethodConnect {
		if path != "" || scheme != "" || authority == "" {
			return nil, 0
		}
	} else if path == "" || scheme == "" {
		return nil, 0
	}
	regular := f.RegularFields()
	h := make(http.Header, len(regular))
	var cookies []string
	for _, hf := range regular {
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return nil, 0
		case "te":
			if hf.Value != "trailers" {
				return nil, 0
			}
		case "cookie":
			cookies = append(cookies, hf.Value)
			continue
		}
		k := http.CanonicalHeaderKey(hf.Name)
		h[k] = append(h[k], hf.Value)
	}
	if len(cookies) > 0 {
		// RFC 9113 §8.2.3: cookie fields are joined for HTTP/1.1.
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	declared := int64(-1)
	if cl := h["Content-Length"]; len(cl) > 0 {
		for _, v := range cl[1:] {
			if v != cl[0] {
				return nil, 0
			}
		}
		n, err := strconv.ParseUint(cl[0], 10, 63)
		if err != nil || cl[0][0] == '+' {
			return nil, 0
		}
		declared = int64(n)
	}
	if f.StreamEnded() && declared > 0 {
		return nil, 0
	}
	var u *url.URL
	switch {
	case method == http.MethodConnect:
		u = &url.URL{Host: authority}
		path = authority
	case path == "*" && method == http.MethodOptions:
		u = &url.URL{Path: "*"}
	case strings.HasPrefix(path, "/"):
		var err error
		if u, err = url.ParseRequestURI(path); err != nil {
			return nil, http.StatusBadRequest
		}
	default:
		return nil, 0
	}
	if authority == "" {
		authority = h.Get("Host")
	}
	c := hc.c
	st := &h2Req{hc: hc, id: f.StreamID, declared: declared, recvWin: h2StreamWindow,
		sendWin: hc.peerInitWin, hdr: make(http.Header), head: method == http.MethodHead}
	st.bodyReader.st = st
	base := context.Background()
	if c.ctx != nil {
		base = c.ctx
	}
	ctx, cancel := context.WithCancel(base)
	st.cancel = cancel
	r := &st.req
	*r = http.Request{Method: method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: h, Host: authority,
		RemoteAddr: c.remoteAddr, RequestURI: path, TLS: c.tlsState, ContentLength: declared, Body: http.NoBody}
	if f.StreamEnded() {
		st.bodyDone = true
		r.ContentLength = 0
	} else {
		r.Body = &st.bodyReader
		st.expect = hasToken(h["Expect"], "100-continue")
	}
	*r = *r.WithContext(ctx)
	return st, 0
}

// run serves the stream's request (in its own coroutine).
func (st *h2Req) run() {
	hc := st.hc
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				hc.c.s.e.log.Error("proxy handler panic", "panic", fmt.Sprint(p), "remote", hc.c.remoteAddr)
			}
			st.abort(errStreamReset, true)
		}
		st.finish()
		if st.timer != nil {
			st.timer.Stop()
		}
		st.cancel()
		hc.streamDone(st)
	}()
	hc.c.s.handler.ServeHTTP(st, &st.req)
}

// abort ends the stream for its handler (its context is canceled and a
// wait returns err); reset also sends RST_STREAM (INTERNAL_ERROR).
func (st *h2Req) abort(err error, reset bool) {
	if st.err != nil {
		return
	}
	st.err = err
	st.cancel()
	if reset {
		_ = st.hc.fr.WriteRSTStream(st.id, http2.ErrCodeInternal)
	}
	st.wake()
}

// wait parks the stream's running coroutine until wake, or until timeout
// passes without one (false).
func (st *h2Req) wait(timeout time.Duration) bool {
	l := st.hc.l
	st.co, st.waiting, st.timedOut = l.cur, true, false
	if timeout > 0 {
		st.deadline = time.Now().Add(timeout)
		if st.timer == nil {
			st.timer = time.AfterFunc(timeout, func() { l.post(st.expire) })
		} else {
			st.timer.Reset(timeout)
		}
	}
	l.suspend()
	st.deadline = time.Time{}
	return !st.timedOut
}

// expire runs on the loop when the timer fires: a wait past its deadline
// ends.
func (st *h2Req) expire() {
	if st.waiting && !st.deadline.IsZero() && !time.Now().Before(st.deadline) {
		st.timedOut = true
		st.wake()
	}
}

// wake resumes the stream's waiting coroutine (after the events at hand).
func (st *h2Req) wake() {
	if st.waiting {
		st.waiting = false
		st.hc.l.schedule(st.co)
	}
}

// consumed gives n bytes of the stream's and the connection's receive
// windows back.
func (st *h2Req) consumed(n int32) {
	st.hc.consumed(n)
	if st.bodyDone || st.err != nil {
		return
	}
	st.recvGrant += n
	if st.recvGrant >= h2StreamWindow/4 {
		_ = st.hc.fr.WriteWindowUpdate(st.id, uint32(st.recvGrant))
		st.recvWin += st.recvGrant
		st.recvGrant = 0
	}
}

// onLoop runs fn on the stream's loop (in a coroutine, which may wait)
// for a handler running on a goroutine (offloaded), and returns when fn
// has.
func (st *h2Req) onLoop(fn func()) {
	done := make(chan struct{})
	l := st.hc.l
	l.post(func() {
		l.spawn(func() {
			fn()
			close(done)
		})
	})
	<-done
}

// offload runs fn, a handler that waits on goroutines of its own (net/http's
// HTTP/2 client), on a goroutine while the loop goes on; the stream's
// reads and writes meanwhile come back to the loop.
func (st *h2Req) offload(fn func()) {
	st.offloaded = true
	defer func() { st.offloaded = false }()
	st.hc.l.offload(fn)
}

func (b *h2ReqBody) Read(p []byte) (n int, err error) {
	st := b.st
	if st.offloaded {
		st.onLoop(func() { n, err = b.read(p) })
		return n, err
	}
	return b.read(p)
}

func (b *h2ReqBody) read(p []byte) (int, error) {
	st := b.st
	for {
		if st.off < len(st.body) {
			n := copy(p, st.body[st.off:])
			st.off += n
			if st.off == len(st.body) {
				st.body, st.off = st.body[:0], 0
			}
			st.consumed(int32(n))
			return n, nil
		}
		if st.bodyDone {
			return 0, io.EOF
		}
		if st.err != nil {
			return 0, st.err
		}
		if st.expect {
			// The first read of a body the client holds back until
			// it is asked for, as an HTTP/1.1 server sends 100.
			st.expect = false
			if !st.headersSent {
				st.hc.hbuf.Reset()
				_ = st.hc.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "100"})
				st.hc.writeHeaders(st.id, false)
			}
		}
		// Window updates go out before waiting for the client.
		st.hc.flush()
		if !st.wait(st.hc.c.s.e.bodyTimeout) {
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (b *h2ReqBody) Close() error { return nil }

// Header is http.ResponseWriter's.
func (st *h2Req) Header() http.Header { return st.hdr }

// WriteHeader is http.ResponseWriter's (informational statuses are not
// sent).
func (st *h2Req) WriteHeader(code int) {
	if st.wroteHeader || code < 200 {
		return
	}
	st.wroteHeader, st.status = true, code
}

// Write is http.ResponseWriter's: small writes gather into a frame.
func (st *h2Req) Write(p []byte) (n int, err error) {
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	if st.head {
		return len(p), nil
	}
	if st.offloaded {
		st.onLoop(func() { n, err = st.write(p) })
		return n, err
	}
	return st.write(p)
}

func (st *h2Req) write(p []byte) (int, error) {
	if st.err != nil {
		return 0, st.err
	}
	if len(st.pending)+len(p) < int(st.hc.peerMaxFrame) {
		st.pending = append(st.pending, p...)
		return len(p), nil
	}
	if err := st.sendPending(); err != nil {
		return 0, err
	}
	if err := st.sendData(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sendPending sends the headers, if not sent yet, and what writes
// gathered.
func (st *h2Req) sendPending() error {
	st.sendHeaders(false)
	if len(st.pending) == 0 {
		return nil
	}
	if err := st.sendData(st.pending, false); err != nil {
		return err
	}
	st.pending = st.pending[:0]
	return nil
}

// Flush is http.Flusher's: what was written goes out now.
func (st *h2Req) Flush() {
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	if st.offloaded {
		st.onLoop(st.flush)
		return
	}
	st.flush()
}

func (st *h2Req) flush() {
	if st.err == nil && st.sendPending() == nil {
		st.hc.flushSoon()
	}
}

// finish completes the response once the handler returned: the headers
// if not sent yet, what is pending, the trailers, END_STREAM. A client
// still sending a body is told to stop (RST_STREAM NO_ERROR).
func (st *h2Req) finish() {
	hc := st.hc
	if st.err == nil && !st.ended {
		if !st.wroteHeader {
			st.WriteHeader(http.StatusOK)
		}
		trailers := st.trailers()
		end := len(trailers) == 0
		if !st.headersSent && len(st.pending) == 0 && end {
			st.sendHeaders(true)
			st.ended = true
		} else {
			st.sendHeaders(false)
			if err := st.sendData(st.pending, end); err == nil && !end {
				hc.hbuf.Reset()
				for _, f := range trailers {
					_ = hc.henc.WriteField(f)
				}
				hc.writeHeaders(st.id, true)
				st.ended = true
			}
		}
		if st.ended && !st.bodyDone {
			_ = hc.fr.WriteRSTStream(st.id, http2.ErrCodeNo)
		}
	}
	// What the handler did not read is the connection's again.
	if unread := len(st.body) - st.off; unread > 0 {
		hc.consumed(int32(unread))
	}
	st.body, st.pending = nil, nil
	hc.flushSoon()
}

// trailers are the response's trailer fields: headers set under
// http.TrailerPrefix, and those the Trailer header announced.
func (st *h2Req) trailers() []hpack.HeaderField {
	var fs []hpack.HeaderField
	for k, vs := range st.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vs {
				fs = append(fs, hpack.HeaderField{Name: strings.ToLower(name), Value: v})
			}
		}
	}
	for _, decl := range st.hdr["Trailer"] {
		for _, name := range strings.Split(decl, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			for _, v := range st.hdr[name] {
				fs = append(fs, hpack.HeaderField{Name: strings.ToLower(name), Value: v})
			}
		}
	}
	return fs
}

// sendHeaders writes the response's HEADERS frame, once.
func (st *h2Req) sendHeaders(end bool) {
	if st.headersSent || st.err != nil {
		return
	}
	st.headersSent = true
	hc := st.hc
	hc.hbuf.Reset()
	_ = hc.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(st.status)})
	declared := st.hdr["Trailer"]
	for k, vs := range st.hdr {
		switch k {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Trailer":
			continue
		}
		if strings.HasPrefix(k, http.TrailerPrefix) || len(declared) > 0 && hasToken(declared, k) {
			continue
		}
		name := lowerHeaderName(k)
		// Values new in every response are not added to the HPACK
		// table: they would only push out ones that repeat.
		unique := name == "x-kong-request-id" || strings.HasSuffix(name, "-latency")
		for _, v := range vs {
			_ = hc.henc.WriteField(hpack.HeaderField{Name: name, Value: v, Sensitive: unique})
		}
	}
	if _, ok := st.hdr["Date"]; !ok {
		_ = hc.henc.WriteField(hpack.HeaderField{Name: "date", Value: hc.c.s.date()})
	}
	hc.writeHeaders(st.id, end)
}

// sendData writes p as DATA frames within the flow-control windows,
// waiting for them to open (send_timeout); end sets END_STREAM on the
// last.
func (st *h2Req) sendData(p []byte, end bool) error {
	hc := st.hc
	for {
		if st.err != nil {
			return st.err
		}
		if len(p) == 0 {
			if end {
				_ = hc.fr.WriteData(st.id, true, nil)
				st.ended = true
			}
			return nil
		}
		n := min(len(p), int(hc.peerMaxFrame), int(st.sendWin), int(hc.sendWin))
		if n <= 0 {
			hc.flush()
			if st.sendWin > 0 {
				hc.winWaiters = append(hc.winWaiters, st)
			}
			if err := st.waitToSend(); err != nil {
				return err
			}
			continue
		}
		last := n == len(p)
		_ = hc.fr.WriteData(st.id, end && last, p[:n])
		st.sendWin -= int32(n)
		hc.sendWin -= int32(n)
		p = p[n:]
		if end && last {
			st.ended = true
		}
		if len(hc.out) >= h2MaxOut {
			if !hc.flushing {
				hc.flush()
			} else {
				hc.flushWaiters = append(hc.flushWaiters, st)
				if err := st.waitToSend(); err != nil {
					return err
				}
			}
		}
		if last {
			return nil
		}
	}
}

// waitToSend waits for the client to let the response go on (window, or a
// flush); one that does not for send_timeout has its stream reset.
func (st *h2Req) waitToSend() error {
	if !st.wait(st.hc.c.s.e.sendTimeout) {
		st.abort(os.ErrDeadlineExceeded, true)
	}
	return st.err
}

// lowerHeaderName is a canonical header name in HTTP/2's lower case
// (common names without allocating).
func lowerHeaderName(k string) string {
	if l, ok := lowerCommonHeaders[k]; ok {
		return l
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(k)
		}
	}
	return k
}

// lowerCommonHeaders maps response header names a proxy sends all the
// time to their lower case (read-only).
var lowerCommonHeaders = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept-Ranges", "Access-Control-Allow-Origin", "Age", "Cache-Control", "Content-Encoding",
		"Content-Language", "Content-Length", "Content-Type", "Date", "Etag", "Expires", "Last-Modified", "Location",
		"Server", "Set-Cookie", "Vary", "Via", "Www-Authenticate", "X-Kong-Proxy-Latency", "X-Kong-Request-Id",
		"X-Kong-Response-Latency", "X-Kong-Upstream-Latency", "X-Ratelimit-Limit-Second", "X-Ratelimit-Remaining-Second",
		"Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset", "Grpc-Status", "Grpc-Message"} {
		m[k] = strings.ToLower(k)
	}
	return m
}()
