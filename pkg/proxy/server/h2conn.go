package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Conn serves HTTP/2 (h2c with prior knowledge, or h2 chosen by ALPN)
// on an event loop. The connection's coroutine reads frames, and each
// stream runs its request in a coroutine of its own on the same loop
// (h2Req), so no goroutine hand-off and no lock stands between a frame
// and its handler. Frames are appended to one output buffer that is
// written when a coroutine is about to wait (flush): a response's HEADERS
// and DATA, several streams' frames and the reader's control frames go
// out together where net/http's server makes a system call per frame.
//
// Coroutines of a connection wake each other through the loop's ready
// queue (eventLoop.schedule): a stream waiting for request body data or
// flow-control window is woken by the reader, the reader waiting for its
// streams to end by the last one.
type h2Conn struct {
	c  *h1Conn
	l  *eventLoop
	rw net.Conn // frames are written to it: the TLS or the plain connection
	// ts holds what TLS wrote (ts.hold), which flush sends to sock.
	ts   *tlsSocket
	sock net.Conn
	fr   *http2.Framer
	// out holds the frames written and not yet flushed; sending is the
	// buffer a flush in progress writes (its coroutine may park on the
	// socket meanwhile, while others append to out).
	out, sending []byte
	flushing     bool
	// flushScheduled: a coroutine that flushes (flushFn) starts after the
	// events at hand, for the frames of every stream they complete.
	flushScheduled bool
	flushFn        func()
	// flushWaiters are streams, flushReader the reader, waiting for a
	// flush in progress to end (the output is over h2MaxOut).
	flushWaiters []*h2Req
	flushReader  *coro
	werr         error
	hbuf         bytes.Buffer
	henc         *hpack.Encoder
	hdec         *hpack.Decoder

	streams map[uint32]*h2Req
	// maxID is the highest stream id the client used; active counts the
	// streams whose handler runs.
	maxID  uint32
	active int
	// reader is the connection's coroutine while it waits for the
	// streams' handlers to return (close), or for the next frame while
	// streams run (peeking).
	reader  *coro
	peeking bool

	// What the client's settings allow, and the connection's windows.
	peerMaxFrame uint32
	peerInitWin  int32
	sendWin      int32
	winWaiters   []*h2Req // streams waiting for the connection window
	// recvInFlight is what the client may still send before a
	// WINDOW_UPDATE; recvGrant is what was consumed since the last one.
	recvInFlight, recvGrant int32
	sawSettings             bool
	// goAway: no new streams (GOAWAY sent or received).
	goAway   bool
	idleWait bool // the read deadline is the idle timeout
}

// The server's settings. A stream's receive window is 1 MiB and the
// connection's 16 MiB (nginx reads ahead 64 KiB per stream into a buffer
// and stops; kiln passes a body on as it comes, so its windows only bound
// what a stream may have buffered while its upstream is slower than the
// client).
const (
	h2MaxStreams    = 128 // Kong's http2_max_concurrent_streams
	h2StreamWindow  = 1 << 20
	h2ConnWindow    = 16 << 20
	h2MaxHeaderList = 64 << 10
	h2DefaultWindow = 65535
	h2DefaultFrame  = 16384
	// h2MaxOut is how much output a writing stream lets build up before
	// it waits for a flush.
	h2MaxOut = 256 << 10
	// h2KeepBuffer is the most output buffer an idle connection keeps.
	h2KeepBuffer = 4 << 10
)

var (
	errStreamReset = errors.New("http2: the client reset the stream")
	errConnGone    = errors.New("http2: connection closed")
)

// serveH2 serves the connection as HTTP/2 until it ends, or until it is
// shed while idle (true: the loop serves it again when it is readable);
// the client's preface is next in c.br and rw is what to write to.
func (c *h1Conn) serveH2(rw net.Conn) (shed bool) {
	hc := &h2Conn{c: c, l: c.sc.lp, rw: rw, streams: map[uint32]*h2Req{},
		peerMaxFrame: h2DefaultFrame, peerInitWin: h2DefaultWindow, sendWin: h2DefaultWindow,
		recvInFlight: h2ConnWindow}
	hc.hdec = hpack.NewDecoder(4096, nil)
	hc.newFramer()
	hc.henc = hpack.NewEncoder(&hc.hbuf)
	c.dropWriter()
	c.putExchange() // HTTP/1.x's request state
	var preface [len(h2Preface)]byte
	if _, err := io.ReadFull(c.br, preface[:]); err != nil || string(preface[:]) != h2Preface {
		return false
	}
	if c.tc != nil {
		// Held for as long as the connection is HTTP/2, shed or not.
		hc.ts, hc.sock = &c.tlsOut, c.tlsOut.Conn
		hc.ts.hold = true
	}
	_ = hc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2MaxHeaderList},
	)
	_ = hc.fr.WriteWindowUpdate(0, h2ConnWindow-h2DefaultWindow)
	c.h2 = hc
	return hc.run()
}

