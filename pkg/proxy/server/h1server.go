package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/headerconf"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
)

// The proxy's listeners use their own HTTP/1.x server: requests, header
// maps and response writers are reused (h1Exchange), headers are written
// unsorted straight into the connection's buffer, and pipelined responses
// are flushed together. HTTP/2 goes to net/http's server: cleartext
// connections that open with the HTTP/2 preface (h2c with prior
// knowledge), and TLS connections whose client chose h2 by ALPN.

const (
	h1IdleTimeout   = 75 * time.Second
	h1HeaderTimeout = 60 * time.Second // for the first request's preface check
	maxDiscard      = 256 << 10
)

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// h1Server serves HTTP/1.x on one listener.
type h1Server struct {
	e       *Engine
	handler http.Handler
	h2      *http.Server
	h2ln    *handoffListener
	// tls terminates TLS on every connection (nil: cleartext).
	tls *tls.Config

	// loops serve the connections, cleartext or TLS (none: a goroutine each);
	// next picks the loop for the next connection.
	loops []*eventLoop
	next  int

	mu       sync.Mutex
	conns    map[*h1Conn]struct{}
	closing  atomic.Bool
	wg       sync.WaitGroup
	dateNow  atomic.Pointer[string]
	dateUnix atomic.Int64
}

// ServeProxy serves a proxy listener until ctx ends: HTTP/1.x through the
// fast path above, HTTP/2 (h2c, or h2 chosen by ALPN on TLS listeners)
// handed to net/http. Connections are served by event loops (see
// eventLoop) unless Options.EventLoops is negative.
func (e *Engine) ServeProxy(ctx context.Context, ln net.Listener, spec ListenSpec) error {
	ln = e.proxyProtoListener(ln, spec)
	srv := e.NewHTTPServer(ln, spec)
	s := &h1Server{e: e, handler: srv.Handler, conns: map[*h1Conn]struct{}{}}
	if spec.SSL {
		s.tls = srv.TLSConfig
	}
	if n := e.eventLoops(); n > 0 {
		for range n {
			l, err := newEventLoop(e.clock, &e.holds)
			if err != nil {
				s.stopLoops()
				return err
			}
			s.loops = append(s.loops, l)
			go l.run()
		}
	}
	s.h2 = srv
	s.h2ln = newHandoffListener(ln.Addr())
	h2done := make(chan struct{})
	go func() { _ = srv.Serve(s.h2ln); close(h2done) }()
	var err error
	if tl, ok := ln.(*net.TCPListener); !ok || spec.KeepAlive.Enable || !s.acceptInLoops(ctx, tl) {
		err = s.serve(ctx, ln)
	}
	s.drain()
	s.stopLoops()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(sctx)
	cancel()
	<-h2done
	return err
}

// eventLoops is the number of event loops per cleartext listener.
func (e *Engine) eventLoops() int {
	switch n := e.opts.EventLoops; {
	case n < 0:
		return 0
	case n == 0:
		return runtime.GOMAXPROCS(0)
	default:
		return n
	}
}

func (s *h1Server) stopLoops() {
	for _, l := range s.loops {
		l.stop()
	}
	s.loops = nil
}

func (s *h1Server) serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() {
		s.closing.Store(true)
		_ = ln.Close()
	})
	defer stop()
	var tempDelay time.Duration
	var acceptErr error
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				break
			}
			var ne net.Error
			if short := outOfResources(err); short || errors.As(err, &ne) && ne.Timeout() {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				if short {
					s.e.log.Error("proxy listener: accept failed; pausing accepts", "error", err, "pause", tempDelay)
				}
				time.Sleep(tempDelay)
				continue
			}
			acceptErr = err
			break
		}
		tempDelay = 0
		c := newH1Conn(s, nc)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		if len(s.loops) > 0 && c.sc != nil {
			s.next++
			l := s.loops[s.next%len(s.loops)]
			c.loop = l
			l.clients.Add(1)
			l.post(func() {
				if err := c.sc.toLoop(l); err != nil {
					s.e.log.Warn("proxy connection served outside the event loop", "remote", c.remoteAddr, "error", err)
					go c.serve()
					return
				}
				l.spawn(c.serve)
			})
			continue
		}
		go c.serve()
	}
	return acceptErr
}

// acceptBatch bounds the connections a loop accepts in one go, so that
// its other sockets are served in between.
const acceptBatch = 16

// acceptPause is how long a loop stops accepting after running out of
// descriptors or memory.
const acceptPause = 100 * time.Millisecond

// acceptInLoops has the event loops accept the listener's connections
// themselves, as nginx workers do: the listening socket is in every
// loop's epoll set, and a loop accepts, registers and serves a connection
// without the hand-off from an accepting goroutine (and without the
// socket passing through Go's poller). It returns when ctx ends, or at
// once with false when the loops cannot share the listener (the caller
// then accepts with a goroutine).
func (s *h1Server) acceptInLoops(ctx context.Context, tl *net.TCPListener) bool {
	if len(s.loops) == 0 {
		return false
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return false
	}
	lfd, err := dupSocket(rc)
	if err != nil {
		s.e.log.Warn("proxy listener: accepting with a goroutine", "error", err)
		return false
	}
	errs := make(chan error, len(s.loops))
	for _, l := range s.loops {
		l.post(func() { errs <- l.addListener(lfd, func() { s.acceptIn(l) }) })
	}
	var addErr error
	for range s.loops {
		if err := <-errs; err != nil {
			addErr = err
		}
	}
	if addErr == nil {
		<-ctx.Done()
		s.closing.Store(true)
	}
	done := make(chan struct{}, len(s.loops))
	for _, l := range s.loops {
		l.post(func() { l.removeListener(); done <- struct{}{} })
	}
	for range s.loops {
		<-done
	}
	_ = syscall.Close(lfd)
	if addErr != nil {
		s.e.log.Warn("proxy listener: accepting with a goroutine", "error", addErr)
		return false
	}
	_ = tl.Close()
	return true
}

