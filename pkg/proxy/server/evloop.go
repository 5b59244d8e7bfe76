package server

import (
	"errors"
	"fmt"
	"iter"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// An eventLoop serves client connections (and their upstream connections)
// from one goroutine, as an nginx worker does: it waits in its own epoll
// set and runs each connection's code as a coroutine (iter.Pull) that it
// resumes when that connection's socket is ready. The connection code is
// the same blocking-style code the goroutine-per-connection server runs;
// only sysConn's waits differ: instead of parking in Go's network poller
// (a scheduler round trip per wait, two per proxied request) a coroutine
// yields straight back to its loop. A listener runs one loop per
// GOMAXPROCS.
//
// Sockets in a loop are raw file descriptors outside Go's poller, owned by
// the loop goroutine: every operation on them (I/O, deadlines, closing)
// happens on it, either from a coroutine or from a function posted with
// post. Work that may block in Go's scheduler for long (dialing, DNS) is
// run with offload, in a goroutine, while the coroutine waits.
type eventLoop struct {
	epfd int
	// epf is epfd in Go's poller: an idle loop parks its goroutine there
	// (epfd is readable when it has events) instead of blocking its
	// thread in epoll_wait, which the scheduler's monitor would keep
	// taking the P from.
	epf  *os.File
	eprc syscall.RawConn
	evfd int
	// conns maps a descriptor to its socket (indexed by fd: descriptors
	// are small and dense, and the lookup runs for every event).
	conns []*sysConn
	// cur is the coroutine running now (nil in the loop's own code).
	cur *coro
	// idle holds coroutines waiting for a connection to serve.
	idle []*coro
	// ready holds suspended coroutines that another one woke (schedule),
	// resumed after the events at hand; spare is ready's other buffer.
	ready, spare []*coro
	// clients counts the client connections the loop serves (read by
	// the other loops of its listener to spread new connections).
	clients atomic.Int32
	// lfd is the listening socket the loop accepts from (-1: none;
	// connections are then handed to it), accept what runs when it is
	// readable; acceptOff is set while accepting pauses (pauseAccept).
	lfd       int
	accept    func()
	acceptOff bool
	// timers holds the sockets with a deadline, earliest first.
	timers []*sysConn
	// offloads counts the goroutines running offloaded work: while
	// there are any the loop waits only in Go's poller, which they need.
	offloads int
	// pool keeps this loop's idle upstream connections.
	pool *pool
	// offloadFn is offload, made once for plugin.Context.Offload.
	offloadFn func(func())
	// now is when the last wait for events returned: the clock for
	// deadlines (a loop iteration is short).
	now time.Time
	// polled is when the loop last waited in Go's poller or yielded to
	// it (see pollerEvery).
	polled time.Time
	// yfd is an eventfd in Go's poller (yrc) that yieldToPoller signals
	// itself through.
	yfd int
	yf  *os.File
	yrc syscall.RawConn
	// holds lets the loop wait on its own thread for longer than
	// holdWait while another P is left to Go's scheduler (nil: never).
	holds *holdSlots
	// nextShed is when the oldest idle client connection (sysConn.idleAt)
	// is due to be shed (zero: none is idle).
	nextShed time.Time

	mu       sync.Mutex
	queue    []func()
	signaled bool
	closed   bool // the loop ended: its eventfd is closed
	stopping bool
	done     chan struct{}
}

// coro is one coroutine, running one connection's code (job) at a time.
// One that finished its job waits in its loop's idle list for the next
// connection: its stack, grown to what serving a request takes, is reused
// instead of grown again from the initial size (growing copies the stack
// several times; it cost about a tenth of the CPU time when every request
// came on a new connection).
type coro struct {
	next  func() (struct{}, bool)
	stop  func()
	yield func(struct{}) bool
	job   func()
}

// maxIdleCoros bounds a loop's idle coroutines (and the stacks they keep).
const maxIdleCoros = 256

func newEventLoop(clock *coarseClock, holds *holdSlots) (_ *eventLoop, err error) {
	l := &eventLoop{epfd: -1, evfd: -1, yfd: -1, lfd: -1, holds: holds, done: make(chan struct{})}
	l.offloadFn = l.offload
	defer func() {
		if err != nil {
			l.closeDescriptors()
		}
	}()
	if l.epfd, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		l.epfd = -1
		return nil, fmt.Errorf("event loop: epoll_create1: %w", err)
	}
	if l.evfd, err = newEventFD(); err != nil {
		return nil, err
	}
	if l.yfd, err = newEventFD(); err != nil {
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.evfd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, l.evfd, &ev); err != nil {
		return nil, fmt.Errorf("event loop: epoll_ctl: %w", err)
	}
	if err := syscall.SetNonblock(l.epfd, true); err != nil {
		return nil, fmt.Errorf("event loop: %w", err)
	}
	// Both files take over their descriptor (closeDescriptors closes the
	// file once it exists).
	l.epf = os.NewFile(uintptr(l.epfd), "epoll")
	if l.eprc, err = l.epf.SyscallConn(); err != nil {
		return nil, fmt.Errorf("event loop: %w", err)
	}
	l.yf = os.NewFile(uintptr(l.yfd), "eventfd")
	if l.yrc, err = l.yf.SyscallConn(); err != nil {
		return nil, fmt.Errorf("event loop: %w", err)
	}
	l.pool = newPool(clock)
	l.pool.loop = l
	return l, nil
}