// newFramer gives the connection a Framer. It reads c.br through h2Input:
// c's buffers go back to their pool while the connection is shed and come
// back different. The HPACK decoder is the connection's and outlives
// Framers.
func (hc *h2Conn) newFramer() {
	hc.fr = http2.NewFramer(hc, h2Input{hc.c})
	hc.fr.ReadMetaHeaders = hc.hdec
	hc.fr.MaxHeaderListSize = h2MaxHeaderList
	hc.fr.SetReuseFrames()
}

// run serves until the connection ends or is shed.
func (hc *h2Conn) run() (shed bool) {
	if hc.serve() {
		hc.shed()
		return true
	}
	hc.close()
	if hc.ts != nil {
		hc.ts.hold = false
	}
	return false
}

// shed lets go of what an idle connection rebuilds when the client sends
// again: the Framer with its read and write buffers, the output and the
// header-encoding buffers, the emptied stream table. The HPACK tables and
// settings stay: they are the connection's state.
func (hc *h2Conn) shed() {
	hc.fr = nil
	hc.dropBuffers(0) // the output is empty: serve sheds only then
	hc.hbuf = bytes.Buffer{}
	if len(hc.streams) == 0 {
		hc.streams = map[uint32]*h2Req{}
	}
}

// resume serves a shed connection again (its read buffer is back; HTTP/2
// keeps no HTTP/1.x write buffer).
func (hc *h2Conn) resume() (shed bool) {
	hc.c.dropWriter()
	hc.newFramer()
	return hc.run()
}

// wakeAll wakes the streams waiting in *list and empties it.
func wakeAll(list *[]*h2Req) {
	ws := *list
	*list = nil
	for _, st := range ws {
		st.wake()
	}
}

// h2Input is what an HTTP/2 connection's Framer reads: c's read buffer
// of the moment.
type h2Input struct{ c *h1Conn }

func (in h2Input) Read(p []byte) (int, error) { return in.c.br.Read(p) }

// dropWriter gives HTTP/1.x's response buffer back (HTTP/2 has its own).
func (c *h1Conn) dropWriter() {
	if c.bw != nil {
		c.bw.Reset(nil)
		c.s.e.h1Writers.Put(c.bw)
		c.bw = nil
	}
}

// Write appends a frame to the output (it is the Framer's writer).
func (hc *h2Conn) Write(p []byte) (int, error) {
	hc.out = append(hc.out, p...)
	return len(p), nil
}

// serve reads and handles frames until the connection fails or ends, or
// is shed while idle (true).
func (hc *h2Conn) serve() (shed bool) {
	for {
		switch {
		case hc.c.br.Buffered() == 0:
			hc.flush()
			if hc.werr != nil {
				return false
			}
			hc.beforeWait()
			if hc.active == 0 && !hc.goAway && !hc.flushing && !hc.flushScheduled && len(hc.out) == 0 {
				// Idle: the next frame, or shedding after shedAfter.
				shed, err := hc.c.awaitIdle()
				if shed {
					return true
				}
				if err != nil {
					return false
				}
			} else {
				// Wait for the next frame between frames, where the
				// wait can be ended safely when the last stream ends
				// (idleCheck) to start the idle wait above.
				hc.reader, hc.peeking = hc.l.cur, true
				_, err := hc.c.br.Peek(1)
				hc.reader, hc.peeking = nil, false
				if errors.Is(err, errIdleCheck) {
					continue
				}
				if err != nil {
					return false
				}
			}
		case len(hc.out) >= h2MaxOut:
			// A client that sends faster than it reads (a PING or
			// SETTINGS flood) waits for the answers to go out; the
			// output stays bounded.
			if hc.flushing {
				hc.flushReader = hc.l.cur
				hc.l.suspend()
			}
			hc.flush()
		}
		if hc.goAway && hc.active == 0 {
			return false
		}
		f, err := hc.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &se):
				if se.StreamID > hc.maxID {
					hc.maxID = se.StreamID
				}
				hc.resetStream(se.StreamID, se.Code)
				continue
			case errors.As(err, &ce):
				hc.fail(http2.ErrCode(ce))
			case errors.Is(err, http2.ErrFrameTooLarge):
				hc.fail(http2.ErrCodeFrameSize)
			}
			return false
		}
		if !hc.sawSettings {
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				hc.fail(http2.ErrCodeProtocol)
				return false
			}
		}
		if code := hc.handle(f); code != http2.ErrCodeNo {
			hc.fail(code)
			return false
		}
	}
}