// acceptIn accepts (on loop l) up to acceptBatch waiting connections and
// starts serving each in a coroutine.
func (s *h1Server) acceptIn(l *eventLoop) {
	for range acceptBatch {
		if s.closing.Load() {
			return
		}
		fd, peer, err := accept4(l.lfd)
		switch err {
		case nil:
		case syscall.EAGAIN:
			return
		case syscall.EINTR, syscall.ECONNABORTED, syscall.EPROTO, syscall.EPERM:
			continue // this connection failed (or try again)
		default:
			// Anything else, in practice running out of descriptors
			// or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM; the
			// goroutine path's outOfResources): the waiting
			// connections stay queued until the pause ends.
			s.e.log.Error("proxy listener: accept failed; pausing accepts", "error", os.NewSyscallError("accept4", err), "pause", acceptPause)
			l.pauseAccept(acceptPause)
			return
		}
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		s.wg.Add(1)
		if to := s.pickLoop(l); to != l {
			to.post(func() { s.startConn(to, fd, peer) })
			continue
		}
		s.startConn(l, fd, peer)
	}
}

// outOfResources reports whether an accept failed for want of
// descriptors or memory: accepting pauses rather than stops.
func outOfResources(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// pickLoop chooses the loop to serve a connection accepted on l: l unless
// another loop serves fewer connections. The kernel wakes whichever loop
// waits, so a burst of connections can all arrive on one loop; they
// spread evenly instead, as with the goroutine accepting for all loops.
func (s *h1Server) pickLoop(l *eventLoop) *eventLoop {
	to := l
	for _, o := range s.loops {
		if o.clients.Load() < to.clients.Load() {
			to = o
		}
	}
	to.clients.Add(1)
	return to
}

// startConn serves an accepted socket on loop l (its goroutine); s.wg
// counts it already.
func (s *h1Server) startConn(l *eventLoop, fd int, peer netip.AddrPort) {
	raddr := net.TCPAddrFromAddrPort(peer)
	sc := newLoopSocket(fd, raddr)
	if s.closing.Load() {
		_ = syscall.Close(fd)
		l.clients.Add(-1)
		s.wg.Done()
		return
	}
	if err := l.adopt(sc); err != nil {
		_ = syscall.Close(fd)
		l.clients.Add(-1)
		s.wg.Done()
		s.e.log.Warn("proxy connection dropped", "remote", raddr.String(), "error", err)
		return
	}
	// Registering reported data already there (an edge, rready).
	sc.rready, sc.unread = false, true
	c := newLoopH1Conn(s, sc, peer.String())
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	l.spawn(c.serve)
}

// drain ends the open connections once accepting stopped: idle ones at
// once, busy ones after their request (forcibly after 5 s).
func (s *h1Server) drain() {
	s.closing.Store(true)
	s.forEachConn(func(c *h1Conn) {
		if c.idle.Load() {
			_ = c.nc.SetReadDeadline(time.Now())
		}
	})
	s.waitConns()
}

// forEachConn runs fn for every open connection, on its event loop's
// goroutine for a connection a loop serves (the loop owns its socket).
func (s *h1Server) forEachConn(fn func(c *h1Conn)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.loop != nil {
			c.loop.post(func() { fn(c) })
		} else {
			fn(c)
		}
	}
}

func (s *h1Server) waitConns() {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.forEachConn(func(c *h1Conn) {
			if c.sc != nil {
				c.sc.abort()
			} else {
				_ = c.nc.Close()
			}
		})
		<-done
	}
}

// date returns the cached Date header value.
func (s *h1Server) date() string {
	now := s.e.clock.Now().Unix()
	if p := s.dateNow.Load(); p != nil && s.dateUnix.Load() == now {
		return *p
	}
	d := time.Unix(now, 0).UTC().Format(http.TimeFormat)
	s.dateNow.Store(&d)
	s.dateUnix.Store(now)
	return d
}

// h1Conn is one client connection and the per-request state it reuses.
type h1Conn struct {
	s  *h1Server
	nc net.Conn
	// tc is nc on a TLS listener (nil otherwise); tlsState is its
	// handshake's outcome, every request's TLS field; br reads tc
	// through lead (see awaitRequest).
	tc         *tls.Conn
	tlsOut     tlsSocket // what tc writes to
	tlsState   *tls.ConnectionState
	lead       leadReader
	br         *bufio.Reader
	bw         *bufio.Writer
	remoteAddr string
	ctx        context.Context // nil, or the PROXY header's address (proxyproto.go)
	idle       atomic.Bool
	// x is the request state the connection reuses from one request to
	// the next; a shed or closed connection gives it back (h1Exchange).
	x *h1Exchange
	// sc is the client socket's raw path (nil for other connections);
	// deadlineSet is when the idle read deadline was last moved.
	sc          *sysConn
	deadlineSet time.Time
	// bodyDeadlineSet and sendDeadlineSet are when the request body's
	// read deadline and the write deadline were last moved; out is the
	// writer bw writes through, which moves the write deadline (none
	// once the connection is a tunnel: tunnel set).
	bodyDeadlineSet time.Time
	sendDeadlineSet time.Time
	out             sendTimeoutWriter
	tunnel          bool
	// Event-loop state (serveEvents): mayRead says a receive may find
	// data; quit ends the connection.
	mayRead bool
	quit    bool
	// loop is the event loop the connection was given to (nil: served
	// by a goroutine from the start). It stays set when the connection
	// leaves the loop; c.sc.lp says where the socket is now.
	loop *eventLoop
	// resumeFn serves the connection again after shed (made once).
	resumeFn func()
	// h2 serves the connection when it speaks HTTP/2 on an event loop.
	h2 *h2Conn
}

// h1Exchange is the state of one request and its response: the parsed
// head, request, URL, header maps, writer and body reader. A connection
// keeps one while it serves requests and reuses it for each; a connection
// that is shed or closes gives it back to its engine's pool. An idle
// keep-alive connection then holds about half the Go heap it held (0.8
// KiB after a collection, not 1.6), and a new connection starts with maps
// and head buffers already grown.
type h1Exchange struct {
	hb   headerBlock
	req  http.Request
	url  url.URL
	hdr  http.Header
	w    h1Writer
	body h1Body
}

