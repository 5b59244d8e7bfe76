package server

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
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
	net.Conn
	rc syscall.RawConn

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

	// lastShort is true when the last successful receive did not fill
	// the buffer: the socket was drained at that moment.
	lastShort bool
	// inCB and cbFD are set while loop's step runs inside RawConn.Read:
	// Read then receives directly and reports errWouldBlock instead of
	// waiting (the caller returns to the poller to wait).
	inCB bool
	cbFD uintptr
}

// errWouldBlock is what Read returns inside loop when no data is there.
var errWouldBlock = errors.New("would block")

// loop runs step inside RawConn.Read until it returns true; when it
// returns false the goroutine waits for readability (without the
// readiness reset that starts every RawConn.Read) and step runs again.
func (s *sysConn) loop(step func() bool) error {
	return s.rc.Read(func(fd uintptr) bool {
		s.cbFD, s.inCB = fd, true
		done := step()
		s.inCB = false
		return done
	})
}

// newSysConn wraps a *net.TCPConn; any other connection is returned as is.
func newSysConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &sysConn{Conn: c, rc: rc}
	s.readFn, s.writeFn, s.sendFn = s.doRead, s.doWrite, s.doSendRead
	return s
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
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}