// beforeWait runs before the reader waits for the client: the wait is
// bounded by the idle timeout while no stream is open (keepalive_timeout;
// streams have timeouts of their own), and a server shutting down says
// GOAWAY.
func (hc *h2Conn) beforeWait() {
	c := hc.c
	idle := hc.active == 0
	c.idle.Store(idle)
	if idle && len(hc.out) == 0 {
		hc.dropBuffers(h2KeepBuffer)
	}
	switch {
	case idle && !hc.idleWait:
		c.deadlineSet = time.Time{}
		c.refreshIdleDeadline()
		hc.idleWait = true
	case idle:
		c.refreshIdleDeadline()
	case hc.idleWait:
		_ = c.nc.SetReadDeadline(time.Time{})
		hc.idleWait = false
	}
	if c.s.closing.Load() && !hc.goAway {
		hc.goAway = true
		_ = hc.fr.WriteGoAway(hc.maxID, http2.ErrCodeNo, nil)
		hc.flush()
	}
}

// dropBuffers lets an idle connection's output buffers go when they
// are larger than keep bytes (they grow to the largest flush; a
// connection that waits for its next request needs none).
func (hc *h2Conn) dropBuffers(keep int) {
	if cap(hc.out) > keep || cap(hc.sending) > keep {
		hc.out, hc.sending = nil, nil
	}
	if ts := hc.ts; ts != nil && len(ts.held) == 0 && (cap(ts.held) > keep || cap(ts.sent) > keep) {
		ts.held, ts.sent = nil, nil
	}
}

// handle handles one frame; a code other than ErrCodeNo is a connection
// error.
func (hc *h2Conn) handle(f http2.Frame) http2.ErrCode {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return hc.headers(f)
	case *http2.DataFrame:
		return hc.data(f)
	case *http2.SettingsFrame:
		if f.IsAck() {
			return http2.ErrCodeNo
		}
		hc.sawSettings = true
		if err := f.ForeachSetting(hc.applySetting); err != nil {
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				return http2.ErrCode(ce)
			}
			return http2.ErrCodeProtocol
		}
		_ = hc.fr.WriteSettingsAck()
	case *http2.PingFrame:
		if !f.IsAck() {
			_ = hc.fr.WritePing(true, f.Data)
		}
	case *http2.WindowUpdateFrame:
		return hc.windowUpdate(f.StreamID, f.Increment)
	case *http2.RSTStreamFrame:
		if f.StreamID > hc.maxID {
			return http2.ErrCodeProtocol // an idle stream
		}
		if st := hc.streams[f.StreamID]; st != nil {
			st.abort(errStreamReset, false)
		}
	case *http2.GoAwayFrame:
		hc.goAway = true
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			hc.resetStream(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.PushPromiseFrame:
		return http2.ErrCodeProtocol
	}
	return http2.ErrCodeNo
}

