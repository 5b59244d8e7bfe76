package server

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// sysConn reads and writes a TCP socket with raw recvfrom(2)/sendto(2)
// calls made through syscall.RawConn, so deadlines, closing and waiting for
// readiness stay with Go's poller. The calls are non-blocking (EAGAIN
// sends the goroutine to the poller as net.Conn does), which is what lets
// them skip the scheduler's entersyscall/exitsyscall bookkeeping: on the
// proxy's path that bookkeeping cost about as much as one of its four
// socket calls per request. recvfrom/sendto (as nginx uses recv/send) go
// to the socket layer directly instead of through the file layer that
// read/write take. Everything but Read and Write is the embedded
// connection's.
type sysConn struct {
	// nc and rc are the connection in Go's poller (poller mode); in loop
	// mode (lp set) nc is nil and fd is the socket, owned by lp.
	nc net.Conn
	rc syscall.RawConn
	lp *eventLoop
	fd int
	// laddr, raddr outlive the mode switches.
	laddr, raddr net.Addr
	// outer is the connection nc was unwrapped from (a PROXY protocol
	// connection), for its header's address; nil when nc is the accepted one.
	outer net.Conn
	// Loop mode: the deadlines, the readiness seen while nobody waited
	// (edge-triggered, as Go's poller), the waiting coroutine and what
	// woke it, and the socket's timer entry.
	rdl, wdl       time.Time
	rready, wready bool
	waiter         *coro
	waitWrite      bool
	wakeErr        error
	// writer waits to write while waiter waits to read (an HTTP/2
	// connection reads in one coroutine and writes from others);
	// writerErr is what woke it.
	writer    *coro
	writerErr error
	hdl       time.Time
	hidx      int
	// cont runs (in a new coroutine) when the socket, waiting to be read
	// without a coroutine (eventLoop.detach), is readable, aborted or
	// past its read deadline.
	cont func()
	// idleAt is when a client connection started waiting for its next
	// request with nothing buffered (zero when it is not: see shedAfter).
	idleAt time.Time

	rbuf    []byte
	rn      int
	rerr    error
	readFn  func(uintptr) bool
	wbuf    []byte
	wn      int
	werr    error
	writeFn func(uintptr) bool

	// pending is a complete request to send before the next receive
	// (set by writeRequest for requests without a body): sent inside
	// the receive's RawConn.Read callback, after the poller's readiness
	// reset, the response cannot arrive unnoticed before the wait, so
	// the receive that would find nothing is skipped. A peer never sends
	// first on an idle HTTP/1 connection; one that closed it answers the
	// request with a reset, which wakes the wait.
	pending     []byte
	sendFn      func(uintptr) bool
	sendBlocked bool

	// unread is set on a socket a loop accepted until its first receive,
	// which waits for readiness first: a request rarely follows the
	// handshake at once, and the receive would find nothing.
	unread bool

	// lastShort is true when the last successful receive did not fill
	// the buffer: the socket was drained at that moment.
	lastShort bool
	// inCB and cbFD are set while loop's step runs inside RawConn.Read:
	// Read then receives directly and reports errWouldBlock instead of
	// waiting (the caller returns to the poller to wait).
	inCB bool
	cbFD uintptr
	// keepDeadlines is set while a loop's socket is in Go's poller for a
	// while (h1Conn.outsideLoop): the deadlines set meanwhile are kept
	// in rdl and wdl, which toLoop carries over. (Otherwise poller mode
	// leaves them to the poller: net/http's HTTP/2 goroutines set them
	// concurrently.)
	keepDeadlines bool
}

// errWouldBlock is what Read returns inside loop when no data is there.
var errWouldBlock = errors.New("would block")

// errShed ends the wait of a client connection idle for shedAfter: its
// code is to shed the connection (h1Conn.shed).
var errShed = errors.New("idle connection shed")

// errOutsideLoop is a loop-mode socket used outside its loop's coroutines.
var errOutsideLoop = errors.New("socket used outside its event loop")

