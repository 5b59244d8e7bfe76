package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// Upstream connection pool limits, after Kong's upstream_keepalive_* defaults.
const (
	poolSizePerKey  = 512
	poolIdleTimeout = 60 * time.Second
	poolMaxRequests = 10000
	// poolPeekAfter: a connection idle longer than this is checked with a
	// non-blocking peek before reuse, so one the upstream closed while idle
	// (its keep-alive timeout) is dropped instead of failing a request.
	// Connections reused sooner, as under load, skip the system call.
	poolPeekAfter = 500 * time.Millisecond
)

// upConn is one kept-alive HTTP/1.1 connection to an upstream.
type upConn struct {
	nc       net.Conn
	dc       *deadlineConn
	br       *bufio.Reader
	bw       *bufio.Writer
	key      string
	requests int
	idleAt   time.Time
	// reused is true when the connection served a request before.
	reused bool
	hb     headerBlock
	resp   upResponse
	// raw is the TCP socket (under TLS too); sc is raw for a plain
	// connection, whose requests may be queued (sysConn.pending), and nil
	// for TLS.
	raw *sysConn
	sc  *sysConn
	tls bool
	// p is the pool the connection belongs to.
	p *pool
}

// deadlineConn applies Kong's per-operation timeouts: the read timeout
// between two successive reads, the write timeout between two writes. To
// keep timer updates off the hot path, a deadline is moved only when it is
// more than 1/8 of the timeout old, so a timeout fires between 7/8 and 8/8
// of its configured value after the last progress.
type deadlineConn struct {
	net.Conn
	clock               *coarseClock
	read, write         time.Duration
	readSet, writeSet   time.Time
	readUsed, writeUsed time.Duration
}