func (hc *h2Conn) applySetting(s http2.Setting) error {
	if err := s.Valid(); err != nil {
		return err
	}
	switch s.ID {
	case http2.SettingInitialWindowSize:
		delta := int32(s.Val) - hc.peerInitWin
		hc.peerInitWin = int32(s.Val)
		for _, st := range hc.streams {
			if int64(st.sendWin)+int64(delta) > 1<<31-1 {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
			st.sendWin += delta
			if delta > 0 {
				st.wake()
			}
		}
	case http2.SettingMaxFrameSize:
		hc.peerMaxFrame = s.Val
	case http2.SettingHeaderTableSize:
		hc.henc.SetMaxDynamicTableSizeLimit(s.Val)
	}
	return nil
}

func (hc *h2Conn) windowUpdate(id, inc uint32) http2.ErrCode {
	if id == 0 {
		if int64(hc.sendWin)+int64(inc) > 1<<31-1 {
			return http2.ErrCodeFlowControl
		}
		hc.sendWin += int32(inc)
		wakeAll(&hc.winWaiters)
		return http2.ErrCodeNo
	}
	if id > hc.maxID {
		return http2.ErrCodeProtocol
	}
	st := hc.streams[id]
	if st == nil {
		return http2.ErrCodeNo
	}
	if int64(st.sendWin)+int64(inc) > 1<<31-1 {
		hc.resetStream(id, http2.ErrCodeFlowControl)
		return http2.ErrCodeNo
	}
	st.sendWin += int32(inc)
	st.wake()
	return http2.ErrCodeNo
}

// data passes a DATA frame's payload to its stream's body.
func (hc *h2Conn) data(f *http2.DataFrame) http2.ErrCode {
	n := int32(f.Length)
	if hc.recvInFlight -= n; hc.recvInFlight < 0 {
		return http2.ErrCodeFlowControl
	}
	st := hc.streams[f.StreamID]
	if st == nil || st.bodyDone {
		if f.StreamID > hc.maxID {
			return http2.ErrCodeProtocol // an idle stream
		}
		// A stream that ended (or was reset): its data is dropped.
		hc.consumed(n)
		if st != nil {
			hc.resetStream(f.StreamID, http2.ErrCodeStreamClosed)
		}
		return http2.ErrCodeNo
	}
	if st.recvWin -= n; st.recvWin < 0 {
		hc.consumed(n)
		hc.resetStream(f.StreamID, http2.ErrCodeFlowControl)
		return http2.ErrCodeNo
	}
	payload := f.Data()
	if pad := n - int32(len(payload)); pad > 0 {
		st.consumed(pad) // padding is never read
	}
	st.received += int64(len(payload))
	if st.declared >= 0 && (st.received > st.declared || f.StreamEnded() && st.received != st.declared) {
		hc.consumed(int32(len(payload)))
		hc.resetStream(f.StreamID, http2.ErrCodeProtocol)
		return http2.ErrCodeNo
	}
	st.body = append(st.body, payload...)
	if f.StreamEnded() {
		st.bodyDone = true
	}
	st.wake()
	return http2.ErrCodeNo
}

// consumed gives n bytes of the connection's receive window back, in
// WINDOW_UPDATEs of at least a quarter of it.
func (hc *h2Conn) consumed(n int32) {
	hc.recvGrant += n
	if hc.recvGrant >= h2ConnWindow/4 {
		_ = hc.fr.WriteWindowUpdate(0, uint32(hc.recvGrant))
		hc.recvInFlight += hc.recvGrant
		hc.recvGrant = 0
	}
}

// headers handles a HEADERS block: a new stream, or a stream's trailers.
func (hc *h2Conn) headers(f *http2.MetaHeadersFrame) http2.ErrCode {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ErrCodeProtocol
	}
	if id <= hc.maxID {
		st := hc.streams[id]
		if st == nil {
			// Stream ids only grow (RFC 9113 §5.1.1).
			return http2.ErrCodeProtocol
		}
		if st.bodyDone {
			return http2.ErrCodeStreamClosed
		}
		// Trailers: they end the request body.
		if !f.StreamEnded() {
			return http2.ErrCodeProtocol
		}
		if st.declared >= 0 && st.received != st.declared {
			hc.resetStream(id, http2.ErrCodeProtocol)
			return http2.ErrCodeNo
		}
		st.bodyDone = true
		st.wake()
		return http2.ErrCodeNo
	}
	hc.maxID = id
	if hc.goAway || hc.active >= h2MaxStreams {
		_ = hc.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		return http2.ErrCodeNo
	}
	if f.Truncated {
		hc.answer(id, 431)
		return http2.ErrCodeNo
	}
	st, status := newH2Req(hc, f)
	switch {
	case st != nil:
		hc.streams[id] = st
		hc.active++
		hc.l.spawnLater(st.run)
	case status != 0:
		hc.answer(id, status)
	default:
		_ = hc.fr.WriteRSTStream(id, http2.ErrCodeProtocol)
	}
	return http2.ErrCodeNo
}

// answer ends a stream with a bare status, no handler having run.
func (hc *h2Conn) answer(id uint32, status int) {
	hc.hbuf.Reset()
	_ = hc.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
	hc.writeHeaders(id, true)
}

// resetStream sends RST_STREAM and ends the stream, if its handler runs.
func (hc *h2Conn) resetStream(id uint32, code http2.ErrCode) {
	if st := hc.streams[id]; st != nil {
		st.abort(errStreamReset, false)
	}
	_ = hc.fr.WriteRSTStream(id, code)
}

// fail ends the connection with GOAWAY (a connection error).
func (hc *h2Conn) fail(code http2.ErrCode) {
	_ = hc.fr.WriteGoAway(hc.maxID, code, nil)
	hc.flush()
}

// close ends every stream and waits for their handlers to return.
func (hc *h2Conn) close() {
	for _, st := range hc.streams {
		st.abort(errConnGone, false)
	}
	hc.flush()
	for hc.active > 0 {
		hc.reader = hc.l.cur
		hc.l.suspend()
	}
	hc.reader = nil
}

