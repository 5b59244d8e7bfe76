package server_test

// Black-box tests of the gateway's HTTP/2 server (h2c with prior
// knowledge) written against RFC 9113 with raw frames: what any conforming
// server must do, not what one implementation happens to send (no exact
// SETTINGS values, GOAWAY debug data or choice between equally allowed
// error forms).

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
)

const (
	h2pEchoService = "dddddddd-0000-4000-8000-0000000002a1"
	h2pCtlService  = "dddddddd-0000-4000-8000-0000000002a2"
	h2pEchoRoute   = "dddddddd-0000-4000-8000-0000000002b1"
	h2pCtlRoute    = "dddddddd-0000-4000-8000-0000000002b2"
	h2pHostRoute   = "dddddddd-0000-4000-8000-0000000002b3"

	// h2pAuthority is the :authority the tests' requests carry.
	h2pAuthority = "h2p.example:8123"
	// h2pMaxFrame is SETTINGS_MAX_FRAME_SIZE's initial value, which the
	// client never raises: no frame from the server may be larger.
	h2pMaxFrame = 16384
)

// h2pUpRequest is a request the control upstream received.
type h2pUpRequest struct {
	path, marker string
	body         []byte
	bodyErr      error
}

// h2pUp is a controllable HTTP/1.1 upstream: /h2p/block waits for
// release (or the request's end, or 5 s), /h2p/bytes?n=N answers
// bulkBytes(N), /h2p/sum answers the sha256 of the body, anything else
// "ok". It records every request with its body.
type h2pUp struct {
	arrived chan string // the path of each /h2p/block request, on arrival
	release chan struct{}

	mu   sync.Mutex
	reqs []h2pUpRequest
}

func (u *h2pUp) requests() []h2pUpRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]h2pUpRequest(nil), u.reqs...)
}

// h2pStartUp starts the control upstream and returns its address.
func h2pStartUp(t *testing.T) (*h2pUp, string) {
	t.Helper()
	u := &h2pUp{arrived: make(chan string, 16), release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, bodyErr := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, h2pUpRequest{path: r.URL.Path, marker: r.Header.Get("X-H2p-Marker"), body: body, bodyErr: bodyErr})
		u.mu.Unlock()
		switch r.URL.Path {
		case "/h2p/block":
			u.arrived <- r.URL.Path
			select {
			case <-u.release:
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			_, _ = io.WriteString(w, "released")
		case "/h2p/bytes":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("Content-Length", strconv.Itoa(n))
			_, _ = w.Write(bulkBytes(n))
		case "/h2p/sum":
			sum := sha256.Sum256(body)
			_, _ = io.WriteString(w, hex.EncodeToString(sum[:]))
		default:
			_, _ = io.WriteString(w, "ok")
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		close(u.release)
		_ = srv.Close()
	})
	return u, ln.Addr().String()
}

// h2pGateway starts a gateway routing /h2p/ to a control upstream,
// /preserve to an echo upstream with preserve_host and everything else to
// that echo upstream (paths unchanged); it returns the gateway's address.
func h2pGateway(t *testing.T) (addr string, up *h2pUp) {
	t.Helper()
	echoHost, echoPort := proxytest.HostPort(t, strings.TrimPrefix(proxytest.StartEcho(t, "h2p-echo"), "http://"))
	up, ctlAddr := h2pStartUp(t)
	ctlHost, ctlPort := proxytest.HostPort(t, ctlAddr)
	e, gw := proxytest.StartGatewayOptions(t, server.Options{})
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {
			{"id": h2pEchoService, "host": echoHost, "port": echoPort},
			{"id": h2pCtlService, "host": ctlHost, "port": ctlPort},
		},
		"routes": {
			{"id": h2pEchoRoute, "paths": []any{"/"}, "strip_path": false, "service": map[string]any{"id": h2pEchoService}},
			{"id": h2pCtlRoute, "paths": []any{"/h2p/"}, "strip_path": false, "service": map[string]any{"id": h2pCtlService}},
			{"id": h2pHostRoute, "paths": []any{"/preserve"}, "strip_path": false, "preserve_host": true, "service": map[string]any{"id": h2pEchoService}},
		},
	})); err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(gw, "http://"), up
}

// h2pFrame is a frame read from the server, copied out of the Framer's
// buffers (or, with err set, the end of the connection).
type h2pFrame struct {
	http2.FrameHeader
	data     []byte // DATA payload, header block fragment, GOAWAY debug data
	settings []http2.Setting
	errCode  http2.ErrCode
	lastID   uint32
	incr     uint32
	ping     [8]byte
	err      error
}

// h2pStream is what the client saw of a stream.
type h2pStream struct {
	sendWin    int64                 // what the server's window lets the client send
	blocks     [][]hpack.HeaderField // decoded header blocks: response head, trailers
	data       []byte
	dataFrames int
	ended      bool // END_STREAM received
	reset      bool
	resetCode  http2.ErrCode
}

// status is the response's :status ("" before the response head).
func (s *h2pStream) status() string {
	if len(s.blocks) == 0 {
		return ""
	}
	for _, f := range s.blocks[0] {
		if f.Name == ":status" {
			return f.Value
		}
	}
	return ""
}