// takeExchange gives c request state (a reused one when there is).
func (c *h1Conn) takeExchange() {
	x, ok := c.s.e.h1Exchanges.Get().(*h1Exchange)
	if !ok {
		// Header maps start small: up to 8 entries Go keeps a map in
		// one group, where clearing and look-ups are cheapest.
		x = &h1Exchange{hdr: http.Header{}, w: h1Writer{hdr: http.Header{}}}
	}
	x.w.c, x.body.c = c, c
	c.x = x
}

// putExchange gives c's request state back for reuse, emptied: nothing of
// the last request (strings cut from its head, the connection) stays
// reachable from the pool.
func (c *h1Conn) putExchange() {
	x := c.x
	if x == nil {
		return
	}
	c.x = nil
	x.hb.reset()
	x.req, x.url = http.Request{}, url.URL{}
	x.hdr = emptied(x.hdr)
	x.w = h1Writer{hdr: emptied(x.w.hdr)}
	x.body = h1Body{}
	c.s.e.h1Exchanges.Put(x)
}

// emptied returns h cleared, or a new small map when h had grown past
// one group (clearing a grown map costs every request that reuses it).
func emptied(h http.Header) http.Header {
	if len(h) > 8 {
		return http.Header{}
	}
	clear(h)
	return h
}

func newH1Conn(s *h1Server, nc net.Conn) *h1Conn {
	c := &h1Conn{s: s, nc: nc, remoteAddr: nc.RemoteAddr().String(), ctx: proxyConnContext(nc)}
	raw := rawConn(nc)
	if sc := newRawConn(raw); sc != nil {
		if raw != nc {
			sc.outer = nc
		}
		c.sc, c.nc = sc, sc
	}
	c.init()
	return c
}

// newLoopH1Conn is newH1Conn for a socket an event loop accepted.
func newLoopH1Conn(s *h1Server, sc *sysConn, remoteAddr string) *h1Conn {
	c := &h1Conn{s: s, nc: sc, sc: sc, remoteAddr: remoteAddr, loop: sc.lp}
	c.init()
	return c
}

// init puts TLS over c's connection on a TLS listener (crypto/tls then
// reads and writes the raw socket path, in whichever mode it is), and
// gives c its buffers and request state.
func (c *h1Conn) init() {
	if c.s.tls != nil {
		c.tlsOut.Conn = c.nc
		c.tc = tls.Server(&c.tlsOut, c.s.tls)
		c.nc = c.tc
		c.lead.r = c.tc
	}
	c.takeBuffers()
	c.takeExchange()
}

// takeBuffers gives c a read and a write buffer on its connection
// (reused ones when there are).
func (c *h1Conn) takeBuffers() {
	e := c.s.e
	var r io.Reader = c.nc
	if c.tc != nil {
		r = &c.lead
	}
	if br, ok := e.h1Readers.Get().(*bufio.Reader); ok {
		br.Reset(r)
		c.br = br
	} else {
		c.br = bufio.NewReaderSize(r, 8<<10)
	}
	c.out.c = c
	if bw, ok := e.h1Writers.Get().(*bufio.Writer); ok {
		bw.Reset(&c.out)
		c.bw = bw
	} else {
		c.bw = bufio.NewWriterSize(&c.out, 8<<10)
	}
}

// sendTimeoutWriter writes to its connection with a write deadline the
// engine's send timeout ahead, moved only when an eighth of it has elapsed.
type sendTimeoutWriter struct{ c *h1Conn }

func (w *sendTimeoutWriter) Write(p []byte) (int, error) {
	c := w.c
	if !c.tunnel {
		if now := c.s.e.clock.Now(); now.Sub(c.sendDeadlineSet) > c.s.e.sendTimeout/8 {
			_ = c.nc.SetWriteDeadline(now.Add(c.s.e.sendTimeout))
			c.sendDeadlineSet = now
		}
	}
	return c.nc.Write(p)
}

// putBuffers gives c's buffers back for reuse.
func (c *h1Conn) putBuffers() {
	if c.br != nil {
		c.br.Reset(nil)
		c.s.e.h1Readers.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		c.s.e.h1Writers.Put(c.bw)
		c.bw = nil
	}
}

func (c *h1Conn) release(closeConn bool) {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	if c.loop != nil {
		c.loop.clients.Add(-1)
	}
	if closeConn {
		_ = c.nc.Close()
		c.s.e.ConnState(c.nc, http.StateClosed)
		// A hijacked connection's handler may still hold its request.
		c.putExchange()
	}
	c.putBuffers()
	c.s.wg.Done()
}

func (c *h1Conn) serve() {
	c.s.e.ConnState(c.nc, http.StateNew)
	c.guarded(c.serveFirst)
}

// guarded runs fn (which reports whether the connection was hijacked or
// handed to another goroutine), recovers a handler's panic and releases
// the connection unless fn gave it away.
func (c *h1Conn) guarded(fn func() (hijacked, handedOff bool)) {
	hijacked, handedOff := false, false
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			c.s.e.log.Error("proxy handler panic", "panic", fmt.Sprint(p), "remote", c.remoteAddr)
		}
		if !handedOff {
			c.release(!hijacked)
		}
	}()
	hijacked, handedOff = fn()
}

// serveFirst completes the TLS handshake or checks for the h2c preface,
// serves HTTP/2 connections (on the event loop, else handed to net/http),
// then serves HTTP/1.x requests.
func (c *h1Conn) serveFirst() (hijacked, handedOff bool) {
	_ = c.nc.SetReadDeadline(time.Now().Add(h1HeaderTimeout))
	if c.tc != nil {
		h2, ok := c.handshake()
		if !ok {
			return false, false
		}
		if h2 {
			if c.inLoop() {
				return false, c.serveH2(c.tc)
			}
			if !c.toPoller() {
				return false, false
			}
			return c.handOffH2(c.tc), false
		}
		return c.serveRequests()
	}
	if peek, err := c.br.Peek(3); err == nil && string(peek) == "PRI" {
		if full, err := c.br.Peek(len(h2Preface)); err == nil && string(full) == h2Preface {
			if c.inLoop() {
				return false, c.serveH2(c.nc)
			}
			if !c.toPoller() {
				return false, false
			}
			buffered, _ := c.br.Peek(c.br.Buffered())
			return c.handOffH2(&prefixConn{Conn: c.nc, prefix: append([]byte(nil), buffered...)}), false
		}
	}
	if c.sc != nil {
		return c.serveEvents()
	}
	return c.serveRequests()
}