// newEventFD returns a non-blocking eventfd.
func newEventFD() (int, error) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return -1, fmt.Errorf("event loop: eventfd2: %w", errno)
	}
	return int(r), nil
}

// closeDescriptors closes the loop's epoll set and eventfds.
func (l *eventLoop) closeDescriptors() {
	if l.epf != nil {
		_ = l.epf.Close()
	} else if l.epfd >= 0 {
		_ = syscall.Close(l.epfd)
	}
	if l.yf != nil {
		_ = l.yf.Close()
	} else if l.yfd >= 0 {
		_ = syscall.Close(l.yfd)
	}
	if l.evfd >= 0 {
		_ = syscall.Close(l.evfd)
	}
}

// post runs fn on the loop goroutine (from any goroutine); after the loop
// ended, fn is dropped.
func (l *eventLoop) post(fn func()) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.queue = append(l.queue, fn)
	wake := !l.signaled
	l.signaled = true
	l.mu.Unlock()
	if wake {
		one := uint64(1)
		_, _, _ = syscall.RawSyscall(syscall.SYS_WRITE, uintptr(l.evfd), uintptr(unsafe.Pointer(&one)), 8)
	}
}

// stop ends run once the posted work before it is done; the loop then
// closes its idle upstream connections and its descriptors.
func (l *eventLoop) stop() {
	l.post(func() { l.stopping = true })
	<-l.done
}

// spawn runs fn in a coroutine (an idle one when there is one) until its
// first wait.
func (l *eventLoop) spawn(fn func()) { l.resume(l.coroFor(fn)) }

// spawnLater is spawn from a coroutine: the new one starts after the
// events at hand (one coroutine cannot resume another).
func (l *eventLoop) spawnLater(fn func()) { l.schedule(l.coroFor(fn)) }

// coroFor returns a coroutine (an idle one when there is one) that runs
// fn once resumed.
func (l *eventLoop) coroFor(fn func()) *coro {
	var co *coro
	if n := len(l.idle); n > 0 {
		co = l.idle[n-1]
		l.idle[n-1] = nil
		l.idle = l.idle[:n-1]
	} else {
		co = &coro{}
		co.next, co.stop = iter.Pull(func(yield func(struct{}) bool) {
			co.yield = yield
			for {
				co.job()
				co.job = nil
				if l.stopping || len(l.idle) >= maxIdleCoros {
					return
				}
				l.idle = append(l.idle, co)
				for co.job == nil { // only spawn resumes an idle coroutine
					if !yield(struct{}{}) {
						return // stopIdle
					}
				}
			}
		})
	}
	co.job = fn
	return co
}