// loop runs step inside RawConn.Read until it returns true; when it
// returns false the goroutine waits for readability (without the
// readiness reset that starts every RawConn.Read) and step runs again.
// In loop mode the wait is the loop's.
func (s *sysConn) loop(step func() bool) error {
	if s.lp != nil {
		for {
			s.cbFD, s.inCB = uintptr(s.fd), true
			done := step()
			s.inCB = false
			if done {
				return nil
			}
			if err := s.waitRead(); err != nil {
				return s.opError("read", err)
			}
		}
	}
	return s.rc.Read(func(fd uintptr) bool {
		s.cbFD, s.inCB = fd, true
		done := step()
		s.inCB = false
		return done
	})
}

// waitRead waits (loop mode) until the socket may be readable.
func (s *sysConn) waitRead() error { return s.waitReady(false) }

// waitWritable waits (loop mode) until the socket may be writable.
func (s *sysConn) waitWritable() error { return s.waitReady(true) }

// waitReady waits (loop mode) for readiness in one direction: at once if
// an edge came while nobody waited, else until the loop sees one or the
// direction's deadline passes.
func (s *sysConn) waitReady(write bool) error {
	ready, dl := &s.rready, s.rdl
	if write {
		ready, dl = &s.wready, s.wdl
	}
	if *ready {
		*ready = false
		return nil
	}
	if !dl.IsZero() && !s.lp.now.Before(dl) {
		return os.ErrDeadlineExceeded
	}
	return s.lp.park(s, write, dl)
}

// newSysConn wraps a *net.TCPConn; any other connection is returned as is.
func newSysConn(c net.Conn) net.Conn {
	if s := newRawConn(c); s != nil {
		return s
	}
	return c
}

// newRawConn wraps a *net.TCPConn; nil for any other connection.
func newRawConn(c net.Conn) *sysConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &sysConn{nc: c, rc: rc, laddr: c.LocalAddr(), raddr: c.RemoteAddr(), hidx: -1}
	s.bindCallbacks()
	return s
}

// newLoopSocket wraps a socket an event loop accepted or connected (not
// yet in the loop: see eventLoop.adopt). Its poller-mode callbacks are
// made only if it leaves the loop (toPoller).
func newLoopSocket(fd int, raddr net.Addr) *sysConn {
	return &sysConn{fd: fd, raddr: raddr, hidx: -1}
}

// bindCallbacks makes the RawConn callbacks of poller mode once.
func (s *sysConn) bindCallbacks() {
	s.readFn, s.writeFn, s.sendFn = s.doRead, s.doWrite, s.doSendRead
}

func (s *sysConn) doRead(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)), 0, 0, 0)
		switch errno {
		case 0:
			s.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			s.rerr = errno
			return true
		}
	}
}

// doSendRead sends pending, then waits (returns false) without receiving;
// once pending is gone it receives as doRead. A send that cannot complete
// at once (full socket buffer) leaves the rest in pending for Read to send
// the ordinary way.
func (s *sysConn) doSendRead(fd uintptr) bool {
	for len(s.pending) > 0 {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&s.pending[0])), uintptr(len(s.pending)), syscall.MSG_NOSIGNAL, 0, 0)
		switch errno {
		case 0:
			s.pending = s.pending[n:]
			if len(s.pending) == 0 {
				return false // wait for the response
			}
		case syscall.EINTR:
		case syscall.EAGAIN:
			s.sendBlocked = true
			return true
		default:
			s.pending = nil
			s.rerr = errno
			return true
		}
	}
	return s.doRead(fd)
}

func (s *sysConn) doWrite(fd uintptr) bool {
	for len(s.wbuf) > 0 {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&s.wbuf[0])), uintptr(len(s.wbuf)), syscall.MSG_NOSIGNAL, 0, 0)
		switch errno {
		case 0:
			s.wn += int(n)
			s.wbuf = s.wbuf[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.werr = errno
			return true
		}
	}
	return true
}