// toPoller takes c's raw socket out of its event loop, if it is in one,
// for goroutines of net/http's or a handler's own; false if that failed.
func (c *h1Conn) toPoller() bool {
	return c.sc == nil || c.sc.toPoller() == nil
}

// serveRequests is the request loop with blocking reads: TLS connections
// (on an event loop's coroutine, or a goroutine) and connections without
// the raw socket path.
func (c *h1Conn) serveRequests() (hijacked, handedOff bool) {
	for {
		c.idle.Store(true)
		if c.s.closing.Load() {
			return false, false
		}
		c.refreshIdleDeadline()
		shed, err := c.awaitRequest()
		if shed {
			return false, true // the loop serves it again when it is readable
		}
		if err != nil {
			return false, false
		}
		c.idle.Store(false)
		status, err := c.readRequest()
		if err != nil {
			if status != 0 {
				c.writeSimple(status, err.Error())
			}
			return false, false
		}
		if c.inLoop() && c.mayUpgrade() {
			return c.upgradeOutsideLoop(c.serveRequests)
		}
		keep, hj := c.handle()
		if hj || !keep {
			return hj, false
		}
	}
}

// awaitRequest waits until the next request's first byte is there. A TLS
// connection with nothing buffered waits without its buffers (16 KiB):
// it reads one byte through TLS, then takes buffers again and reads the
// rest after that byte (lead). On an event loop, one that waits longer
// than shedAfter is shed as a cleartext connection is (shed is true; the
// loop owns the connection then): its coroutine and request state go
// back for reuse too, and it waits in the loop's epoll set with only its
// socket, TLS state and records.
//
// crypto/tls may hold data its socket no longer signals (records read
// ahead), so a TLS connection cannot wait for readiness right away: the
// first wait is a read through TLS bounded by shedAfter. It returns such
// data at once; when it times out, TLS holds no request byte and keeps
// no error (a timeout is temporary to crypto/tls; part of a record may
// have been read, whose rest makes the socket readable again).
func (c *h1Conn) awaitRequest() (shed bool, err error) {
	if c.tc == nil || c.lead.has || c.br.Buffered() > 0 {
		_, err := c.br.Peek(1)
		return false, err
	}
	c.putBuffers()
	read := func() error {
		_, err := io.ReadFull(c.tc, c.lead.b[:])
		return err
	}
	if c.inLoop() {
		if shed, err = c.shedAfterWaiting(read); shed {
			return true, nil
		}
	} else {
		err = read()
	}
	if err != nil {
		return false, err
	}
	c.lead.has = true
	c.takeBuffers()
	return false, nil
}

// shedAfterWaiting runs wait, a read on the idle connection (on an event
// loop), with its deadline brought forward to shedAfter from now; if that
// passes, the connection is shed (true). The idle deadline comes back
// unless it was moved meanwhile (shutting down: drain).
func (c *h1Conn) shedAfterWaiting(wait func() error) (shed bool, err error) {
	idle := c.sc.rdl
	grace := c.s.e.clock.Now().Add(shedAfter)
	if !idle.IsZero() && !grace.Before(idle) {
		return false, wait()
	}
	_ = c.nc.SetReadDeadline(grace)
	err = wait()
	if c.sc.rdl.Equal(grace) {
		_ = c.nc.SetReadDeadline(idle)
		if errors.Is(err, os.ErrDeadlineExceeded) && (idle.IsZero() || time.Now().Before(idle)) {
			c.shed()
			return true, nil
		}
	}
	return false, err
}

// awaitIdle waits for an idle HTTP/2 connection's next frame (on an event
// loop), shedding it after shedAfter as an HTTP/1.x connection is.
func (c *h1Conn) awaitIdle() (shed bool, err error) {
	if c.tc != nil {
		shed, err = c.awaitRequest()
		c.dropWriter()
		return shed, err
	}
	return c.shedAfterWaiting(func() error {
		_, err := c.br.Peek(1)
		return err
	})
}

// leadReader gives the byte awaitRequest read first, then reads r.
type leadReader struct {
	r   io.Reader
	b   [1]byte
	has bool
}

func (l *leadReader) Read(p []byte) (int, error) {
	if !l.has || len(p) == 0 {
		return l.r.Read(p)
	}
	p[0], l.has = l.b[0], false
	return 1, nil
}

// inLoop reports whether c's socket is served by an event loop now.
func (c *h1Conn) inLoop() bool { return c.sc != nil && c.sc.lp != nil }

// upgradeOutsideLoop serves a request that may switch protocols on a
// goroutine of its own, then the connection's next requests with next:
// a tunnel blocks its goroutine for the connection's life, so the
// connection leaves the event loop first.
func (c *h1Conn) upgradeOutsideLoop(next func() (hijacked, handedOff bool)) (hijacked, handedOff bool) {
	if !c.toPoller() {
		return false, false
	}
	go c.guarded(func() (bool, bool) {
		keep, hj := c.handle()
		if hj || !keep {
			return hj, false
		}
		return next()
	})
	return false, true
}

// outsideLoop runs fn, which waits on goroutines of its own and uses the
// connection from them (a gRPC call through net/http's HTTP/2 client reads
// the request body in one), with the socket out of its event loop: fn runs
// in a goroutine while the loop serves its other connections, and the
// socket rejoins the loop afterwards. Run in the loop, fn would hold every
// connection of the loop up for as long as the call lasts. A socket that
// cannot leave the loop is lost (fn does not run; the connection closes);
// one that cannot rejoin it closes after this response.
func (c *h1Conn) outsideLoop(w *h1Writer, fn func()) {
	s, l := c.sc, c.sc.lp
	inCB := s.inCB // a request without a body is served inside sysConn.loop
	s.inCB = false
	if err := s.toPoller(); err != nil {
		c.s.e.log.Warn("proxy: taking a connection out of its event loop failed", "remote", c.remoteAddr, "error", err)
		w.closeAfter = true
		return
	}
	s.keepDeadlines = true
	l.offload(fn)
	s.keepDeadlines = false
	if err := s.toLoop(l); err != nil {
		c.s.e.log.Warn("proxy: returning a connection to its event loop failed; closing it after this response", "remote", c.remoteAddr, "error", err)
		w.closeAfter = true
		return
	}
	s.inCB, s.cbFD = inCB, uintptr(s.fd)
}