// stopIdle ends the idle coroutines (their goroutines exit).
func (l *eventLoop) stopIdle() {
	idle := l.idle
	l.idle = nil
	for _, co := range idle {
		co.stop()
	}
}

func (l *eventLoop) resume(co *coro) {
	l.cur = co
	co.next()
	l.cur = nil
}

// park suspends the running coroutine until s is ready in the direction
// asked, its deadline passes (os.ErrDeadlineExceeded) or it is aborted.
func (l *eventLoop) park(s *sysConn, write bool, dl time.Time) error {
	co := l.cur
	if co == nil {
		return errOutsideLoop
	}
	if !write && s.waiter != nil && s.waitWrite {
		// Another coroutine waits to write: it moves to the writer's
		// place.
		s.writer, s.writerErr, s.waiter = s.waiter, nil, nil
	}
	slot, woke := &s.waiter, &s.wakeErr
	if write && s.waiter != nil && !s.waitWrite {
		slot, woke = &s.writer, &s.writerErr // another coroutine waits to read
	} else {
		s.waitWrite = write
	}
	*slot, *woke = co, nil
	if !dl.IsZero() {
		l.armTimer(s, dl)
	}
	co.yield(struct{}{})
	err := *woke
	*woke = nil
	return err
}

// wakeWriter resumes s's writer, if any, with err.
func (l *eventLoop) wakeWriter(s *sysConn, err error) {
	if co := s.writer; co != nil {
		s.writer, s.writerErr = nil, err
		l.resume(co)
	}
}

// suspend parks the running coroutine until schedule resumes it.
func (l *eventLoop) suspend() { l.cur.yield(struct{}{}) }

// schedule has the loop resume co, a suspended coroutine, after the
// events at hand. Coroutines wake each other this way: one coroutine
// cannot resume another directly.
func (l *eventLoop) schedule(co *coro) { l.ready = append(l.ready, co) }

// runReady resumes the scheduled coroutines, and those they schedule.
func (l *eventLoop) runReady() {
	for len(l.ready) > 0 {
		batch := l.ready
		l.ready = l.spare[:0]
		for i, co := range batch {
			batch[i] = nil
			l.resume(co)
		}
		l.spare = batch[:0]
	}
}

// offload runs fn in a goroutine while the running coroutine waits, for
// work that blocks in Go's scheduler (dialing). Outside a coroutine fn
// just runs. A panic in fn is raised again in the coroutine (a handler's
// http.ErrAbortHandler ends its request there).
func (l *eventLoop) offload(fn func()) {
	co := l.cur
	if co == nil {
		fn()
		return
	}
	l.offloads++
	var panicked any
	go func() {
		defer func() {
			panicked = recover()
			l.post(func() {
				l.offloads--
				l.resume(co)
			})
		}()
		fn()
	}()
	co.yield(struct{}{})
	if panicked != nil {
		panic(panicked)
	}
}

// wake resumes s's waiter, if any, with err; a socket waiting with a
// continuation (detach) gets a coroutine that runs it.
func (l *eventLoop) wake(s *sysConn, err error) {
	co := s.waiter
	if co == nil {
		if fn := s.cont; fn != nil {
			s.cont, s.wakeErr = nil, err
			l.spawn(fn)
		}
		return
	}
	s.waiter, s.wakeErr = nil, err
	l.resume(co)
}

// detach has s wait for reading, or its read deadline, without a
// coroutine: fn runs in one then (s.wakeErr says why). A connection that
// waits long between requests gives its coroutine (and the stack it
// grew) back this way.
func (l *eventLoop) detach(s *sysConn, fn func()) {
	s.cont, s.wakeErr = fn, nil
	if !s.rdl.IsZero() {
		l.armTimer(s, s.rdl)
	}
}

// shedAfter is how long a client connection waits for its next request
// before the loop sheds it: its coroutine and buffers go back for reuse
// (see h1Conn.shed), as nginx frees an idle keep-alive connection's
// buffers. Busy connections never wait that long, so their requests keep
// their coroutine and buffers; a connection used less often pays about a
// coroutine start per request. The shorter it is, the fewer connections
// hold buffers at once when many arrive and go idle together.
const shedAfter = 100 * time.Millisecond

