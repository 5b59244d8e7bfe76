package proxyproto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// DefaultHeaderTimeout is how long a new connection has to send its
// header (nginx uses its client header timeout, 60 s by default).
const DefaultHeaderTimeout = 60 * time.Second

// Options configure a Listener.
type Options struct {
	// HeaderTimeout bounds the wait for a connection's header
	// (DefaultHeaderTimeout when zero).
	HeaderTimeout time.Duration
	// Log receives one debug line per refused connection (nil: discard).
	Log *slog.Logger
}

// Listener wraps a stream listener whose peers send a PROXY protocol
// header first. Every accepted connection's header is read in a goroutine
// of its own, so a slow or silent peer never holds up Accept for others;
// Accept returns only connections whose header was valid, as *Conn. A
// connection with a missing, broken or late header is closed and logged at
// debug level.
type Listener struct {
	inner   net.Listener
	timeout time.Duration
	log     *slog.Logger

	ready  chan *Conn
	errc   chan error
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	pending map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// NewListener starts accepting on inner. Close stops it and closes inner.
func NewListener(inner net.Listener, o Options) *Listener {
	l := &Listener{
		inner: inner, timeout: o.HeaderTimeout, log: o.Log,
		ready: make(chan *Conn), errc: make(chan error, 1), closed: make(chan struct{}),
		pending: map[net.Conn]struct{}{},
	}
	if l.timeout <= 0 {
		l.timeout = DefaultHeaderTimeout
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: back off
				// as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-l.closed:
					return
				}
			}
			l.errc <- err
			return
		}
		delay = 0
		l.mu.Lock()
		select {
		case <-l.closed:
			l.mu.Unlock()
			_ = c.Close()
			return
		default:
		}
		l.pending[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.handshake(c)
	}
}

func (l *Listener) handshake(c net.Conn) {
	defer l.wg.Done()
	pc, err := readHeader(c, time.Now().Add(l.timeout))
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
	if err != nil {
		l.log.Debug("proxy protocol: broken header, connection closed", "remote", c.RemoteAddr().String(), "err", err)
		_ = c.Close()
		return
	}
	select {
	case l.ready <- pc:
	case <-l.closed:
		_ = c.Close()
	}
}

// readHeader reads c's header before deadline. It reads no more than the
// header where it can (exactly: version 2 by its length, version 1 on a
// socket by peeking); bytes read past it are kept for the Conn's first
// reads.
func readHeader(c net.Conn, deadline time.Time) (*Conn, error) {
	if err := c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	if pc, err := readV1Exactly(c); pc != nil || err != nil {
		if err == nil {
			err = c.SetReadDeadline(time.Time{})
		}
		return pc, err
	}
	buf := make([]byte, 0, 128)
	need := minLen
	for {
		if need > cap(buf) {
			nb := make([]byte, len(buf), need)
			copy(nb, buf)
			buf = nb
		}
		// Version 1 headers end at a CRLF: read what is there (up to
		// the longest header). Version 2 ones say their length: read
		// exactly that.
		limit := need
		if len(buf) >= len(v1Prefix) && buf[0] == 'P' {
			limit = min(cap(buf), MaxV1Len)
		}
		n, err := c.Read(buf[len(buf):limit])
		buf = buf[:len(buf)+n]
		if n > 0 {
			h, hlen, perr := Parse(buf)
			switch {
			case perr == nil:
				if err := c.SetReadDeadline(time.Time{}); err != nil {
					return nil, err
				}
				return &Conn{Conn: c, hdr: h, rest: buf[hlen:len(buf):len(buf)]}, nil
			case errors.Is(perr, ErrShort):
				need = hlen
				continue
			default:
				return nil, perr
			}
		}
		if err != nil {
			return nil, fmt.Errorf("reading the PROXY header (%d bytes so far): %w", len(buf), err)
		}
	}
}

// readV1Exactly reads a version 1 header from a socket without reading
// past it: it peeks (MSG_PEEK) until the CRLF is in, then reads just the
// header, so the request behind it stays in the socket and the connection
// can be served on a raw socket path (Conn.Raw). It returns nil, nil when
// c is no socket or does not start like a version 1 header, and for a
// header with no CRLF in MaxV1Len bytes: readHeader's reads decide then.
func readV1Exactly(c net.Conn) (*Conn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, nil
	}
	var (
		peek [MaxV1Len]byte
		n    int
		rerr error
	)
	err = rc.Read(func(fd uintptr) bool {
		m, _, errno := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errno == syscall.EAGAIN:
			return false
		case errno != nil:
			rerr = errno
			return true
		case m == 0:
			rerr = io.EOF
			return true
		}
		n = m
		if !bytes.HasPrefix(v1Prefix, peek[:min(n, len(v1Prefix))]) || bytes.IndexByte(peek[:n], '\n') >= 0 || n == len(peek) {
			return true
		}
		// A header split over several segments: wait for the rest (the
		// poller wakes on new data, not on data already there).
		return false
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("reading the PROXY header (%d bytes so far): %w", n, err)
	}
	end := bytes.IndexByte(peek[:n], '\n')
	if !bytes.HasPrefix(peek[:n], v1Prefix) || end < 0 {
		return nil, nil
	}
	line := make([]byte, end+1)
	if _, err := io.ReadFull(c, line); err != nil {
		return nil, fmt.Errorf("reading the PROXY header: %w", err)
	}
	h, hlen, err := Parse(line)
	if err != nil {
		return nil, err
	}
	if hlen != len(line) {
		return nil, fmt.Errorf("proxy protocol v1: header ends at byte %d, not at its line feed", hlen)
	}
	return &Conn{Conn: c, hdr: h}, nil
}

// Accept returns the next connection whose header was read, as *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // every later Accept fails alike
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting, closes the listener and the connections still
// sending their header, and waits for its goroutines.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		close(l.closed)
		for c := range l.pending {
			_ = c.Close()
		}
		l.mu.Unlock()
		err = l.inner.Close()
		l.wg.Wait()
	})
	return err
}

// Addr is the wrapped listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Conn is a connection whose PROXY header has been read. RemoteAddr stays
// the TCP peer (the load balancer); ProxyAddr is the client address from
// the header.
type Conn struct {
	net.Conn
	hdr  Header
	rest []byte // bytes read past the header, returned first
}

// Header is the connection's PROXY header.
func (c *Conn) Header() Header { return c.hdr }

// ProxyAddr returns the client address from the header; false for
// headers that carry none (LOCAL, UNKNOWN).
func (c *Conn) ProxyAddr() (netip.AddrPort, bool) {
	if c.hdr.Local {
		return netip.AddrPort{}, false
	}
	return c.hdr.Source, true
}

// Raw returns the underlying connection when nothing read past the header
// is pending, so that a caller may use it directly (its own fast paths);
// false while Read still has buffered bytes to return.
func (c *Conn) Raw() (net.Conn, bool) {
	return c.Conn, len(c.rest) == 0
}

// Read returns the bytes read past the header first.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the underlying connection (as tls.Conn's does).
func (c *Conn) NetConn() net.Conn { return c.Conn }