// handshake completes a TLS connection's handshake (within the deadline
// serveFirst set) and reports whether the client chose HTTP/2; false ok
// when the handshake failed or the server is closing.
func (c *h1Conn) handshake() (h2, ok bool) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(h1HeaderTimeout))
	c.idle.Store(true) // drain ends a handshake at once
	if c.s.closing.Load() {
		return false, false
	}
	err := c.tc.Handshake()
	c.idle.Store(false)
	if err != nil {
		c.s.e.log.Debug("proxy TLS handshake failed", "remote", c.remoteAddr, "error", err)
		return false, false
	}
	_ = c.nc.SetWriteDeadline(time.Time{})
	st := c.tc.ConnectionState()
	c.tlsState = &st
	return st.NegotiatedProtocol == "h2", true
}

// handOffH2 gives the connection, as conn, to net/http's HTTP/2 server
// and reports that it did (the connection counts as hijacked here).
func (c *h1Conn) handOffH2(conn net.Conn) bool {
	_ = c.nc.SetReadDeadline(time.Time{})
	c.s.e.ConnState(c.nc, http.StateHijacked)
	go c.s.h2ln.handoff(conn)
	return true // net/http owns the connection now
}

// refreshIdleDeadline moves the read deadline that covers waiting for the
// next request and reading its head; it is moved only when an eighth of it
// has elapsed, to keep timer updates off the per-request path.
func (c *h1Conn) refreshIdleDeadline() {
	if now := c.s.e.clock.Now(); now.Sub(c.deadlineSet) > h1IdleTimeout/8 {
		_ = c.nc.SetReadDeadline(now.Add(h1IdleTimeout))
		c.deadlineSet = now
	}
}

// handle serves the request readRequest parsed and completes its
// response. It reports whether the connection stays open, and whether the
// handler took the connection over.
func (c *h1Conn) handle() (keep, hijacked bool) {
	if c.x.body.mode != bodyNone {
		now := c.s.e.clock.Now()
		_ = c.nc.SetReadDeadline(now.Add(c.s.e.bodyTimeout))
		c.deadlineSet, c.bodyDeadlineSet = time.Time{}, now
	}
	c.x.w.reset(&c.x.req)
	c.s.handler.ServeHTTP(&c.x.w, &c.x.req)
	if c.x.w.hijacked {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		return false, true
	}
	c.x.w.finish()
	keep = !c.x.w.closeAfter && !c.x.req.Close
	if keep && !c.x.body.drain() {
		keep = false
	}
	if !keep || c.br.Buffered() == 0 {
		if err := c.bw.Flush(); err != nil {
			return false, false
		}
	}
	return keep, false
}

// serveEvents is the request loop for a raw socket. Requests without a
// body (and no Upgrade) are read and answered inside one RawConn.Read
// callback that returns to the poller only to wait: the poller's readiness
// flag is then not reset between requests, so, as nginx does, after a
// receive that did not fill the buffer (the socket was drained) kiln waits
// for readiness instead of trying a receive that would find nothing. No
// wake-up is lost: data that arrives after the last receive signals
// readiness after the flag was last consumed. Requests with a body or an
// Upgrade are served outside the callback (their handlers read the socket
// or take it over), after which the loop starts over with a receive.
func (c *h1Conn) serveEvents() (hijacked, handedOff bool) {
	for {
		pending := false
		err := c.sc.loop(func() bool {
			c.mayRead = true // first call, or woken up: readable
			c.sc.idleAt = time.Time{}
			for {
				if c.s.closing.Load() {
					c.quit = true
					return true
				}
				if !c.headReady() {
					if c.quit {
						return true
					}
					if c.bw.Buffered() > 0 {
						// Pipelined responses go out before waiting.
						if err := c.bw.Flush(); err != nil {
							c.quit = true
							return true
						}
					}
					c.idle.Store(true)
					c.refreshIdleDeadline()
					if c.sc.lp != nil && c.br.Buffered() == 0 && c.bw.Buffered() == 0 {
						c.sc.lp.markIdle(c.sc)
					}
					return false
				}
				c.idle.Store(false)
				status, err := c.readRequest()
				if err != nil {
					if status != 0 {
						c.writeSimple(status, err.Error())
					}
					c.quit = true
					return true
				}
				if c.x.body.mode != bodyNone || c.mayUpgrade() {
					pending = true
					return true
				}
				keep, _ := c.handle() // no hijack: Hijack refuses in the callback
				if !keep {
					c.quit = true
					return true
				}
				c.mayRead = !c.sc.lastShort
			}
		})
		if errors.Is(err, errShed) {
			if c.sc.rready {
				continue // readable meanwhile
			}
			c.shed()
			return false, true
		}
		if err != nil || c.quit {
			return false, false
		}
		if pending {
			if c.inLoop() && c.mayUpgrade() {
				return c.upgradeOutsideLoop(c.serveEvents)
			}
			keep, hj := c.handle()
			if hj {
				return true, false
			}
			if !keep {
				return false, false
			}
		}
	}
}

// shed lets a connection idle for shedAfter wait for its next request
// without a coroutine or buffers: they go back for reuse, and the loop
// starts a coroutine again when the socket is readable, past its deadline
// or aborted. The last request's state (h1Exchange) goes back too. A TLS
// connection keeps its TLS state (see awaitRequest).
func (c *h1Conn) shed() {
	c.putBuffers()
	c.putExchange()
	if c.resumeFn == nil {
		c.resumeFn = func() { c.guarded(c.resume) }
	}
	c.sc.lp.detach(c.sc, c.resumeFn)
}