// streamDone is called once a stream's handler returned.
func (hc *h2Conn) streamDone(st *h2Req) {
	delete(hc.streams, st.id)
	hc.active--
	switch {
	case hc.active > 0 || hc.reader == nil:
	case hc.peeking:
		// The reader waits for a frame: it starts the idle wait
		// instead. The loop ends its wait (one coroutine cannot).
		reader, s := hc.reader, hc.c.sc
		hc.l.post(func() {
			if hc.peeking && s.waiter == reader && !s.waitWrite {
				hc.l.wake(s, errIdleCheck)
			}
		})
	default: // close waits for the streams
		hc.l.schedule(hc.reader)
		hc.reader = nil
	}
}

// errIdleCheck ends an HTTP/2 reader's wait for the next frame when its
// last stream ended. It is temporary, so crypto/tls keeps no error.
var errIdleCheck = idleCheckError{}

type idleCheckError struct{}

func (idleCheckError) Error() string   { return "http2: connection became idle" }
func (idleCheckError) Timeout() bool   { return false }
func (idleCheckError) Temporary() bool { return true }

// flushSoon has the output written once the loop has handled the events
// at hand: the responses several streams complete in one pass leave in
// one system call.
func (hc *h2Conn) flushSoon() {
	if hc.flushScheduled || hc.werr != nil {
		return
	}
	if hc.flushFn == nil {
		hc.flushFn = func() {
			hc.flushScheduled = false
			hc.flush()
		}
	}
	hc.flushScheduled = true
	hc.l.spawnLater(hc.flushFn)
}

// flush writes the output. A coroutine that finds a flush in progress
// (parked on a full socket) leaves its frames to it.
func (hc *h2Conn) flush() {
	if hc.flushing || hc.werr != nil || len(hc.out) == 0 && (hc.ts == nil || len(hc.ts.held) == 0) {
		return
	}
	hc.flushing = true
	for hc.werr == nil && (len(hc.out) > 0 || hc.ts != nil && len(hc.ts.held) > 0) {
		if t := hc.c.s.e.sendTimeout; t > 0 {
			_ = hc.c.nc.SetWriteDeadline(hc.c.s.e.clock.Now().Add(t))
		}
		if len(hc.out) > 0 {
			hc.sending, hc.out = hc.out, hc.sending[:0]
			if _, err := hc.rw.Write(hc.sending); err != nil {
				hc.werr = err
				break
			}
		}
		if hc.ts != nil {
			// TLS wrote its records into ts without waiting (see
			// tlsSocket); they go out now.
			if _, err := hc.sock.Write(hc.ts.take()); err != nil {
				hc.werr = err
			}
		}
	}
	hc.flushing = false
	wakeAll(&hc.flushWaiters)
	if r := hc.flushReader; r != nil {
		hc.flushReader = nil
		hc.l.schedule(r)
	}
	if hc.werr != nil {
		hc.out = hc.out[:0]
		for _, st := range hc.streams {
			st.abort(errConnGone, false)
		}
	}
}

// writeHeaders writes the header block in hbuf as a HEADERS frame, and
// CONTINUATION frames past the client's frame size.
func (hc *h2Conn) writeHeaders(id uint32, end bool) {
	block := hc.hbuf.Bytes()
	limit := int(hc.peerMaxFrame)
	first := block[:min(len(block), limit)]
	_ = hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(first) == len(block)})
	for rest := block[len(first):]; len(rest) > 0; {
		frag := rest[:min(len(rest), limit)]
		rest = rest[len(frag):]
		_ = hc.fr.WriteContinuation(id, len(rest) == 0, frag)
	}
}

// tlsSocket is the connection a TLS connection on an event loop writes
// through: straight to the socket, or, while an HTTP/2 connection is
// served on it (hold), into a buffer that h2Conn.flush sends after
// crypto/tls returned. A coroutine must not wait for the socket inside
// crypto/tls's Write, which holds the connection's write lock: the
// reading coroutine takes that lock to answer a KeyUpdate, and would
// block the loop's thread for good.
type tlsSocket struct {
	net.Conn
	hold       bool
	held, sent []byte
}

func (t *tlsSocket) Write(p []byte) (int, error) {
	if t.hold {
		t.held = append(t.held, p...)
		return len(p), nil
	}
	return t.Conn.Write(p)
}

// take returns what was held and empties the buffer (the returned bytes
// stay valid until the next take).
func (t *tlsSocket) take() []byte {
	b := t.held
	t.held, t.sent = t.sent[:0], b
	return b
}