// Read reads like net.Conn.Read: io.EOF when the peer closed, the poller's
// errors (deadline exceeded, closed) as they are.
func (s *sysConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.lp != nil {
		return s.loopRead(p)
	}
	s.rbuf, s.rn, s.rerr = p, 0, nil
	var err error
	switch {
	case s.inCB:
		if !s.readFn(s.cbFD) {
			err = errWouldBlock
		}
	case s.pending != nil:
		s.sendBlocked = false
		err = s.rc.Read(s.sendFn)
		if err == nil && s.sendBlocked {
			// The rest goes out the ordinary way; then an ordinary
			// receive (which tries before it waits).
			rest := s.pending
			s.pending = nil
			if _, werr := s.Write(rest); werr != nil {
				s.rbuf = nil
				return 0, werr
			}
			s.rbuf, s.rn, s.rerr = p, 0, nil
			err = s.rc.Read(s.readFn)
		}
		s.pending = nil
	default:
		err = s.rc.Read(s.readFn)
	}
	n, rerr := s.rn, s.rerr
	s.rbuf = nil
	switch {
	case err == errWouldBlock:
		return 0, err
	case err != nil:
		return 0, s.opError("read", err)
	case rerr != nil:
		return 0, s.opError("read", rerr)
	case n == 0:
		return 0, io.EOF
	}
	s.lastShort = n < len(p)
	return n, nil
}

// Write writes all of p unless an error (or deadline) stops it.
func (s *sysConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.lp != nil {
		return s.loopWrite(p)
	}
	s.wbuf, s.wn, s.werr = p, 0, nil // MSG_NOSIGNAL: EPIPE, never SIGPIPE
	err := s.rc.Write(s.writeFn)
	n, werr := s.wn, s.werr
	s.wbuf = nil
	switch {
	case err != nil:
		return n, s.opError("write", err)
	case werr != nil:
		return n, s.opError("write", werr)
	}
	return n, nil
}

func (s *sysConn) opError(op string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.laddr, Addr: s.raddr, Err: err}
}

// loopRead is Read in loop mode. A queued request (pending) is sent
// first; the response cannot be there before it, so the first receive
// waits for readiness.
func (s *sysConn) loopRead(p []byte) (int, error) {
	if s.unread {
		s.unread = false
		if err := s.waitRead(); err != nil {
			return 0, s.opError("read", err)
		}
	}
	if s.pending != nil {
		req := s.pending
		s.pending = nil
		s.rready = false
		if _, err := s.loopWrite(req); err != nil {
			return 0, err
		}
		if err := s.waitRead(); err != nil {
			return 0, s.opError("read", err)
		}
	}
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(s.fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
		switch errno {
		case 0:
			if n == 0 {
				return 0, io.EOF
			}
			s.lastShort = int(n) < len(p)
			return int(n), nil
		case syscall.EINTR:
		case syscall.EAGAIN:
			if s.inCB {
				return 0, errWouldBlock
			}
			if err := s.waitRead(); err != nil {
				return 0, s.opError("read", err)
			}
		default:
			return 0, s.opError("read", errno)
		}
	}
}

// loopWrite is Write in loop mode.
func (s *sysConn) loopWrite(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		b := p[written:]
		n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_NOSIGNAL, 0, 0)
		switch errno {
		case 0:
			written += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			if err := s.waitWritable(); err != nil {
				return written, s.opError("write", err)
			}
		default:
			return written, s.opError("write", errno)
		}
	}
	return written, nil
}

// toLoop moves the socket from Go's poller into loop l: the descriptor is
// duplicated and the poller's connection closed, which takes it out of
// the poller's epoll set; rdl and wdl are its deadlines there (see
// keepDeadlines). It runs on l's goroutine.
func (s *sysConn) toLoop(l *eventLoop) error {
	fd, err := dupSocket(s.rc)
	if err != nil {
		return err
	}
	s.fd = fd
	if err := l.adopt(s); err != nil {
		_ = syscall.Close(fd)
		return err
	}
	_ = s.nc.Close()
	s.nc, s.rc = nil, nil
	return nil
}