// resume serves a shed connection again once its loop woke it (a TLS one
// reads through TLS first: the socket's data may be a record's rest or an
// alert rather than a request).
func (c *h1Conn) resume() (hijacked, handedOff bool) {
	err := c.sc.wakeErr
	c.sc.wakeErr = nil
	if err != nil {
		return false, false // past its deadline, or aborted
	}
	if c.h2 == nil {
		c.takeExchange()
	}
	if c.tc != nil {
		// The socket is readable: the next request's first byte comes
		// (or the rest of a record, or a TLS alert).
		if _, err := io.ReadFull(c.tc, c.lead.b[:]); err != nil {
			return false, false
		}
		c.lead.has = true
	}
	c.takeBuffers()
	switch {
	case c.h2 != nil:
		return false, c.h2.resume()
	case c.tc != nil:
		return c.serveRequests()
	}
	return c.serveEvents()
}

// mayUpgrade reports whether the request asks for a protocol switch
// (broader than isUpgrade, which also needs both headers).
func (c *h1Conn) mayUpgrade() bool {
	return len(c.x.req.Header["Upgrade"]) > 0 || hasToken(c.x.req.Header["Connection"], "upgrade")
}

// headReady reports whether a whole request head is buffered (or the
// buffer is full, which readRequest answers with 494). Inside
// serveEvents' callback it receives at most once per readiness: when
// mayRead is false, or the receive finds nothing, it reports false so
// that the caller waits; EOF and errors set quit.
func (c *h1Conn) headReady() bool {
	for {
		n := c.br.Buffered()
		if n >= c.br.Size() {
			return true
		}
		if b, _ := c.br.Peek(n); headComplete(b) {
			return true
		}
		if !c.mayRead {
			return false
		}
		_, err := c.br.Peek(n + 1) // one receive
		switch {
		case err == errWouldBlock:
			c.mayRead = false
			return false
		case err != nil && c.br.Buffered() == n:
			c.quit = true
			return false
		}
		c.mayRead = !c.sc.lastShort
	}
}

// headComplete reports whether b holds a whole header block, after any
// empty lines a client may send before a request (as headerBlock.read
// reads it).
func headComplete(b []byte) bool {
	for {
		switch {
		case len(b) > 0 && b[0] == '\n':
			b = b[1:]
		case len(b) > 1 && b[0] == '\r' && b[1] == '\n':
			b = b[2:]
		default:
			return len(b) > 0 && blankLineEnd(b) > 0
		}
	}
}

// statusHeaderTooLarge is nginx's (and Kong's) status for a request head
// that does not fit its buffers.
const statusHeaderTooLarge = 494

// writeSimple answers a request that could not be parsed, counts it and
// logs it.
func (c *h1Conn) writeSimple(status int, msg string) {
	body := msg + "\n"
	n, _ := fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
	_ = c.bw.Flush()
	// Counted and logged as nginx does (Kong's /status total_requests).
	c.s.e.state.Metrics.TotalRequests.Add(1)
	c.s.e.accessLogRefused(c.remoteAddr, c.x.hb.buf, status, int64(n))
}

// readRequest parses the next request into c.x.req. On error, status is the
// answer to send (0: just close).
func (c *h1Conn) readRequest() (int, error) {
	if err := c.x.hb.read(c.br); err != nil {
		// Kong's answers (its nginx error_page keeps nginx's 494).
		switch err {
		case errHeaderTooLarge:
			return statusHeaderTooLarge, errors.New("Request header or cookie too large")
		case errRequestLineTooLong:
			return http.StatusRequestURITooLong, errors.New("URI too long")
		}
		return 0, err
	}
	start, ok := c.x.hb.parse(c.x.hdr)
	if !ok {
		return http.StatusBadRequest, errors.New("Bad request")
	}
	method, rest, ok1 := strings.Cut(start, " ")
	uri, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || uri == "" {
		return http.StatusBadRequest, errors.New("Bad request")
	}
	if !strings.HasPrefix(proto, "HTTP/") {
		return http.StatusBadRequest, errors.New("Bad request")
	}
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok || major != 1 {
		return http.StatusHTTPVersionNotSupported, errors.New("HTTP version not supported")
	}
	for i := 0; i < len(method); i++ {
		if !isTokenByte(method[i]) {
			return http.StatusBadRequest, errors.New("Bad request")
		}
	}
	if method == http.MethodConnect {
		// kiln is not a forward proxy: refused as nginx does.
		return http.StatusMethodNotAllowed, errors.New("Method not allowed")
	}
	if uri == "*" {
		// OPTIONS * asks about the server itself: nothing to route.
		return http.StatusBadRequest, errors.New("Bad request")
	}
	// Control characters in the target would reach the upstream's request
	// line (request splitting): refuse them.
	for i := 0; i < len(uri); i++ {
		if c := uri[i]; c <= ' ' || c == 0x7f {
			return http.StatusBadRequest, errors.New("Bad request")
		}
	}
	r := &c.x.req
	*r = http.Request{Method: method, Proto: proto, ProtoMajor: major, ProtoMinor: minor, Header: c.x.hdr,
		RemoteAddr: c.remoteAddr, RequestURI: uri, TLS: c.tlsState}
	if c.ctx != nil {
		*r = *r.WithContext(c.ctx)
	}
	if err := c.parseURI(uri); err != nil {
		return http.StatusBadRequest, errors.New("Bad request")
	}
	h := c.x.hdr
	if hv := c.x.hb.hosts; len(hv) > 0 {
		if len(hv) > 1 {
			return http.StatusBadRequest, errors.New("Bad request")
		}
		r.Host = hv[0]
	} else if minor >= 1 {
		return http.StatusBadRequest, errors.New("Bad request")
	}
	if c.x.url.Host != "" {
		r.Host = c.x.url.Host
	}
	if (r.Host != "" || minor >= 1) && !validHost(r.Host) {
		return http.StatusBadRequest, errors.New("Bad request")
	}
	conn := h["Connection"]
	if minor == 0 {
		r.Close = !hasToken(conn, "keep-alive")
	} else {
		r.Close = hasToken(conn, "close")
	}
	// Body framing.
	c.x.body = h1Body{c: c}
	if te := h["Transfer-Encoding"]; len(te) > 0 {
		if len(h["Content-Length"]) > 0 {
			// Both framings: refused, as nginx (and so Kong) does
			// (RFC 9112 §6.1 allows it), rather than trusting one.
			return http.StatusBadRequest, errors.New("Bad request")
		}
		// The value is trimmed of spaces and tabs only: "\vchunked" is
		// not chunked.
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") || minor == 0 {
			return http.StatusNotImplemented, errors.New("Unsupported transfer encoding")
		}
		delete(h, "Transfer-Encoding")
		r.TransferEncoding = []string{"chunked"}
		r.ContentLength = -1
		c.x.body.mode = bodyChunked
		c.x.body.cr = httputil.NewChunkedReader(c.br)
	} else if cl := h["Content-Length"]; len(cl) > 0 {
		n, ok := parseContentLength(cl[0])
		for _, v := range cl[1:] {
			ok = ok && v == cl[0]
		}
		if !ok {
			return http.StatusBadRequest, errors.New("Bad request")
		}
		r.ContentLength = n
		if n > 0 {
			c.x.body.mode = bodyLength
			c.x.body.lr = lengthReader{r: c.br, n: n}
		}
	}
	if c.x.body.mode == bodyNone {
		r.Body = http.NoBody
	} else {
		c.x.body.expect = hasToken(h["Expect"], "100-continue")
		r.Body = &c.x.body
	}
	return 0, nil
}