// header is the first value of the response header field name.
func (s *h2pStream) header(name string) (string, bool) {
	if len(s.blocks) == 0 {
		return "", false
	}
	for _, f := range s.blocks[0] {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// h2pClient is a raw HTTP/2 client connection. A goroutine reads frames;
// the test goroutine does everything else: it keeps the flow-control
// windows, decodes header blocks, acknowledges SETTINGS and PINGs and,
// with autoWindow, gives back the window of every DATA frame received.
type h2pClient struct {
	t      *testing.T
	c      net.Conn
	w      *http2.Framer
	enc    *hpack.Encoder
	encBuf bytes.Buffer
	dec    *hpack.Decoder
	frames chan h2pFrame
	done   chan struct{}

	autoWindow bool

	first          *h2pFrame // the first frame the server sent
	serverSettings []http2.Setting
	settingsAcks   int
	sendInit       int64 // the server's SETTINGS_INITIAL_WINDOW_SIZE
	connSend       int64 // the connection window for sending
	windowUpdates  int
	streams        map[uint32]*h2pStream
	goAway         *h2pFrame
	pingAcks       [][8]byte
	closed         error // why reading ended

	hdrStream    uint32 // a header block in progress
	hdrBuf       []byte
	hdrEndStream bool
}

// h2pConnect dials the gateway and sends the connection preface's magic,
// nothing more (h2pDial also sends the client's SETTINGS).
func h2pConnect(t *testing.T, addr string) *h2pClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := &h2pClient{
		t: t, c: c, w: http2.NewFramer(c, nil), dec: hpack.NewDecoder(4096, nil),
		frames: make(chan h2pFrame, 256), done: make(chan struct{}),
		autoWindow: true, sendInit: 65535, connSend: 65535, streams: map[uint32]*h2pStream{},
	}
	cl.w.AllowIllegalWrites = true
	cl.enc = hpack.NewEncoder(&cl.encBuf)
	t.Cleanup(func() {
		close(cl.done)
		_ = c.Close()
	})
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	r := http2.NewFramer(nil, c)
	go func() {
		for {
			f, err := r.ReadFrame()
			var o h2pFrame
			if err != nil {
				o.err = err
			} else {
				o.FrameHeader = f.Header()
				switch f := f.(type) {
				case *http2.DataFrame:
					o.data = bytes.Clone(f.Data())
				case *http2.HeadersFrame:
					o.data = bytes.Clone(f.HeaderBlockFragment())
				case *http2.ContinuationFrame:
					o.data = bytes.Clone(f.HeaderBlockFragment())
				case *http2.SettingsFrame:
					_ = f.ForeachSetting(func(s http2.Setting) error { o.settings = append(o.settings, s); return nil })
				case *http2.WindowUpdateFrame:
					o.incr = f.Increment
				case *http2.RSTStreamFrame:
					o.errCode = f.ErrCode
				case *http2.GoAwayFrame:
					o.errCode, o.lastID, o.data = f.ErrCode, f.LastStreamID, bytes.Clone(f.DebugData())
				case *http2.PingFrame:
					o.ping = f.Data
				}
			}
			select {
			case cl.frames <- o:
			case <-cl.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return cl
}

// h2pDial opens an HTTP/2 connection: the preface and a SETTINGS frame
// with settings.
func h2pDial(t *testing.T, addr string, settings ...http2.Setting) *h2pClient {
	t.Helper()
	cl := h2pConnect(t, addr)
	if err := cl.w.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return cl
}

func (c *h2pClient) stream(id uint32) *h2pStream {
	s := c.streams[id]
	if s == nil {
		s = &h2pStream{sendWin: c.sendInit}
		c.streams[id] = s
	}
	return s
}

// block encodes fields (name, value pairs, in order) as a header block.
func (c *h2pClient) block(fields [][2]string) []byte {
	c.encBuf.Reset()
	for _, f := range fields {
		_ = c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return bytes.Clone(c.encBuf.Bytes())
}

// headers sends fields as one HEADERS frame on stream id.
func (c *h2pClient) headers(id uint32, endStream bool, fields [][2]string) {
	c.t.Helper()
	c.stream(id)
	if err := c.w.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(fields), EndStream: endStream, EndHeaders: true}); err != nil {
		c.t.Fatalf("writing HEADERS on stream %d: %v", id, err)
	}
}

// h2pRequestFields is a request's pseudo-header fields, then extra.
func h2pRequestFields(method, path string, extra ...[2]string) [][2]string {
	return append([][2]string{{":method", method}, {":scheme", "http"}, {":authority", h2pAuthority}, {":path", path}}, extra...)
}

// request sends a request's header block on stream id.
func (c *h2pClient) request(id uint32, method, path string, endStream bool, extra ...[2]string) {
	c.t.Helper()
	c.headers(id, endStream, h2pRequestFields(method, path, extra...))
}

// data sends p on stream id in DATA frames no larger than the maximum
// frame size, never more than the stream's and the connection's windows
// allow (reading frames while they are closed).
func (c *h2pClient) data(id uint32, p []byte, endStream bool) {
	c.t.Helper()
	s := c.stream(id)
	for first := true; first || len(p) > 0; first = false {
		c.until(fmt.Sprintf("a flow-control window to send on stream %d", id), func() bool {
			return len(p) == 0 || s.reset || (s.sendWin > 0 && c.connSend > 0)
		})
		if s.reset {
			c.t.Fatalf("stream %d was reset (%v) while sending its body", id, s.resetCode)
		}
		n := min(int64(len(p)), s.sendWin, c.connSend, h2pMaxFrame)
		end := endStream && n == int64(len(p))
		if err := c.w.WriteData(id, end, p[:n]); err != nil {
			c.t.Fatalf("writing DATA on stream %d: %v", id, err)
		}
		s.sendWin -= n
		c.connSend -= n
		p = p[n:]
	}
}

// nextWithin reads the next frame and keeps the connection's state; ok
// is false if none came within d, and the returned frame has err set when
// the connection ended.
func (c *h2pClient) nextWithin(d time.Duration) (f h2pFrame, ok bool) {
	c.t.Helper()
	if c.closed != nil {
		return h2pFrame{err: c.closed}, true
	}
	select {
	case f = <-c.frames:
	case <-time.After(d):
		return f, false
	}
	c.process(f)
	return f, true
}

// next reads the next frame (see nextWithin), up to the connection's
// deadline.
func (c *h2pClient) next() h2pFrame {
	c.t.Helper()
	f, _ := c.nextWithin(time.Minute) // the connection's deadline comes first
	return f
}

func (c *h2pClient) process(f h2pFrame) {
	t := c.t
	t.Helper()
	if f.err != nil {
		c.closed = f.err
		var ce http2.ConnectionError
		if errors.As(f.err, &ce) || errors.Is(f.err, http2.ErrFrameTooLarge) {
			t.Errorf("the server sent a frame that breaks RFC 9113: %v", f.err)
		}
		return
	}
	if c.first == nil {
		c.first = &f
	}
	if f.Length > h2pMaxFrame {
		t.Errorf("the server sent a %v frame of %d bytes; SETTINGS_MAX_FRAME_SIZE is %d", f.Type, f.Length, h2pMaxFrame)
	}
	if c.hdrStream != 0 && f.Type != http2.FrameContinuation {
		t.Errorf("the server sent %v in the middle of stream %d's header block", f.Type, c.hdrStream)
	}
	switch f.Type {
	case http2.FrameSettings:
		if f.Flags.Has(http2.FlagSettingsAck) {
			if f.Length != 0 {
				t.Errorf("a SETTINGS ACK with a %d-byte payload", f.Length)
			}
			c.settingsAcks++
			return
		}
		for _, s := range f.settings {
			if err := s.Valid(); err != nil {
				t.Errorf("the server sent an invalid setting: %v", err)
			}
			switch s.ID {
			case http2.SettingEnablePush:
				if s.Val != 0 {
					t.Errorf("the server sent SETTINGS_ENABLE_PUSH = %d (RFC 9113 §6.5.2: a server MUST NOT set it to 1)", s.Val)
				}
			case http2.SettingInitialWindowSize:
				delta := int64(s.Val) - c.sendInit
				c.sendInit = int64(s.Val)
				for _, st := range c.streams {
					st.sendWin += delta
				}
			case http2.SettingHeaderTableSize:
				c.enc.SetMaxDynamicTableSizeLimit(s.Val)
			}
		}
		c.serverSettings = append(c.serverSettings, f.settings...)
		if err := c.w.WriteSettingsAck(); err != nil {
			t.Fatalf("writing a SETTINGS ACK: %v", err)
		}
	case http2.FrameWindowUpdate:
		c.windowUpdates++
		if f.StreamID == 0 {
			c.connSend += int64(f.incr)
		} else {
			c.stream(f.StreamID).sendWin += int64(f.incr)
		}
	case http2.FrameHeaders, http2.FrameContinuation:
		if f.Type == http2.FrameHeaders {
			if f.StreamID%2 == 0 || c.streams[f.StreamID] == nil {
				t.Errorf("the server sent HEADERS on stream %d, which the client did not open", f.StreamID)
			}
			c.hdrStream, c.hdrBuf, c.hdrEndStream = f.StreamID, nil, f.Flags.Has(http2.FlagHeadersEndStream)
		}
		c.hdrBuf = append(c.hdrBuf, f.data...)
		if !f.Flags.Has(http2.FlagHeadersEndHeaders) {
			return
		}
		fields, err := c.dec.DecodeFull(c.hdrBuf)
		if err != nil {
			t.Fatalf("the server's header block on stream %d does not decode: %v", c.hdrStream, err)
		}
		s := c.stream(c.hdrStream)
		s.blocks = append(s.blocks, fields)
		if c.hdrEndStream {
			s.ended = true
		}
		c.hdrStream = 0
	case http2.FrameData:
		s := c.stream(f.StreamID)
		s.data = append(s.data, f.data...)
		s.dataFrames++
		if f.Flags.Has(http2.FlagDataEndStream) {
			s.ended = true
		}
		if c.autoWindow && f.Length > 0 {
			_ = c.w.WriteWindowUpdate(0, f.Length)
			if !s.ended {
				_ = c.w.WriteWindowUpdate(f.StreamID, f.Length)
			}
		}
	case http2.FrameRSTStream:
		s := c.stream(f.StreamID)
		s.reset, s.resetCode = true, f.errCode
	case http2.FrameGoAway:
		c.goAway = &f
	case http2.FramePing:
		if f.Flags.Has(http2.FlagPingAck) {
			c.pingAcks = append(c.pingAcks, f.ping)
		} else if err := c.w.WritePing(true, f.ping); err != nil {
			t.Fatalf("answering a PING: %v", err)
		}
	}
}

// until reads frames until cond holds, failing the test if the
// connection ends first.
func (c *h2pClient) until(what string, cond func() bool) {
	c.t.Helper()
	for !cond() {
		if f := c.next(); f.err != nil {
			goAway := "no GOAWAY"
			if c.goAway != nil {
				goAway = fmt.Sprintf("GOAWAY %v %q", c.goAway.errCode, c.goAway.data)
			}
			c.t.Fatalf("the connection ended (%v, %s) while waiting for %s", f.err, goAway, what)
		}
	}
}

// response waits for stream id to end or be reset and returns it.
func (c *h2pClient) response(id uint32) *h2pStream {
	c.t.Helper()
	s := c.stream(id)
	c.until(fmt.Sprintf("the end of stream %d", id), func() bool { return s.ended || s.reset })
	return s
}

// ok waits for stream id's response and checks that it is a complete 200.
func (c *h2pClient) ok(id uint32) *h2pStream {
	c.t.Helper()
	s := c.response(id)
	if s.reset {
		c.t.Fatalf("stream %d was reset (%v); want a 200 response", id, s.resetCode)
	}
	if s.status() != "200" {
		c.t.Fatalf("stream %d answered %q (body %q); want 200", id, s.status(), s.data)
	}
	return s
}

// endsWithGoAway waits for the connection to end and checks that a GOAWAY
// with code came first (RFC 9113 §5.4.1: a connection error is answered
// with GOAWAY, then the connection is closed).
func (c *h2pClient) endsWithGoAway(code http2.ErrCode) {
	c.t.Helper()
	for c.closed == nil {
		c.next()
	}
	if c.goAway == nil {
		c.t.Fatalf("the connection was closed (%v) without a GOAWAY; want GOAWAY %v", c.closed, code)
	}
	if c.goAway.errCode != code {
		c.t.Fatalf("GOAWAY %v (%q); want %v", c.goAway.errCode, c.goAway.data, code)
	}
	if ne, ok := c.closed.(net.Error); ok && ne.Timeout() {
		c.t.Fatalf("after GOAWAY %v the connection stayed open", code)
	}
}

// TestH2ProtoGet: a GET is answered with :status 200 in a HEADERS frame
// and the upstream's body in DATA frames, the last with END_STREAM; the
// proxy's own headers are there and every field name is lower-case, with
// no connection-specific field (RFC 9113 §8.2).
func TestH2ProtoGet(t *testing.T) {
	addr, _ := h2pGateway(t)
	c := h2pDial(t, addr)
	c.request(1, "GET", "/get?a=1", true, [2]string{"x-h2p-test", "get"})
	s := c.ok(1)
	if len(s.blocks) != 1 {
		t.Fatalf("got %d header blocks on stream 1; want just the response head (the echo sends no trailers)", len(s.blocks))
	}
	if s.dataFrames == 0 || !s.ended {
		t.Fatalf("the body came in %d DATA frames, ended %v; want DATA frames ending the stream", s.dataFrames, s.ended)
	}
	echo := proxytest.DecodeEcho(t, s.data)
	if echo.Method != "GET" || echo.URI != "/get?a=1" || echo.Server != "h2p-echo" {
		t.Fatalf("the upstream saw %s %s (server %s); want GET /get?a=1 at h2p-echo", echo.Method, echo.URI, echo.Server)
	}
	if got := echo.Header["X-H2p-Test"]; len(got) != 1 || got[0] != "get" {
		t.Fatalf("the upstream saw x-h2p-test %q; want [get]", got)
	}
	for i, f := range s.blocks[0] {
		if f.Name != strings.ToLower(f.Name) {
			t.Errorf("response field name %q is not lower-case", f.Name)
		}
		if strings.HasPrefix(f.Name, ":") && (f.Name != ":status" || i != 0) {
			t.Errorf("response pseudo-header %q at position %d; want only :status, first", f.Name, i)
		}
		switch f.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			t.Errorf("the response carries the connection-specific field %q: %q", f.Name, f.Value)
		}
	}
	for _, name := range []string{"via", "x-kong-upstream-latency", "x-kong-proxy-latency", "content-type"} {
		if _, ok := s.header(name); !ok {
			t.Errorf("the response has no %s header; fields %v", name, s.blocks[0])
		}
	}
	if cl, ok := s.header("content-length"); ok && cl != strconv.Itoa(len(s.data)) {
		t.Errorf("content-length %s but %d bytes of DATA (RFC 9113 §8.1.1)", cl, len(s.data))
	}
	if up, _ := s.header("x-upstream"); up != "h2p-echo" {
		t.Errorf("the upstream's x-upstream header is %q; want h2p-echo", up)
	}
}

// TestH2ProtoConcurrentStreams: 20 requests sent on streams 1, 3, … 39
// before any answer is read are each answered, on their own stream.
func TestH2ProtoConcurrentStreams(t *testing.T) {
	addr, _ := h2pGateway(t)
	c := h2pDial(t, addr)
	// The server's SETTINGS could lower SETTINGS_MAX_CONCURRENT_STREAMS
	// below 20 (it may then refuse streams): take it into account.
	c.until("the server's SETTINGS", func() bool { return c.first != nil })
	n := uint32(20)
	for _, s := range c.serverSettings {
		if s.ID == http2.SettingMaxConcurrentStreams && s.Val < n {
			n = s.Val
		}
	}
	if n < 2 {
		t.Fatalf("the server allows %d concurrent streams", n)
	}
	for i := uint32(0); i < n; i++ {
		id := 2*i + 1
		c.request(id, "GET", fmt.Sprintf("/c/%d", id), true, [2]string{"x-h2p-stream", strconv.Itoa(int(id))})
	}
	for i := uint32(0); i < n; i++ {
		id := 2*i + 1
		s := c.ok(id)
		echo := proxytest.DecodeEcho(t, s.data)
		if want := fmt.Sprintf("/c/%d", id); echo.URI != want {
			t.Fatalf("stream %d carried the answer to %s; want %s", id, echo.URI, want)
		}
		if got := echo.Header["X-H2p-Stream"]; len(got) != 1 || got[0] != strconv.Itoa(int(id)) {
			t.Fatalf("stream %d's request reached the upstream with x-h2p-stream %q", id, got)
		}
	}
}

// TestH2ProtoRequestBody: a body sent in several DATA frames (one padded)
// reaches the upstream intact, and a body larger than the windows the
// server opened at first is sent only as the server grants window
// (WINDOW_UPDATE) as it consumes it.
func TestH2ProtoRequestBody(t *testing.T) {
	addr, _ := h2pGateway(t)

	t.Run("three DATA frames", func(t *testing.T) {
		c := h2pDial(t, addr)
		c.request(1, "POST", "/post", false, [2]string{"content-type", "text/plain"})
		parts := [][]byte{bytes.Repeat([]byte("a"), 10<<10), bytes.Repeat([]byte("b"), 10<<10), bytes.Repeat([]byte("c"), 10<<10)}
		c.data(1, parts[0], false)
		// A padded frame: its padding counts against the windows.
		c.until("window for a padded DATA frame", func() bool {
			return c.stream(1).sendWin >= 10<<10+33 && c.connSend >= 10<<10+33
		})
		if err := c.w.WriteDataPadded(1, false, parts[1], make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
		c.stream(1).sendWin -= 10<<10 + 33
		c.connSend -= 10<<10 + 33
		c.data(1, parts[2], true)
		s := c.ok(1)
		echo := proxytest.DecodeEcho(t, s.data)
		if want := string(bytes.Join(parts, nil)); echo.Body != want {
			t.Fatalf("the upstream got a %d-byte body; want the 30 KiB sent (aaa…bbb…ccc…)", len(echo.Body))
		}
		if echo.Method != "POST" {
			t.Fatalf("the upstream saw %s; want POST", echo.Method)
		}
	})

	t.Run("larger than the windows", func(t *testing.T) {
		c := h2pDial(t, addr)
		c.until("the server's ACK of the client's SETTINGS", func() bool { return c.settingsAcks > 0 })
		// Twice what the server lets the client send without any
		// WINDOW_UPDATE after its first ones (at least 300 KiB).
		size := max(int64(300<<10), 2*c.sendInit, 2*c.connSend)
		if size > 16<<20 {
			t.Skipf("the server opened windows of %d (stream) and %d (connection) bytes: too large to exhaust", c.sendInit, c.connSend)
		}
		before := c.windowUpdates
		body := bulkBytes(int(size))
		c.request(1, "POST", "/h2p/sum", false, [2]string{"content-length", strconv.Itoa(len(body))})
		c.data(1, body, true)
		s := c.ok(1)
		sum := sha256.Sum256(body)
		if string(s.data) != hex.EncodeToString(sum[:]) {
			t.Fatalf("the upstream's sha256 of the %d-byte body is %q; want %x", len(body), s.data, sum)
		}
		t.Logf("sent %d bytes; initial windows %d (stream) %d (connection); %d WINDOW_UPDATEs during the upload", len(body), c.sendInit, c.connSend, c.windowUpdates-before)
		if c.windowUpdates == before {
			t.Fatalf("a %d-byte body was sent without any WINDOW_UPDATE from the server", len(body))
		}
	})
}

// TestH2ProtoResponseFlowControl: with SETTINGS_INITIAL_WINDOW_SIZE 100
// the server sends at most 100 bytes of a 10 KiB body until the client
// opens the stream's window; then the rest comes.
func TestH2ProtoResponseFlowControl(t *testing.T) {
	addr, _ := h2pGateway(t)
	c := h2pDial(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100})
	c.autoWindow = false
	const size = 10 << 10
	c.request(1, "GET", fmt.Sprintf("/h2p/bytes?n=%d", size), true)
	s := c.stream(1)
	c.until("100 bytes of DATA on stream 1", func() bool { return len(s.data) >= 100 || s.ended || s.reset })
	if s.reset || s.ended || len(s.data) > 100 {
		t.Fatalf("with a 100-byte stream window the server sent %d bytes (ended %v, reset %v %v); want at most 100 before a WINDOW_UPDATE", len(s.data), s.ended, s.reset, s.resetCode)
	}
	for {
		f, ok := c.nextWithin(200 * time.Millisecond)
		if !ok {
			break
		}
		if f.err != nil {
			t.Fatalf("the connection ended while the stream waited for window: %v", f.err)
		}
		if len(s.data) > 100 || s.ended {
			t.Fatalf("the server sent %d bytes (ended %v) on a stream whose window is 100 bytes", len(s.data), s.ended)
		}
	}
	if err := c.w.WriteWindowUpdate(1, size); err != nil {
		t.Fatal(err)
	}
	c.ok(1)
	if !bytes.Equal(s.data, bulkBytes(size)) {
		t.Fatalf("after the WINDOW_UPDATE the body is %d bytes, not the upstream's %d", len(s.data), size)
	}
}

// TestH2ProtoPing: a PING is answered with a PING ACK carrying the same
// 8 bytes; a PING ACK is not answered (RFC 9113 §6.7).
func TestH2ProtoPing(t *testing.T) {
	addr, _ := h2pGateway(t)
	c := h2pDial(t, addr)
	if err := c.w.WritePing(true, [8]byte{'u', 'n', 'a', 's', 'k', 'e', 'd', '!'}); err != nil {
		t.Fatal(err)
	}
	want := [8]byte{'h', '2', 'p', 0, 1, 2, 0xfe, 0xff}
	if err := c.w.WritePing(false, want); err != nil {
		t.Fatal(err)
	}
	c.until("a PING ACK", func() bool { return len(c.pingAcks) > 0 })
	if c.pingAcks[0] != want {
		t.Fatalf("the PING ACK carries %q; want %q (an unsolicited PING ACK must not be answered)", c.pingAcks[0][:], want[:])
	}
	// The connection still serves requests.
	c.request(1, "GET", "/after-ping", true)
	c.ok(1)
}

// TestH2ProtoSettings: the server's first frame is SETTINGS (RFC 9113
// §3.4) and it acknowledges each SETTINGS frame of the client with an
// empty SETTINGS ACK.
func TestH2ProtoSettings(t *testing.T) {
	addr, _ := h2pGateway(t)
	c := h2pDial(t, addr, http2.Setting{ID: http2.SettingEnablePush, Val: 0}, http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: 1 << 20})
	c.until("the ACK of the client's first SETTINGS", func() bool { return c.settingsAcks == 1 })
	if c.first.Type != http2.FrameSettings || c.first.Flags.Has(http2.FlagSettingsAck) {
		t.Fatalf("the server's first frame is %v (flags %v); want SETTINGS without ACK", c.first.Type, c.first.Flags)
	}
	if c.first.StreamID != 0 {
		t.Fatalf("the server's SETTINGS is on stream %d; want 0", c.first.StreamID)
	}
	// A second SETTINGS mid-connection (an empty one too) is ACKed too.
	// Each is sent once the previous one is acknowledged: net/http's
	// server answers two SETTINGS that arrive together with one ACK
	// (against RFC 9113 §6.5.3), which this test does not hold against it.
	if err := c.w.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	c.until("the ACK of the client's second SETTINGS", func() bool { return c.settingsAcks == 2 })
	if err := c.w.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	c.until("the ACK of the client's third (empty) SETTINGS", func() bool { return c.settingsAcks == 3 })
	c.request(1, "GET", "/after-settings", true)
	c.ok(1)
}

// h2pBlockedStream opens stream 1 to the upstream's /h2p/block and waits
// until the request is there (the upstream holds it).
func h2pBlockedStream(t *testing.T) (*h2pClient, *h2pUp) {
	t.Helper()
	addr, up := h2pGateway(t)
	c := h2pDial(t, addr)
	c.request(1, "GET", "/h2p/block", true)
	select {
	case <-up.arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("stream 1's request did not reach the upstream")
	}
	return c, up
}

// TestH2ProtoClientReset: RST_STREAM on a stream whose upstream is still
// working ends that stream only: the next stream on the connection is
// answered.
func TestH2ProtoClientReset(t *testing.T) {
	c, _ := h2pBlockedStream(t)
	if err := c.w.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	c.request(3, "GET", "/after-reset", true)
	s := c.ok(3)
	if echo := proxytest.DecodeEcho(t, s.data); echo.URI != "/after-reset" {
		t.Fatalf("stream 3 carried the answer to %s", echo.URI)
	}
	if st := c.stream(1); st.status() != "" {
		t.Fatalf("the stream the client reset was answered %q", st.status())
	}
	if c.goAway != nil {
		t.Fatalf("the server sent GOAWAY %v after a client's RST_STREAM", c.goAway.errCode)
	}
}

// TestH2ProtoConnectionErrors: frames RFC 9113 makes connection errors
// are answered with GOAWAY carrying the error code, then the connection
// is closed.
func TestH2ProtoConnectionErrors(t *testing.T) {
	addr, _ := h2pGateway(t)
	get := h2pRequestFields("GET", "/conn-error")
	cases := []struct {
		name string
		code http2.ErrCode
		send func(c *h2pClient)
	}{
		{"HEADERS on an even stream (§5.1.1)", http2.ErrCodeProtocol, func(c *h2pClient) {
			c.headers(2, true, get)
		}},
		{"HEADERS on stream 0 (§6.2)", http2.ErrCodeProtocol, func(c *h2pClient) {
			c.headers(0, true, get)
		}},
		{"DATA on stream 0 (§6.1)", http2.ErrCodeProtocol, func(c *h2pClient) {
			_ = c.w.WriteData(0, false, []byte("data"))
		}},
		{"stream id lower than one used (§5.1.1)", http2.ErrCodeProtocol, func(c *h2pClient) {
			c.headers(5, true, get)
			c.headers(3, true, get)
		}},
		{"CONTINUATION without HEADERS (§6.10)", http2.ErrCodeProtocol, func(c *h2pClient) {
			_ = c.w.WriteContinuation(1, true, c.block(get))
		}},
		{"another frame inside a header block (§4.3)", http2.ErrCodeProtocol, func(c *h2pClient) {
			_ = c.w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(get), EndStream: true})
			_ = c.w.WritePing(false, [8]byte{})
		}},
		{"first frame not SETTINGS (§3.4)", http2.ErrCodeProtocol, func(c *h2pClient) {
			_ = c.w.WritePing(false, [8]byte{})
		}},
		{"SETTINGS_ENABLE_PUSH 2 (§6.5.2)", http2.ErrCodeProtocol, func(c *h2pClient) {
			_ = c.w.WriteRawFrame(http2.FrameSettings, 0, 0, []byte{0, 2, 0, 0, 0, 2})
		}},
		{"WINDOW_UPDATE of 0 on the connection (§6.9)", http2.ErrCodeProtocol, func(c *h2pClient) {
			_ = c.w.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 0, 0})
		}},
		{"SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 (§6.5.2)", http2.ErrCodeFlowControl, func(c *h2pClient) {
			_ = c.w.WriteRawFrame(http2.FrameSettings, 0, 0, []byte{0, 4, 0x80, 0, 0, 0})
		}},
		{"connection window overflow (§6.9.1)", http2.ErrCodeFlowControl, func(c *h2pClient) {
			_ = c.w.WriteWindowUpdate(0, 1<<31-1)
		}},
		{"PING of 7 bytes (§6.7)", http2.ErrCodeFrameSize, func(c *h2pClient) {
			_ = c.w.WriteRawFrame(http2.FramePing, 0, 0, make([]byte, 7))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c *h2pClient
			if strings.HasPrefix(tc.name, "first frame") {
				c = h2pConnect(t, addr)
			} else {
				c = h2pDial(t, addr)
				c.until("the ACK of the client's SETTINGS", func() bool { return c.settingsAcks > 0 })
			}
			tc.send(c)
			c.endsWithGoAway(tc.code)
		})
	}
}