// arm sets the timeouts for the next request on this connection.
func (c *deadlineConn) arm(read, write time.Duration) {
	c.read, c.write = read, write
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.read > 0 {
		if now := c.clock.Now(); now.Sub(c.readSet) > c.read/8 || c.readUsed != c.read {
			_ = c.Conn.SetReadDeadline(now.Add(c.read))
			c.readSet, c.readUsed = now, c.read
		}
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.write > 0 {
		if now := c.clock.Now(); now.Sub(c.writeSet) > c.write/8 || c.writeUsed != c.write {
			_ = c.Conn.SetWriteDeadline(now.Add(c.write))
			c.writeSet, c.writeUsed = now, c.write
		}
	}
	return c.Conn.Write(p)
}

// pool keeps idle upstream connections per (scheme, address, SNI) key.
type pool struct {
	clock *coarseClock
	mu    sync.Mutex
	// idle holds each key's idle connections, most recently used last
	// (a pointer, so get and put look the key up once).
	idle map[string]*[]*upConn
	// bufs recycles bufio readers/writers of closed connections.
	readers sync.Pool
	writers sync.Pool
	// loop is set for an event loop's pool: its connections are in the
	// loop (see dial).
	loop *eventLoop
}

func newPool(clock *coarseClock) *pool {
	return &pool{clock: clock, idle: map[string]*[]*upConn{}}
}

// get returns an idle connection for key, or nil.
func (p *pool) get(key string) *upConn {
	now := p.clock.Now()
	var stale []*upConn
	p.mu.Lock()
	lp := p.idle[key]
	if lp == nil {
		p.mu.Unlock()
		return nil
	}
	list := *lp
	var found *upConn
	for len(list) > 0 {
		c := list[len(list)-1]
		list = list[:len(list)-1]
		idle := now.Sub(c.idleAt)
		if idle > poolIdleTimeout || (idle > poolPeekAfter && c.closedWhileIdle()) {
			stale = append(stale, c)
			continue
		}
		found = c
		break
	}
	*lp = list
	p.mu.Unlock()
	for _, c := range stale {
		p.close(c)
	}
	if found != nil && found.br == nil {
		p.takeBuffers(found) // shed while idle
	}
	return found
}

// put returns a healthy connection to the pool (or closes it when the pool
// is full or the connection served its maximum requests).
func (p *pool) put(c *upConn) {
	c.requests++
	if c.requests >= poolMaxRequests || c.br.Buffered() > 0 {
		p.close(c)
		return
	}
	c.reused = true
	c.idleAt = p.clock.Now()
	if p.loop != nil {
		p.loop.shedBy(c.idleAt.Add(shedAfter))
	}
	p.mu.Lock()
	lp := p.idle[c.key]
	if lp == nil {
		lp = new([]*upConn)
		p.idle[c.key] = lp
	}
	if len(*lp) >= poolSizePerKey {
		p.mu.Unlock()
		p.close(c)
		return
	}
	*lp = append(*lp, c)
	p.mu.Unlock()
}

// dropIdleSince closes key's idle connections that have been idle since
// before t. When a kept-alive connection turns out to be closed by the
// upstream (its keep-alive timeout passed), every connection idle at least
// as long is most likely closed too: after a burst the pool can hold
// hundreds of them, and each would cost the next requests a failed try.
func (p *pool) dropIdleSince(key string, t time.Time) {
	p.mu.Lock()
	lp := p.idle[key]
	if lp == nil {
		p.mu.Unlock()
		return
	}
	list := *lp
	kept := list[:0]
	var stale []*upConn
	for _, c := range list {
		if c.idleAt.After(t) {
			kept = append(kept, c)
		} else {
			stale = append(stale, c)
		}
	}
	clear(list[len(kept):])
	*lp = kept
	p.mu.Unlock()
	for _, c := range stale {
		p.close(c)
	}
}

func (p *pool) close(c *upConn) {
	_ = c.nc.Close()
	p.putBuffers(c)
}

// shedIdle gives back the buffers (24 KiB) and last response state of the
// connections idle for shedAfter, as eventLoop.shedIdle does for client
// connections; get gives a connection buffers again. It returns when the
// next connection that still has buffers is due (zero: none).
func (p *pool) shedIdle(now time.Time) time.Time {
	var next time.Time
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, lp := range p.idle {
		for _, c := range *lp {
			if c.br == nil {
				continue
			}
			if due := c.idleAt.Add(shedAfter); due.After(now) {
				next = earliest(next, due)
				continue
			}
			p.putBuffers(c)
			c.hb, c.resp = headerBlock{}, upResponse{}
		}
	}
	return next
}

// takeBuffers gives c a read and a write buffer (reused ones when there
// are).
func (p *pool) takeBuffers(c *upConn) {
	if br, ok := p.readers.Get().(*bufio.Reader); ok {
		br.Reset(c.dc)
		c.br = br
	} else {
		c.br = bufio.NewReaderSize(c.dc, 16<<10)
	}
	if bw, ok := p.writers.Get().(*bufio.Writer); ok {
		bw.Reset(c.dc)
		c.bw = bw
	} else {
		c.bw = bufio.NewWriterSize(c.dc, 8<<10)
	}
}

// putBuffers gives c's buffers back for reuse.
func (p *pool) putBuffers(c *upConn) {
	if c.br != nil {
		c.br.Reset(nil)
		p.readers.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		p.writers.Put(c.bw)
		c.bw = nil
	}
}

// closeAll closes every idle connection.
func (p *pool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string]*[]*upConn{}
	p.mu.Unlock()
	for _, list := range idle {
		for _, c := range *list {
			_ = c.nc.Close()
		}
	}
}

// dial opens a new connection (TLS when tlsConf is set). An event loop's
// pool connects to an IP address itself (dialLoop); for a hostname or TLS
// it dials in a goroutine and then moves the socket into the loop.
func (p *pool) dial(ctx context.Context, key, addr string, connect time.Duration, tlsConf *tls.Config) (*upConn, error) {
	if p.loop == nil {
		return p.dialPoller(ctx, key, addr, connect, tlsConf)
	}
	if tlsConf == nil && p.loop.cur != nil {
		if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Zone() == "" {
			return p.dialLoop(ctx, key, ap, connect)
		}
	}
	var (
		c   *upConn
		err error
	)
	p.loop.offload(func() { c, err = p.dialPoller(ctx, key, addr, connect, tlsConf) })
	if err != nil {
		return nil, err
	}
	if c.raw != nil {
		if err := c.raw.toLoop(p.loop); err != nil {
			p.close(c)
			return nil, fmt.Errorf("upstream %s: %w", addr, err)
		}
	}
	return c, nil
}