// markIdle records that s, a client connection, waits for its next
// request with nothing buffered.
func (l *eventLoop) markIdle(s *sysConn) {
	s.idleAt = l.now
	l.shedBy(l.now.Add(shedAfter))
}

// shedBy has the loop run shedIdle by t at the latest.
func (l *eventLoop) shedBy(t time.Time) { l.nextShed = earliest(l.nextShed, t) }

// earliest is the earlier of a and b, where the zero time means none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// shedIdle wakes the client connections idle for shedAfter with errShed
// (their code sheds them), sheds the pool's idle upstream connections'
// buffers and schedules the next round.
func (l *eventLoop) shedIdle() {
	var next time.Time
	for _, s := range l.conns {
		if s == nil || s.idleAt.IsZero() || s.waiter == nil || s.waitWrite {
			continue
		}
		if due := s.idleAt.Add(shedAfter); due.After(l.now) {
			next = earliest(next, due)
			continue
		}
		s.idleAt = time.Time{}
		l.wake(s, errShed)
	}
	l.nextShed = earliest(next, l.pool.shedIdle(l.now))
}

// adopt makes s (fd set) one of l's sockets, readiness unknown (the first
// wait tries the socket).
func (l *eventLoop) adopt(s *sysConn) error {
	s.lp = l
	if err := l.register(s); err != nil {
		s.lp = nil
		return err
	}
	s.rready, s.wready = true, true
	return nil
}

// register adds s (in loop mode, fd set) to the epoll set, edge-triggered
// as Go's poller registers sockets.
func (l *eventLoop) register(s *sysConn) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET, Fd: int32(s.fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	if s.fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*sysConn, s.fd+1-len(l.conns))...)
	}
	l.conns[s.fd] = s
	s.hidx = -1
	return nil
}

// unregister removes s from the epoll set and the timers.
func (l *eventLoop) unregister(s *sysConn) {
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, s.fd, nil)
	l.forget(s)
}

// forget is unregister for a socket about to be closed, which leaves the
// epoll set by itself.
func (l *eventLoop) forget(s *sysConn) {
	if s.fd >= 0 && s.fd < len(l.conns) {
		l.conns[s.fd] = nil
	}
	if s.hidx >= 0 {
		l.removeTimer(s)
	}
}

const (
	epollET        = 1 << 31
	epollExclusive = 1 << 28 // EPOLLEXCLUSIVE
)

// addListener has the loop call accept whenever the listening socket fd
// has connections waiting. fd is in every loop's epoll set, level-
// triggered with EPOLLEXCLUSIVE: a connection wakes one waiting loop (not
// all of them), and one that is not accepted at once is reported again.
func (l *eventLoop) addListener(fd int, accept func()) error {
	if err := l.watchListener(fd); err != nil {
		return err
	}
	l.lfd, l.accept, l.acceptOff = fd, accept, false
	return nil
}

// watchListener adds the listening socket fd to the epoll set.
func (l *eventLoop) watchListener(fd int) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollExclusive, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// removeListener stops accepting.
func (l *eventLoop) removeListener() {
	if l.lfd < 0 {
		return
	}
	if !l.acceptOff {
		_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, l.lfd, nil)
	}
	l.lfd, l.accept, l.acceptOff = -1, nil, false
}

// pauseAccept stops accepting for d (after an accept failed for want of
// descriptors or memory, as nginx does), then resumes.
func (l *eventLoop) pauseAccept(d time.Duration) {
	if l.lfd < 0 || l.acceptOff {
		return
	}
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, l.lfd, nil)
	l.acceptOff = true
	fd := l.lfd
	time.AfterFunc(d, func() {
		l.post(func() {
			if l.lfd != fd || !l.acceptOff || l.stopping {
				return
			}
			if l.watchListener(fd) == nil {
				l.acceptOff = false
			}
		})
	})
}

