package server

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/tcptest"
)

// TestPickLoopSpreads: connections the kernel hands to one loop are
// spread so that every loop serves as many; a loop keeps the ones it
// accepts while it serves no more than the others.
func TestPickLoopSpreads(t *testing.T) {
	loops := []*eventLoop{{}, {}, {}}
	s := &h1Server{loops: loops}
	for range 30 {
		s.pickLoop(loops[0]) // a burst, all accepted by loop 0
	}
	for i, l := range loops {
		if n := l.clients.Load(); n != 10 {
			t.Errorf("loop %d serves %d connections, want 10", i, n)
		}
	}
	loops[2].clients.Add(-4) // connections on loop 2 closed
	for range 4 {
		if to := s.pickLoop(loops[1]); to != loops[2] {
			t.Fatalf("a connection went to loop %p, not to the least busy one", to)
		}
	}
	if to := s.pickLoop(loops[1]); to != loops[1] {
		t.Fatal("with all loops equally busy, the accepting loop should keep the connection")
	}
}

// TestYieldToPollerRuns: a loop yielding to the scheduler over and over
// always gets control back (a lost eventfd wake-up would leave it parked
// for good) while goroutines on another P poll the network all the time
// (the race that loses a wake-up needs another thread's poll between the
// loop's signal and its wait).
func TestYieldToPollerRuns(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	l, err := newEventLoop(newCoarseClock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	echo := tcptest.Serve(t, func(c net.Conn) { // a goroutine-served socket: echoes until closed
		defer c.Close()
		_, _ = io.Copy(c, c)
	})
	c, err := net.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	echoErr := make(chan error, 1)
	go func() { // keeps the other P polling the network
		buf := make([]byte, 1)
		for i := 0; ; i++ {
			select {
			case <-stop:
				echoErr <- nil
				return
			default:
			}
			if _, err := c.Write([]byte{byte(i)}); err != nil {
				echoErr <- err
				return
			}
			if _, err := io.ReadFull(c, buf); err != nil || buf[0] != byte(i) {
				echoErr <- fmt.Errorf("echo %d: got %v, %v", i, buf, err)
				return
			}
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50000 {
			l.yieldToPoller()
		}
	}()
	select {
	case <-done:
		l.closeDescriptors() // not on failure: the parked yield would panic
	case <-time.After(30 * time.Second):
		t.Fatal("the loop did not get control back after yielding to the scheduler")
	}
	close(stop)
	if err := <-echoErr; err != nil {
		t.Fatal(err)
	}
}

// TestHoldSlotsLeaveAP: no more than max loops hold at once, a slot given
// back can be taken again, and without slots (nil, or one P) none holds.
func TestHoldSlotsLeaveAP(t *testing.T) {
	h := &holdSlots{max: 2}
	if !h.take() || !h.take() {
		t.Fatal("two slots of two were not free")
	}
	if h.take() {
		t.Fatal("a third loop got a slot of two")
	}
	h.give()
	if !h.take() {
		t.Fatal("a slot given back could not be taken again")
	}
	if h.take() {
		t.Fatal("a slot was free with both taken")
	}
	var none *holdSlots
	if none.take() {
		t.Fatal("a loop without slots got one")
	}
	if (&holdSlots{max: 0}).take() {
		t.Fatal("a loop got a slot with one P (max 0)")
	}
}

// TestDetachedSocketWakes: a socket waiting without a coroutine (detach)
// gets its continuation run once, when it turns readable, when its read
// deadline passes, or when its deadline is moved into the past (as a
// server's drain does), with the reason in wakeErr.
func TestDetachedSocketWakes(t *testing.T) {
	l, err := newEventLoop(newCoarseClock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	go l.run()
	defer l.stop()
	for _, tc := range []struct {
		name    string
		timeout time.Duration // read deadline after detaching (0: none)
		act     func(s *sysConn, peer int)
		want    error
	}{
		{"readable", 0, func(_ *sysConn, peer int) { _, _ = syscall.Write(peer, []byte("x")) }, nil},
		{"deadline passes", 50 * time.Millisecond, func(*sysConn, int) {}, os.ErrDeadlineExceeded},
		{"deadline moved to now", time.Hour, func(s *sysConn, _ int) {
			l.post(func() { _ = s.SetReadDeadline(time.Now()) })
		}, os.ErrDeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = syscall.Close(fds[1]) }()
			s := newLoopSocket(fds[0], nil)
			woken := make(chan error, 2)
			ready := make(chan error, 1)
			l.post(func() {
				if err := l.adopt(s); err != nil {
					ready <- err
					return
				}
				s.rready = false
				if tc.timeout > 0 {
					s.rdl = time.Now().Add(tc.timeout)
				}
				l.detach(s, func() { woken <- s.wakeErr })
				ready <- nil
			})
			if err := <-ready; err != nil {
				t.Fatal(err)
			}
			defer l.post(func() { _ = s.Close() })
			tc.act(s, fds[1])
			select {
			case err := <-woken:
				if err != tc.want {
					t.Fatalf("woken with %v, want %v", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the continuation never ran")
			}
			select {
			case err := <-woken:
				t.Fatalf("the continuation ran a second time (%v)", err)
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
}

// TestEarliest: the zero time means none, on either side.
func TestEarliest(t *testing.T) {
	t1 := time.Unix(100, 0)
	t2 := time.Unix(200, 0)
	for _, tc := range []struct{ a, b, want time.Time }{
		{time.Time{}, time.Time{}, time.Time{}},
		{time.Time{}, t1, t1},
		{t1, time.Time{}, t1},
		{t1, t2, t1},
		{t2, t1, t1},
	} {
		if got := earliest(tc.a, tc.b); !got.Equal(tc.want) {
			t.Errorf("earliest(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestAccept4PeerAddress: accept4 reports the peer as net's own accept
// does (an IPv4 client of a dual-stack listener as a.b.c.d, not
// ::ffff:a.b.c.d), for the addresses a loop-served connection shows
// upstream.
func TestAccept4PeerAddress(t *testing.T) {
	for _, tc := range []struct{ network, listen, dial string }{
		{"tcp4", "127.0.0.1:0", "127.0.0.1"},
		{"tcp", "[::]:0", "127.0.0.1"},
		{"tcp6", "[::1]:0", "::1"},
	} {
		t.Run(tc.listen+" from "+tc.dial, func(t *testing.T) {
			ln, err := net.Listen(tc.network, tc.listen)
			if err != nil {
				t.Skipf("listen %s: %v", tc.listen, err)
			}
			defer ln.Close()
			rc, err := ln.(*net.TCPListener).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			c, err := net.Dial("tcp", net.JoinHostPort(tc.dial, port))
			if err != nil {
				t.Skipf("dial %s: %v", tc.dial, err)
			}
			defer c.Close()
			var (
				fd   int
				peer netip.AddrPort
			)
			deadline := time.Now().Add(5 * time.Second)
			for {
				var aerr error
				if err := rc.Control(func(lfd uintptr) { fd, peer, aerr = accept4(int(lfd)) }); err != nil {
					t.Fatal(err)
				}
				if aerr == nil {
					break
				}
				if aerr != syscall.EAGAIN || time.Now().After(deadline) {
					t.Fatalf("accept4: %v", aerr)
				}
				time.Sleep(5 * time.Millisecond)
			}
			defer syscall.Close(fd)
			if want := c.LocalAddr().String(); peer.String() != want {
				t.Errorf("peer %s, want %s (the client's own address)", peer, want)
			}
			if got, want := net.TCPAddrFromAddrPort(peer).String(), c.LocalAddr().String(); got != want {
				t.Errorf("as a TCPAddr %s, want %s", got, want)
			}
			flags, err := fcntlFlags(fd)
			if err != nil || flags&syscall.O_NONBLOCK == 0 {
				t.Errorf("accepted socket not non-blocking (flags %#x, %v)", flags, err)
			}
		})
	}
}

// fcntlFlags returns a descriptor's file status flags.
func fcntlFlags(fd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