// TestH2ProtoMalformedRequests: malformed requests (RFC 9113 §8.1.1,
// §8.2, §8.3) are stream errors: RST_STREAM PROTOCOL_ERROR or a 400
// answer, never forwarded; the connection goes on.
func TestH2ProtoMalformedRequests(t *testing.T) {
	addr, up := h2pGateway(t)
	marker := [2]string{"x-h2p-marker", "malformed"}
	base := [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", h2pAuthority}, {":path", "/h2p/malformed"}}
	with := func(extra ...[2]string) [][2]string {
		return append(append(append([][2]string{}, base...), marker), extra...)
	}
	cases := []struct {
		name   string
		fields [][2]string
	}{
		{"upper-case field name", with([2]string{"X-H2p-Upper", "1"})},
		{"connection: keep-alive", with([2]string{"connection", "keep-alive"})},
		{"keep-alive field", with([2]string{"keep-alive", "timeout=5"})},
		{"transfer-encoding field", with([2]string{"transfer-encoding", "chunked"})},
		{"upgrade field", with([2]string{"upgrade", "websocket"})},
		{"te other than trailers", with([2]string{"te", "gzip"})},
		{"missing :path", [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", h2pAuthority}, marker}},
		{"missing :method", [][2]string{{":scheme", "http"}, {":authority", h2pAuthority}, {":path", "/h2p/malformed"}, marker}},
		{"empty :path", [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", h2pAuthority}, {":path", ""}, marker}},
		{"pseudo-header after a regular field", [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", h2pAuthority}, marker, {":path", "/h2p/malformed"}}},
		{"duplicate :path", append(with(), [2]string{":path", "/h2p/other"})},
		{"undefined pseudo-header", with([2]string{":h2p", "1"})},
		{"response pseudo-header in a request", with([2]string{":status", "200"})},
		{"CR LF in a field value", with([2]string{"x-h2p-value", "a\r\nx-injected: 1"})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := h2pDial(t, addr)
			c.headers(1, true, tc.fields)
			s := c.stream(1)
			c.until("stream 1's reset or answer", func() bool { return s.reset || s.ended || c.goAway != nil })
			t.Logf("answer: reset %v %v, status %q, GOAWAY %v", s.reset, s.resetCode, s.status(), c.goAway != nil)
			switch {
			case s.reset:
				if s.resetCode != http2.ErrCodeProtocol {
					t.Fatalf("RST_STREAM %v; want PROTOCOL_ERROR", s.resetCode)
				}
			case s.ended:
				if s.status() != "400" {
					t.Fatalf("answered %q (body %q); want RST_STREAM PROTOCOL_ERROR or 400", s.status(), s.data)
				}
			default:
				if c.goAway.errCode != http2.ErrCodeProtocol {
					t.Fatalf("GOAWAY %v; want RST_STREAM PROTOCOL_ERROR, 400 or GOAWAY PROTOCOL_ERROR", c.goAway.errCode)
				}
				t.Logf("answered with GOAWAY PROTOCOL_ERROR (a connection error)")
			}
			if c.goAway == nil {
				c.request(3, "GET", "/h2p/ok", true)
				c.ok(3)
			}
			time.Sleep(50 * time.Millisecond)
			for _, r := range up.requests() {
				if r.marker != "" || r.path == "/h2p/malformed" {
					t.Fatalf("a malformed request reached the upstream: %s", r.path)
				}
			}
		})
	}
}

// TestH2ProtoContinuation: a header block split over HEADERS (padded,
// with a priority) and two CONTINUATION frames makes one request.
func TestH2ProtoContinuation(t *testing.T) {
	addr, _ := h2pGateway(t)
	c := h2pDial(t, addr)
	long := strings.Repeat("0123456789", 100)
	b := c.block(h2pRequestFields("GET", "/continued", [2]string{"x-h2p-long", long}, [2]string{"x-h2p-last", "end"}))
	third := len(b) / 3
	c.stream(1)
	if err := c.w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:third], EndStream: true, PadLength: 7, Priority: http2.PriorityParam{Weight: 200}}); err != nil {
		t.Fatal(err)
	}
	if err := c.w.WriteContinuation(1, false, b[third:2*third]); err != nil {
		t.Fatal(err)
	}
	if err := c.w.WriteContinuation(1, true, b[2*third:]); err != nil {
		t.Fatal(err)
	}
	echo := proxytest.DecodeEcho(t, c.ok(1).data)
	if echo.URI != "/continued" || len(echo.Header["X-H2p-Long"]) != 1 || echo.Header["X-H2p-Long"][0] != long || len(echo.Header["X-H2p-Last"]) != 1 || echo.Header["X-H2p-Last"][0] != "end" {
		t.Fatalf("the upstream saw %s with x-h2p-long %d bytes, x-h2p-last %q; want /continued, 1000 bytes, end", echo.URI, len(strings.Join(echo.Header["X-H2p-Long"], "")), echo.Header["X-H2p-Last"])
	}
}

// TestH2ProtoRequestTrailers: a request ending with a trailer section
// (HEADERS with END_STREAM after DATA) is accepted and its body forwarded.
func TestH2ProtoRequestTrailers(t *testing.T) {
	addr, _ := h2pGateway(t)
	c := h2pDial(t, addr)
	c.request(1, "POST", "/trailers", false, [2]string{"te", "trailers"})
	c.data(1, []byte("hello trailers"), false)
	c.headers(1, true, [][2]string{{"x-h2p-checksum", "abc"}})
	echo := proxytest.DecodeEcho(t, c.ok(1).data)
	if echo.Method != "POST" || echo.Body != "hello trailers" {
		t.Fatalf("the upstream saw %s with body %q; want POST with %q", echo.Method, echo.Body, "hello trailers")
	}
}

// TestH2ProtoClientGoAway: after the client's GOAWAY the server still
// completes the stream in flight.
func TestH2ProtoClientGoAway(t *testing.T) {
	c, up := h2pBlockedStream(t)
	if err := c.w.WriteGoAway(0, http2.ErrCodeNo, nil); err != nil {
		t.Fatal(err)
	}
	if f, ok := c.nextWithin(100 * time.Millisecond); ok && f.err != nil {
		t.Fatalf("the connection ended (%v) after the client's GOAWAY, stream 1 in flight", f.err)
	}
	select {
	case up.release <- struct{}{}:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request of stream 1 ended before it was released")
	}
	if s := c.ok(1); string(s.data) != "released" {
		t.Fatalf("stream 1's body is %q; want the upstream's %q", s.data, "released")
	}
	if c.goAway != nil && c.goAway.lastID < 1 {
		t.Fatalf("the server's GOAWAY names last stream %d, below stream 1 it answered", c.goAway.lastID)
	}
}

// TestH2ProtoAuthority: :authority is the request's host: with
// preserve_host off the upstream gets its own host and X-Forwarded-Host
// the :authority's host; with preserve_host the upstream gets :authority.
func TestH2ProtoAuthority(t *testing.T) {
	addr, _ := h2pGateway(t)
	c := h2pDial(t, addr)
	c.request(1, "GET", "/authority", true)
	c.request(3, "GET", "/preserve", true)
	plain := proxytest.DecodeEcho(t, c.ok(1).data)
	preserved := proxytest.DecodeEcho(t, c.ok(3).data)
	if !strings.HasPrefix(plain.Host, "127.0.0.1:") {
		t.Errorf("without preserve_host the upstream saw host %q; want its own 127.0.0.1:port", plain.Host)
	}
	if got := plain.Header["X-Forwarded-Host"]; len(got) != 1 || got[0] != "h2p.example" {
		t.Errorf("X-Forwarded-Host %q; want [h2p.example] (the :authority's host)", got)
	}
	if preserved.Host != h2pAuthority {
		t.Errorf("with preserve_host the upstream saw host %q; want the :authority %q", preserved.Host, h2pAuthority)
	}
}

// TestH2ProtoContentLengthMismatch: a request whose DATA do not add up to
// its content-length is malformed (RFC 9113 §8.1.1): the stream is reset
// with PROTOCOL_ERROR or answered 400, and no upstream request completes
// with a body.
func TestH2ProtoContentLengthMismatch(t *testing.T) {
	addr, up := h2pGateway(t)
	for _, tc := range []struct {
		name     string
		declared int
		sent     string
	}{
		{"more DATA than declared", 5, "0123456789"},
		{"less DATA than declared", 10, "01234"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h2pDial(t, addr)
			c.request(1, "POST", "/h2p/sum", false, [2]string{"content-length", strconv.Itoa(tc.declared)}, [2]string{"x-h2p-marker", tc.name})
			c.data(1, []byte(tc.sent), true)
			s := c.response(1)
			t.Logf("answer: reset %v %v, status %q %q", s.reset, s.resetCode, s.status(), s.data)
			switch {
			case s.reset:
				if s.resetCode != http2.ErrCodeProtocol {
					t.Fatalf("RST_STREAM %v; want PROTOCOL_ERROR", s.resetCode)
				}
			case s.status() != "400":
				t.Fatalf("answered %q (body %q); want RST_STREAM PROTOCOL_ERROR or 400", s.status(), s.data)
			}
			if c.goAway == nil {
				c.request(3, "GET", "/h2p/ok", true)
				c.ok(3)
			}
			time.Sleep(50 * time.Millisecond)
			for _, r := range up.requests() {
				if r.marker == tc.name && r.bodyErr == nil {
					t.Fatalf("the upstream got the request with a complete %d-byte body %q", len(r.body), r.body)
				}
			}
		})
	}
}

// TestH2ProtoPingFlood: a client that sends PINGs much faster than it
// reads the answers (50,000 of them, reading nothing for a while) gets
// every answer once it reads: the server stops reading while its answers
// cannot go out rather than buffering them without bound, and does not
// wedge.
func TestH2ProtoPingFlood(t *testing.T) {
	addr, _ := h2pGateway(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	const pings = 50000
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fw := http2.NewFramer(&out, nil)
	_ = fw.WriteSettings()
	for i := range pings {
		var data [8]byte
		binary.BigEndian.PutUint64(data[:], uint64(i))
		_ = fw.WritePing(false, data)
	}
	wrote := make(chan error, 1)
	go func() { _, err := c.Write(out.Bytes()); wrote <- err }()
	time.Sleep(300 * time.Millisecond) // not reading: the answers back up
	fr := http2.NewFramer(c, c)
	next := uint64(0)
	for next < pings {
		f, err := h2NextFrame(fr)
		if err != nil {
			t.Fatalf("after %d PING answers: %v", next, err)
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if got := binary.BigEndian.Uint64(f.Data[:]); !f.IsAck() || got != next {
				t.Fatalf("PING answer %d: ack %v, data %d", next, f.IsAck(), got)
			}
			next++
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v after %d PING answers", f.ErrCode, next)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// TestH2ProtoExpectContinue: a request with "expect: 100-continue" gets an
// informational 100 before it sends its body (RFC 9110 §10.1.1; a client
// waits for it, or for a timeout), then its response.
func TestH2ProtoExpectContinue(t *testing.T) {
	addr, _ := h2pGateway(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fr := h2Request(t, c, nil, "POST", "/continue", false, [2]string{"expect", "100-continue"}, [2]string{"content-length", "3"})
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	sentBody := false
	for {
		f, err := h2NextFrame(fr)
		if err != nil {
			t.Fatalf("reading (body sent: %v): %v", sentBody, err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			status := f.PseudoValue("status")
			if !sentBody {
				if status != "100" || f.StreamEnded() {
					t.Fatalf("before the body: status %q (end %v), want an informational 100", status, f.StreamEnded())
				}
				if err := fr.WriteData(1, true, []byte("abc")); err != nil {
					t.Fatal(err)
				}
				sentBody = true
				continue
			}
			if status != "200" {
				t.Fatalf("after the body: status %q, want 200", status)
			}
			return
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			t.Fatalf("got %v", f)
		}
	}
}

// h2pExchange sends a GET for path on stream id of an open connection,
// its header block encoded by the connection's enc into block, and reads
// frames (acknowledging SETTINGS) until the response ends.
func h2pExchange(t *testing.T, fr *http2.Framer, enc *hpack.Encoder, block *bytes.Buffer, id uint32, path string) {
	t.Helper()
	block.Reset()
	for _, f := range h2pRequestFields("GET", path, [2]string{"x-kiln-test", "indexed"}) {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := h2NextFrame(fr)
		if err != nil {
			t.Fatalf("stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == id && f.StreamEnded() {
				return
			}
		case *http2.DataFrame:
			if f.StreamID == id && f.StreamEnded() {
				return
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			t.Fatalf("stream %d: %v", id, f)
		}
	}
}

// TestH2IdleConnectionsShed: HTTP/2 connections that wait for their next
// request give their coroutines (and read buffers) back to the event loop
// after shedAfter, as HTTP/1.x ones do, and serve their next request; h2c
// and h2 over TLS.
func TestH2IdleConnectionsShed(t *testing.T) {
	for _, ssl := range []bool{false, true} {
		t.Run(map[bool]string{false: "h2c", true: "tls"}[ssl], func(t *testing.T) { testH2IdleConnectionsShed(t, ssl) })
	}
}

func testH2IdleConnectionsShed(t *testing.T, ssl bool) {
	up := proxytest.StartEcho(t, "up")
	e := proxytest.NewEngine(t, server.Options{EventLoops: 1})
	host, port := proxytest.HostPort(t, strings.TrimPrefix(up, "http://"))
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": h2pEchoService, "host": host, "port": port}},
		"routes":   {{"id": h2pEchoRoute, "paths": []any{"/"}, "service": map[string]any{"id": h2pEchoService}}},
	})); err != nil {
		t.Fatal(err)
	}
	addr, _ := proxytest.ServeProxy(t, e, server.ListenSpec{SSL: ssl, HTTP2: ssl})
	dial := func() (net.Conn, error) {
		if ssl {
			return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // the gateway's self-signed default certificate
		}
		return net.Dial("tcp", addr)
	}
	before := runtime.NumGoroutine()
	const n = 400 // more than a loop keeps idle coroutines for (256)
	frs := make([]*http2.Framer, n)
	// One HPACK encoder a connection, as a real client has: the second
	// request refers to fields the first added to the dynamic table, so
	// the server's decoder state must outlive shedding.
	blocks := make([]bytes.Buffer, n)
	encs := make([]*hpack.Encoder, n)
	for i := range frs {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		_, _ = io.WriteString(c, http2.ClientPreface)
		frs[i] = http2.NewFramer(c, c)
		frs[i].ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		if err := frs[i].WriteSettings(); err != nil {
			t.Fatal(err)
		}
		encs[i] = hpack.NewEncoder(&blocks[i])
		h2pExchange(t, frs[i], encs[i], &blocks[i], 1, fmt.Sprintf("/first/%d", i))
	}
	proxytest.WaitFor(t, "idle HTTP/2 connections to give their coroutines back", func() bool {
		return runtime.NumGoroutine()-before <= 256+16
	})
	for i, fr := range frs {
		h2pExchange(t, fr, encs[i], &blocks[i], 3, fmt.Sprintf("/again/%d", i))
	}
}