// run serves until stop.
func (l *eventLoop) run() {
	defer close(l.done)
	events := make([]syscall.EpollEvent, 256)
	for !l.stopping {
		var n int
		var err error
		if l.now.Sub(l.polled) >= pollerEvery {
			l.yieldToPoller()
		}
		if len(l.ready) > 0 {
			l.runReady()
		}
		if n, err = epollPoll(l.epfd, events); n == 0 && err == nil && len(l.ready) == 0 {
			// Poll without blocking first: under load there are events.
			n, err = l.wait(events)
		}
		if err != nil && err != syscall.EINTR {
			panic(fmt.Sprintf("event loop: epoll_wait: %v", err))
		}
		l.now = time.Now()
		for i := 0; i < n; i++ {
			ev := &events[i]
			fd := int(ev.Fd)
			if fd == l.evfd {
				l.runPosted()
				continue
			}
			if fd == l.lfd {
				l.accept()
				continue
			}
			if fd < 0 || fd >= len(l.conns) {
				continue
			}
			s := l.conns[fd]
			if s == nil {
				continue
			}
			readable := ev.Events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
			writable := ev.Events&(syscall.EPOLLOUT|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
			if s.writer != nil && writable {
				l.wakeWriter(s, nil)
				if l.conns[fd] != s {
					continue // closed meanwhile
				}
				writable = false
			}
			if s.waiter != nil && ((s.waitWrite && writable) || (!s.waitWrite && readable)) {
				if s.waitWrite {
					s.rready = s.rready || readable
				} else {
					s.wready = s.wready || writable
				}
				l.wake(s, nil)
				continue
			}
			if s.cont != nil && readable {
				s.wready = s.wready || writable
				l.wake(s, nil)
				continue
			}
			s.rready = s.rready || readable
			s.wready = s.wready || writable
		}
		if len(l.timers) > 0 {
			l.expireTimers(l.now)
		}
		if !l.nextShed.IsZero() && !l.now.Before(l.nextShed) {
			l.shedIdle()
		}
	}
	l.stopIdle()
	l.pool.closeAll()
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.closeDescriptors()
}

// holdWait bounds how long an idle loop waits in epoll_wait on its own
// thread before it parks in Go's poller.
const holdWait = time.Millisecond

// wait waits for events when a poll found none. First it lets the
// goroutines queued behind the loop run (runtime.Gosched). Then, unless a
// goroutine works for the loop (offload), it blocks in epoll_wait on its
// own thread for up to holdWait (longHoldWait with a holdSlots slot),
// keeping its P: the kernel then wakes this thread directly when one of
// its sockets is ready, as it wakes an nginx worker. Parking in Go's
// poller instead routes every wake-up through the one thread that polls
// for the whole process and a hand-off to an idle P, which measured about
// 10% fewer requests per second under load (the CPUs sat idle 8% of the
// time, against 5%). A loop idle for longer parks in Go's poller, which
// frees its P, until epfd is readable or the first timer is due.
func (l *eventLoop) wait(events []syscall.EpollEvent) (int, error) {
	runtime.Gosched()
	// No poll here: epoll_wait returns at once with what arrived
	// meanwhile, and waitInPoller polls before it parks.
	dl := l.wakeBy()
	if l.offloads == 0 {
		hold, long := holdWait, l.holds.take()
		if long {
			hold = longHoldWait
		}
		if !dl.IsZero() {
			hold = min(hold, time.Until(dl))
		}
		var n int
		var err error
		if hold > 0 {
			n, err = epollWaitRaw(l.epfd, events, hold)
		}
		if long {
			l.holds.give()
		}
		if n > 0 || (err != nil && err != syscall.EINTR) {
			return n, err
		}
	}
	return l.waitInPoller(events)
}

// longHoldWait bounds a loop's wait on its own thread while another P is
// left to Go's scheduler (holdSlots).
const longHoldWait = 10 * time.Millisecond

// holdSlots counts the loops (of all listeners) waiting on their own
// thread for longer than holdWait, keeping their P: at most max at once
// (GOMAXPROCS-1), so that one P stays with Go's scheduler, which polls the
// network for the goroutines (Admin API, TLS connections) and runs the
// timers without waiting for a loop. The others wait holdWait, then park
// in Go's poller. Holding only holdWait, a loop of a proxy that is not
// saturated parks after most requests: its thread sleeps twice (the
// timed-out wait, then in Go's scheduler) and is handed its goroutine
// back by the thread that polls, where an nginx worker sleeps once; kiln
// made 2.2 to 2.9 times as many voluntary context switches per request
// as nginx at 200-2,000 requests a second. One loop holding for
// longHoldWait used 4-17% less CPU at 200, 2,000 and 10,000 requests a
// second; with every loop holding that long, Go's scheduler had no P
// left for the Admin API and timers for up to 10 ms.
type holdSlots struct {
	n   atomic.Int32
	max int32
}

// take reserves a slot (false when none is free; h may be nil).
func (h *holdSlots) take() bool {
	if h == nil || h.max <= 0 {
		return false
	}
	if h.n.Add(1) <= h.max {
		return true
	}
	h.n.Add(-1)
	return false
}

func (h *holdSlots) give() { h.n.Add(-1) }

// pollerEvery is how often a loop that never goes idle long enough to
// park lets Go's scheduler poll the network (yieldToPoller). A busy loop
// keeps its P, and Go checks its poller for the goroutines' sockets (Admin
// API, status, dials on goroutines) only from an idle P or its 10 ms
// monitor: with every P held by a busy loop they waited up to that long
// (the Admin API's median was 6.7 ms under saturation).
const pollerEvery = time.Millisecond

// yieldToPoller lets the scheduler poll the network and run the goroutines
// it finds ready, without the loop's thread going to sleep: the loop
// signals its own eventfd in Go's poller and waits for it there. The
// scheduler, finding nothing else to run, polls without blocking and gets
// that readiness along with the goroutines'. (An earlier version parked
// in Go's poller until epfd's next event, bounded by a timer: the thread
// slept and was woken a thousand times a second per loop, which left the
// CPUs idle 1-2 points more and cost about 7% of the requests per second
// in runs one after the other.)
// If another thread polled in between, the wait returns at once: that poll
// found the goroutines' sockets just as well.
func (l *eventLoop) yieldToPoller() {
	signaled := false
	err := l.yrc.Read(func(fd uintptr) bool {
		if !signaled {
			// Signal here, not before Read: Read first clears the
			// readiness the poller may have recorded.
			signaled = true
			one := uint64(1)
			_, _, _ = syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&one)), 8)
			return false
		}
		var buf [8]byte
		_, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), 8)
		return errno != syscall.EAGAIN
	})
	if err != nil {
		panic(fmt.Sprintf("event loop: yielding to the scheduler: %v", err))
	}
	l.polled = time.Now()
}