func (c *h1Conn) parseURI(uri string) error {
	c.x.url = url.URL{}
	c.x.req.URL = &c.x.url
	switch {
	case uri[0] != '/':
		u, err := url.ParseRequestURI(uri)
		if err != nil {
			return err
		}
		c.x.url = *u
		return nil
	}
	p, q, _ := strings.Cut(uri, "?")
	c.x.url.RawQuery = q
	if strings.IndexByte(p, '%') < 0 {
		c.x.url.Path = p
		return nil
	}
	up, err := url.PathUnescape(p)
	if err != nil {
		return err
	}
	c.x.url.Path, c.x.url.RawPath = up, p
	return nil
}

const (
	bodyNone = iota
	bodyLength
	bodyChunked
)

// h1Body is a request body: fixed length or chunked.
type h1Body struct {
	c      *h1Conn
	mode   int
	lr     lengthReader
	cr     io.Reader
	expect bool
	eof    bool
	closed bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.eof || b.mode == bodyNone {
		return 0, io.EOF
	}
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.expect {
		b.expect = false
		_, _ = b.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		_ = b.c.bw.Flush()
	}
	if e, now := b.c.s.e, b.c.s.e.clock.Now(); now.Sub(b.c.bodyDeadlineSet) > e.bodyTimeout/8 {
		// The body keeps moving: the timeout counts from here.
		_ = b.c.nc.SetReadDeadline(now.Add(e.bodyTimeout))
		b.c.bodyDeadlineSet = now
	}
	var n int
	var err error
	if b.mode == bodyLength {
		n, err = b.lr.Read(p)
	} else {
		n, err = b.cr.Read(p)
		if err == io.EOF {
			// Consume the trailer section.
			for {
				line, lerr := b.c.br.ReadSlice('\n')
				if lerr != nil {
					err = io.ErrUnexpectedEOF
					break
				}
				if len(line) <= 2 {
					break
				}
			}
		}
	}
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.closed = true
	return nil
}

// drain discards what the handler left of the body so the connection can
// be reused; it reports false when the connection must be closed instead.
func (b *h1Body) drain() bool {
	if b.mode == bodyNone || b.eof {
		return true
	}
	if b.expect {
		// The client waits for 100-continue that never came: close.
		return false
	}
	b.closed = false
	n, err := io.CopyN(io.Discard, b, maxDiscard)
	return err == io.EOF || (err == nil && n < maxDiscard && b.eof)
}

// h1Writer is the http.ResponseWriter of the fast path.
type h1Writer struct {
	c          *h1Conn
	req        *http.Request
	hdr        http.Header
	status     int
	wrote      bool
	chunked    bool
	noBody     bool
	cl         int64
	written    int64
	closeAfter bool
	hijacked   bool
}

func (w *h1Writer) reset(r *http.Request) {
	clear(w.hdr)
	*w = h1Writer{c: w.c, req: r, hdr: w.hdr, cl: -1}
}

func (w *h1Writer) Header() http.Header { return w.hdr }

func (w *h1Writer) WriteHeader(code int) {
	if w.wrote || w.hijacked {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	bw := w.c.bw
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		b := appendStatusLine(bw.AvailableBuffer(), w.req.ProtoMinor, code)
		b = appendHeaders(b, w.hdr)
		_, _ = bw.Write(append(b, "\r\n"...))
		return
	}
	w.wrote, w.status = true, code
	h := w.hdr
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if cl := h["Content-Length"]; len(cl) > 0 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.cl = n
		} else {
			delete(h, "Content-Length")
		}
	}
	delete(h, "Transfer-Encoding")
	if w.cl < 0 && !w.noBody {
		if w.req.ProtoMinor >= 1 {
			w.chunked = true
		} else {
			w.closeAfter = true
		}
	}
	if code == http.StatusNoContent || (code >= 100 && code < 200) {
		delete(h, "Content-Length")
	}
	if w.req.Close || w.c.s.closing.Load() {
		w.closeAfter = true
	}
	if hasToken(h["Connection"], "close") {
		w.closeAfter = true
	}
	b := appendStatusLine(bw.AvailableBuffer(), w.req.ProtoMinor, code)
	if _, ok := h["Date"]; !ok {
		b = append(b, "Date: "...)
		b = append(b, w.c.s.date()...)
		b = append(b, "\r\n"...)
	}
	b = appendHeaders(b, h)
	if w.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if w.closeAfter && len(h["Connection"]) == 0 {
		b = append(b, "Connection: close\r\n"...)
	} else if !w.closeAfter && w.req.ProtoMinor == 0 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	_, _ = bw.Write(append(b, "\r\n"...))
}