// dialLoop connects to an IP address from the event loop (in one of its
// coroutines): a non-blocking connect whose completion the loop waits for
// like any readiness. An offloaded dial needs a goroutine and Go's
// poller, whose wake-up busy loops can leave to the scheduler's 10 ms
// monitor; it also costs twice the system calls.
func (p *pool) dialLoop(ctx context.Context, key string, ap netip.AddrPort, connect time.Duration) (*upConn, error) {
	raddr := net.TCPAddrFromAddrPort(ap)
	fail := func(op string, err error) (*upConn, error) {
		if errno, ok := err.(syscall.Errno); ok {
			err = os.NewSyscallError(op, errno)
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: raddr, Err: err}
	}
	family, sa := syscall.AF_INET6, syscall.Sockaddr(&syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()})
	if ap.Addr().Is4() {
		family, sa = syscall.AF_INET, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		return fail("socket", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	cerr := syscall.Connect(fd, sa)
	if cerr != nil && cerr != syscall.EINPROGRESS && cerr != syscall.EINTR {
		_ = syscall.Close(fd)
		return fail("connect", cerr)
	}
	sc := newLoopSocket(fd, raddr)
	if err := p.loop.adopt(sc); err != nil {
		_ = syscall.Close(fd)
		return fail("epoll_ctl", err)
	}
	if cerr != nil { // in progress: writable once connected or failed
		sc.wready = false
		dl := time.Now().Add(connect)
		if d, ok := ctx.Deadline(); ok && d.Before(dl) {
			dl = d
		}
		_ = sc.SetWriteDeadline(dl)
		err := sc.waitWritable()
		_ = sc.SetWriteDeadline(time.Time{})
		if err == nil {
			var soErr int
			if soErr, err = syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err == nil && soErr != 0 {
				err = syscall.Errno(soErr)
			}
		}
		if err != nil {
			_ = sc.Close()
			return fail("connect", err)
		}
	}
	return p.newUpConn(key, sc, sc), nil
}

// dialPoller dials with Go's poller: the socket is a sysConn in poller
// mode (under TLS, too, so that a loop can take it over). As in Kong
// (proxy_socket_keepalive off), upstream sockets get no TCP keep-alive
// probes: the pool closes connections idle for a minute.
func (p *pool) dialPoller(ctx context.Context, key, addr string, connect time.Duration, tlsConf *tls.Config) (*upConn, error) {
	d := net.Dialer{Timeout: connect, KeepAlive: -1}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	raw := newRawConn(nc)
	if raw != nil {
		nc = raw
	}
	if tlsConf == nil {
		return p.newUpConn(key, nc, raw), nil
	}
	tconn := tls.Client(nc, tlsConf)
	hctx, cancel := context.WithTimeout(ctx, connect)
	err = tconn.HandshakeContext(hctx)
	cancel()
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	c := p.newUpConn(key, tconn, raw)
	c.tls, c.sc = true, nil
	return c, nil
}

// newUpConn wraps a connected upstream connection nc (raw: its TCP socket's
// sysConn, or nil) with the pool's buffers.
func (p *pool) newUpConn(key string, nc net.Conn, raw *sysConn) *upConn {
	c := &upConn{key: key, nc: nc, raw: raw, sc: raw, p: p}
	c.dc = &deadlineConn{Conn: nc, clock: p.clock}
	p.takeBuffers(c)
	return c
}

// closedWhileIdle reports whether an idle upstream connection can no longer
// carry a request: a non-blocking peek finds end of stream, an error, or
// bytes the upstream sent unasked (an HTTP/1 server speaks only when asked;
// for TLS such bytes can be a session ticket, so only end of stream and
// errors count there).
func (c *upConn) closedWhileIdle() bool {
	if c.raw == nil {
		return false
	}
	return c.raw.peekClosed(c.tls)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