// wakeBy is when a waiting loop has work without events: its first timer
// or shedding idle connections (zero: none).
func (l *eventLoop) wakeBy() time.Time {
	if len(l.timers) > 0 {
		return earliest(l.nextShed, l.timers[0].hdl)
	}
	return l.nextShed
}

// waitInPoller waits for events in Go's poller (the goroutine parks and
// its P is free), until epfd is readable or the first timer is due.
func (l *eventLoop) waitInPoller(events []syscall.EpollEvent) (int, error) {
	dl := l.wakeBy()
	var n int
	var err error
	_ = l.epf.SetReadDeadline(dl)
	werr := l.eprc.Read(func(uintptr) bool {
		n, err = epollPoll(l.epfd, events)
		return n > 0 || err != nil
	})
	l.polled = time.Now()
	if werr != nil && !errors.Is(werr, os.ErrDeadlineExceeded) {
		panic(fmt.Sprintf("event loop: waiting for events: %v", werr))
	}
	return n, err
}

// epollWaitRaw waits up to d (rounded up to whole milliseconds) for
// events in epoll_wait without telling the scheduler (the thread keeps its
// P; the monitor's preemption signal ends the wait early with EINTR).
func epollWaitRaw(epfd int, events []syscall.EpollEvent, d time.Duration) (int, error) {
	return epollWaitMS(epfd, events, max(int((d+time.Millisecond-1)/time.Millisecond), 1))
}