// dupSocket duplicates a socket's descriptor (close-on-exec). The
// duplicate shares the socket's file status flags: it is non-blocking as
// Go's poller made the socket.
func dupSocket(rc syscall.RawConn) (int, error) {
	fd := -1
	var dupErr error
	if err := rc.Control(func(f uintptr) {
		r, _, errno := syscall.RawSyscall(syscall.SYS_FCNTL, f, syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			dupErr = errno
			return
		}
		fd = int(r)
	}); err != nil {
		return -1, err
	}
	if dupErr != nil {
		return -1, os.NewSyscallError("fcntl", dupErr)
	}
	return fd, nil
}

// accept4 accepts a connection waiting on the non-blocking listener lfd
// (non-blocking and close-on-exec) and returns its peer's address, reading
// the kernel's sockaddr in place: syscall.Accept4 allocates a Sockaddr for
// every connection.
func accept4(lfd int) (int, netip.AddrPort, error) {
	var rsa syscall.RawSockaddrAny
	size := uint32(syscall.SizeofSockaddrAny)
	fd, _, errno := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&size)),
		syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, netip.AddrPort{}, errno
	}
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		return int(fd), netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), networkOrder(sa.Port)), nil
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		// An IPv4 client of a dual-stack listener reads as ::ffff:a.b.c.d;
		// as in net's addresses it is a.b.c.d (X-Forwarded-For, ACLs).
		addr := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 {
			addr = addr.WithZone(zoneName(sa.Scope_id))
		}
		return int(fd), netip.AddrPortFrom(addr, networkOrder(sa.Port)), nil
	}
	return int(fd), netip.AddrPort{}, nil
}

// networkOrder reads a port the kernel stored in network byte order.
func networkOrder(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// zoneName names an IPv6 scope (a link-local address's interface) as net
// does: the interface's name, or its index when it has none.
func zoneName(id uint32) string {
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		return ifi.Name
	}
	return strconv.Itoa(int(id))
}

// sockaddrTCP converts a socket address (getsockname's) to a TCPAddr.
func sockaddrTCP(sa syscall.Sockaddr) *net.TCPAddr {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(append([]byte(nil), a.Addr[:]...)), Port: a.Port}
	case *syscall.SockaddrInet6:
		zone := ""
		if a.ZoneId != 0 {
			zone = zoneName(a.ZoneId)
		}
		return &net.TCPAddr{IP: net.IP(append([]byte(nil), a.Addr[:]...)), Port: a.Port, Zone: zone}
	}
	return &net.TCPAddr{}
}

// toPoller moves a loop-mode socket back into Go's poller (for a
// connection handed to goroutines: WebSocket tunnels, h2c), keeping its
// deadlines. It runs on the loop's goroutine.
func (s *sysConn) toPoller() error {
	if s.lp == nil {
		return nil
	}
	s.lp.unregister(s)
	f := os.NewFile(uintptr(s.fd), "")
	nc, err := net.FileConn(f) // duplicates the descriptor
	_ = f.Close()
	s.lp, s.fd, s.waiter, s.writer, s.cont = nil, -1, nil, nil, nil
	if err != nil {
		return err
	}
	if s.laddr == nil {
		s.laddr = nc.LocalAddr()
	}
	rc, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		_ = nc.Close()
		return err
	}
	s.nc, s.rc = nc, rc
	s.bindCallbacks()
	_ = nc.SetReadDeadline(s.rdl)
	_ = nc.SetWriteDeadline(s.wdl)
	return nil
}