// writeProxiedHead writes an upstream response's head without going
// through the header map: the upstream's end-to-end fields, Date when the
// upstream sent none, Via and Kong's latency and request-id headers, and
// the framing for the client connection.
func (w *h1Writer) writeProxiedHead(resp *upResponse, c *plugin.Context) {
	code := resp.status
	w.wrote, w.status = true, code
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if resp.contentLength >= 0 && !resp.chunked {
		w.cl = resp.contentLength
	}
	if w.cl < 0 && !w.noBody {
		if w.req.ProtoMinor >= 1 {
			w.chunked = true
		} else {
			w.closeAfter = true
		}
	}
	if w.req.Close || w.c.s.closing.Load() {
		w.closeAfter = true
	}
	bw := w.c.bw
	b := appendStatusLine(bw.AvailableBuffer(), w.req.ProtoMinor, code)
	hasDate := false
	// Headers set by plugins first; lens has a bit for the length of
	// each of their names (mod 64), so that most upstream fields need no
	// look-up to know that no plugin header replaces them.
	var lens uint64
	for k, vs := range c.RespHeader {
		lens |= 1 << (len(k) & 63)
		for _, v := range vs {
			b = appendHeader(b, k, v)
		}
	}
	kh := w.c.s.e.headers
	var via []string
	_, hasServer := c.RespHeader["Server"]
	for _, f := range resp.fields {
		k := f.name
		if !resp.endToEnd(k) {
			continue
		}
		if lens&(1<<(len(k)&63)) != 0 {
			if _, set := c.RespHeader[k]; set {
				continue // a plugin's response header replaces the upstream's
			}
		}
		switch k {
		case "Date":
			hasDate = true
		case "Via":
			if kh.Has(headerconf.Via) {
				via = append(via, f.value)
				continue
			}
		case "Server":
			hasServer = true
		case "Content-Length":
			if code == http.StatusNoContent {
				continue
			}
		}
		// Parsed fields hold no CR or LF: no need to sanitise.
		b = append(b, k...)
		b = append(b, ": "...)
		b = append(b, f.value...)
		b = append(b, "\r\n"...)
	}
	if !hasDate {
		b = append(b, "Date: "...)
		b = append(b, w.c.s.date()...)
		b = append(b, "\r\n"...)
	}
	b = appendProxiedKongHeaders(b, kh, via, hasServer, code, c)
	if w.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if w.closeAfter {
		b = append(b, "Connection: close\r\n"...)
	} else if w.req.ProtoMinor == 0 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	_, _ = bw.Write(append(b, "\r\n"...))
}

func appendStatusLine(b []byte, minor, code int) []byte {
	if minor == 0 {
		b = append(b, "HTTP/1.0 "...)
	} else {
		b = append(b, "HTTP/1.1 "...)
	}
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	return append(b, "\r\n"...)
}

func appendHeaders(b []byte, h http.Header) []byte {
	for k, vs := range h {
		for _, v := range vs {
			b = appendHeader(b, k, v)
		}
	}
	return b
}

func (w *h1Writer) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wrote {
		if _, ok := w.hdr["Content-Type"]; !ok && len(p) > 0 {
			w.hdr["Content-Type"] = []string{http.DetectContentType(p)}
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		return len(p), nil
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	bw := w.c.bw
	if w.chunked {
		if len(p) == 0 {
			return 0, nil
		}
		var b [16]byte
		_, _ = bw.Write(strconv.AppendInt(b[:0], int64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
		n, err := bw.Write(p)
		if err != nil {
			return n, err
		}
		_, err = bw.WriteString("\r\n")
		return n, err
	}
	return bw.Write(p)
}

// Flush sends what is buffered to the client.
func (w *h1Writer) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.c.bw.Flush()
}

// Hijack hands the connection to the caller (WebSocket tunnels).
func (w *h1Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.wrote {
		return nil, nil, errors.New("hijack after the response started")
	}
	if w.c.sc != nil && (w.c.sc.inCB || w.c.sc.lp != nil) {
		return nil, nil, errors.New("hijack of a request read in the event loop")
	}
	w.hijacked = true
	w.c.tunnel = true // its writes through bw set no deadline
	_ = w.c.nc.SetDeadline(time.Time{})
	w.c.s.e.ConnState(w.c.nc, http.StateHijacked)
	// The connection's buffers are handed over; they are not pooled.
	br, bw := w.c.br, w.c.bw
	w.c.br, w.c.bw = nil, nil
	return w.c.nc, bufio.NewReadWriter(br, bw), nil
}

// finish completes the response after the handler returned.
func (w *h1Writer) finish() {
	if !w.wrote {
		w.hdr["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusOK)
	}
	if w.chunked {
		_, _ = w.c.bw.WriteString("0\r\n\r\n")
	}
	if w.cl >= 0 && !w.noBody && w.written < w.cl {
		// A truncated body: the client must not reuse the connection.
		w.closeAfter = true
	}
}

// prefixConn replays bytes already read from a connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// handoffListener feeds connections to net/http's server.
type handoffListener struct {
	addr   net.Addr
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *handoffListener) handoff(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.closed:
		_ = c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// appendProxiedKongHeaders appends the headers Kong adds to a proxied
// response that the headers setting kh enables: via holds the upstream's
// Via values (collected only when Via is enabled).
func appendProxiedKongHeaders(b []byte, kh headerconf.Set, via []string, hasServer bool, code int, c *plugin.Context) []byte {
	if kh.Has(headerconf.UpstreamStatus) {
		b = append(b, "X-Kong-Upstream-Status: "...)
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, "\r\n"...)
	}
	if kh.Has(headerconf.Via) {
		b = append(b, "Via: "...)
		for _, v := range via {
			b = append(b, v...)
			b = append(b, ", "...)
		}
		b = append(b, viaValue...)
		b = append(b, "\r\n"...)
	}
	if kh.Has(headerconf.Server) && !hasServer {
		b = append(b, "Server: "+serverValue+"\r\n"...)
	}
	if kh.Has(headerconf.UpstreamLatency) {
		b = append(b, "X-Kong-Upstream-Latency: "...)
		b = strconv.AppendInt(b, max(c.UpstreamLatency.Milliseconds(), 0), 10)
		b = append(b, "\r\n"...)
	}
	if kh.Has(headerconf.ProxyLatency) {
		b = append(b, "X-Kong-Proxy-Latency: "...)
		b = strconv.AppendInt(b, max(c.ProxyLatency.Milliseconds(), 0), 10)
		b = append(b, "\r\n"...)
	}
	if kh.Has(headerconf.RequestID) {
		b = append(b, "X-Kong-Request-Id: "...)
		b = append(b, c.RequestID...)
		b = append(b, "\r\n"...)
	}
	return b
}