// epollPoll returns the ready events without waiting.
func epollPoll(epfd int, events []syscall.EpollEvent) (int, error) {
	return epollWaitMS(epfd, events, 0)
}

// epollWaitMS is epoll_pwait(2) with a timeout in milliseconds, made as a
// raw system call.
func epollWaitMS(epfd int, events []syscall.EpollEvent, ms int) (int, error) {
	r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(ms), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

func (l *eventLoop) runPosted() {
	var buf [8]byte
	_, _, _ = syscall.RawSyscall(syscall.SYS_READ, uintptr(l.evfd), uintptr(unsafe.Pointer(&buf[0])), 8)
	l.mu.Lock()
	q := l.queue
	l.queue = nil
	l.signaled = false
	l.mu.Unlock()
	for _, fn := range q {
		fn()
	}
}

// Timers: each socket has at most one entry, keyed by hdl. An entry may
// be earlier than the socket's current deadline (deadlines only move
// forward on the hot path); it is moved when it comes due.

func (l *eventLoop) armTimer(s *sysConn, dl time.Time) {
	switch {
	case s.hidx < 0:
		s.hdl = dl
		s.hidx = len(l.timers)
		l.timers = append(l.timers, s)
		l.timerUp(s.hidx)
	case dl.Before(s.hdl):
		s.hdl = dl
		l.timerUp(s.hidx)
	}
}

func (l *eventLoop) expireTimers(now time.Time) {
	for len(l.timers) > 0 {
		s := l.timers[0]
		if s.hdl.After(now) {
			return
		}
		var dl, wdl time.Time
		if s.waiter != nil {
			dl = s.rdl
			if s.waitWrite {
				dl = s.wdl
			}
		} else if s.cont != nil {
			dl = s.rdl
		}
		if s.writer != nil {
			wdl = s.wdl
		}
		switch next := earliest(dl, wdl); {
		case next.IsZero():
			l.removeTimer(s)
		case next.After(now):
			s.hdl = next
			l.timerDown(0)
		default:
			l.removeTimer(s)
			if !wdl.IsZero() && !wdl.After(now) {
				l.wakeWriter(s, os.ErrDeadlineExceeded)
				wdl = time.Time{}
			}
			if !dl.IsZero() && !dl.After(now) {
				l.wake(s, os.ErrDeadlineExceeded)
				dl = time.Time{}
			}
			if rest := earliest(dl, wdl); !rest.IsZero() && s.fd >= 0 && s.fd < len(l.conns) && l.conns[s.fd] == s {
				l.armTimer(s, rest)
			}
		}
	}
}

func (l *eventLoop) removeTimer(s *sysConn) {
	i := s.hidx
	last := len(l.timers) - 1
	if i != last {
		l.timers[i] = l.timers[last]
		l.timers[i].hidx = i
	}
	l.timers[last] = nil
	l.timers = l.timers[:last]
	s.hidx = -1
	if i < last {
		l.timerDown(i)
		l.timerUp(i)
	}
}

func (l *eventLoop) timerUp(i int) {
	t := l.timers
	for i > 0 {
		p := (i - 1) / 2
		if !t[i].hdl.Before(t[p].hdl) {
			return
		}
		t[i], t[p] = t[p], t[i]
		t[i].hidx, t[p].hidx = i, p
		i = p
	}
}

func (l *eventLoop) timerDown(i int) {
	t := l.timers
	for {
		c := 2*i + 1
		if c >= len(t) {
			return
		}
		if c+1 < len(t) && t[c+1].hdl.Before(t[c].hdl) {
			c++
		}
		if !t[c].hdl.Before(t[i].hdl) {
			return
		}
		t[i], t[c] = t[c], t[i]
		t[i].hidx, t[c].hidx = i, c
		i = c
	}
}