// Close closes the socket (in loop mode, on the loop's goroutine).
func (s *sysConn) Close() error {
	if s.lp == nil {
		if s.nc == nil {
			return net.ErrClosed
		}
		return s.nc.Close()
	}
	// No other descriptor refers to the socket (a loop's sockets are
	// accepted by it or duplicated from a closed connection): closing it
	// takes it out of the epoll set without an epoll_ctl call.
	s.lp.forget(s)
	err := syscall.Close(s.fd)
	s.lp, s.fd = nil, -1
	s.rdl, s.wdl = time.Time{}, time.Time{}
	if err != nil {
		return s.opError("close", err)
	}
	return nil
}

// abort shuts a loop-mode socket down and wakes its waiter (server
// shutdown); its owner then closes it.
func (s *sysConn) abort() {
	if s.lp == nil {
		if s.nc != nil {
			_ = s.nc.Close()
		}
		return
	}
	_ = syscall.Shutdown(s.fd, syscall.SHUT_RDWR)
	s.lp.wakeWriter(s, net.ErrClosed)
	s.lp.wake(s, net.ErrClosed)
}

// CloseWrite shuts down the sending side (WebSocket tunnels).
func (s *sysConn) CloseWrite() error {
	if s.lp != nil {
		return s.opError("shutdown", syscall.Shutdown(s.fd, syscall.SHUT_WR))
	}
	if tc, ok := s.nc.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return nil
}

// LocalAddr is the socket's address (read from the socket when a loop
// accepted it: most connections never need it).
func (s *sysConn) LocalAddr() net.Addr {
	if s.laddr == nil && s.lp != nil {
		if sa, err := syscall.Getsockname(s.fd); err == nil {
			s.laddr = sockaddrTCP(sa)
		}
	}
	return s.laddr
}

func (s *sysConn) RemoteAddr() net.Addr { return s.raddr }

// SetDeadline sets both deadlines.
func (s *sysConn) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

// SetReadDeadline is net.Conn's; in loop mode (on the loop's goroutine) a
// deadline already past wakes a waiting read, as in Go's poller.
func (s *sysConn) SetReadDeadline(t time.Time) error {
	if s.lp == nil {
		if s.nc == nil {
			return net.ErrClosed
		}
		if s.keepDeadlines {
			s.rdl = t
		}
		return s.nc.SetReadDeadline(t)
	}
	s.rdl = t
	s.deadlineSet(false, t)
	return nil
}

// SetWriteDeadline is SetReadDeadline for writes.
func (s *sysConn) SetWriteDeadline(t time.Time) error {
	if s.lp == nil {
		if s.nc == nil {
			return net.ErrClosed
		}
		if s.keepDeadlines {
			s.wdl = t
		}
		return s.nc.SetWriteDeadline(t)
	}
	s.wdl = t
	s.deadlineSet(true, t)
	return nil
}

// deadlineSet wakes (loop mode) a wait in that direction whose new
// deadline t has already passed, as Go's poller does.
func (s *sysConn) deadlineSet(write bool, t time.Time) {
	if t.IsZero() || time.Now().Before(t) {
		return
	}
	if write && s.writer != nil {
		s.lp.wakeWriter(s, os.ErrDeadlineExceeded)
	}
	if s.waiter != nil && s.waitWrite == write || s.cont != nil && !write {
		s.lp.wake(s, os.ErrDeadlineExceeded)
	}
}

// peekClosed reports whether an idle connection can no longer carry a
// request: a non-blocking peek finds end of stream, an error, or (unless
// tlsConn, where it can be a session ticket) bytes the peer sent unasked.
func (s *sysConn) peekClosed(tlsConn bool) bool {
	peek := func(fd uintptr) bool {
		var b [1]byte
		n, _, errno := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errno == syscall.EAGAIN:
			return false
		case errno != nil || n == 0:
			return true
		}
		return !tlsConn
	}
	if s.lp != nil {
		return peek(uintptr(s.fd))
	}
	closed := false
	err := s.rc.Read(func(fd uintptr) bool {
		closed = peek(fd)
		return true
	})
	return closed || err != nil
}
