package server

import (
	"sync/atomic"
	"time"
)

// coarseClock is a millisecond-resolution clock for the request path. Like
// nginx's cached time, under load the proxy reads a value one goroutine
// refreshes every millisecond instead of asking the kernel several times a
// request. At a low request rate it is the other way round: each tick
// wakes a thread (on the development VM about 30 ms of CPU a second, three
// times what the requests themselves cost at 200 a second), while reading
// the clock costs about 90 ns. So the clock ticks only while it is read
// often: it starts once tickStartCalls reads come within a millisecond
// and stops after tickStopTicks ticks in a row that saw fewer than
// tickStopCalls reads each; in between every read asks the kernel.
type coarseClock struct {
	ns atomic.Int64 // cached Unix nanoseconds; 0 while not ticking
	// reads counts reads: while ticking, those since the last tick (the
	// request path stops counting at tickStopCalls, so a busy proxy only
	// reads it); otherwise those since window, a Unix nanosecond time.
	reads   atomic.Int32
	window  atomic.Int64
	running atomic.Bool
	stop    chan struct{}
}

const (
	tickStartCalls = 64 // reads within a millisecond that start the ticker
	tickStopCalls  = 16 // fewer reads than this in a tick count as a quiet tick
	tickStopTicks  = 8  // quiet ticks in a row that stop it
)

func newCoarseClock() *coarseClock { return &coarseClock{stop: make(chan struct{})} }

// Now returns the cached time (at most about a millisecond old) while the
// clock ticks, the current time otherwise.
func (c *coarseClock) Now() time.Time {
	if ns := c.ns.Load(); ns != 0 {
		if c.reads.Load() < tickStopCalls {
			c.reads.Add(1)
		}
		return time.Unix(0, ns)
	}
	now := time.Now()
	c.countRead(now.UnixNano())
	return now
}

// countRead counts a read while the clock does not tick, and starts the
// ticker when reads come often enough. The count is approximate (reads
// racing a window's start may be lost), which only shifts the threshold.
func (c *coarseClock) countRead(ns int64) {
	if w := c.window.Load(); ns-w >= int64(time.Millisecond) {
		if c.window.CompareAndSwap(w, ns) {
			c.reads.Store(0)
		}
	}
	if c.reads.Add(1) >= tickStartCalls && c.running.CompareAndSwap(false, true) {
		c.reads.Store(0)
		c.ns.Store(ns)
		go c.run()
	}
}

func (c *coarseClock) run() {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	quiet := 0
	for {
		select {
		case <-c.stop:
			c.ns.Store(0)
			return
		case now := <-t.C:
			c.ns.Store(now.UnixNano())
			if c.reads.Swap(0) >= tickStopCalls {
				quiet = 0
				continue
			}
			if quiet++; quiet >= tickStopTicks {
				c.ns.Store(0)
				c.window.Store(now.UnixNano())
				c.running.Store(false)
				return
			}
		}
	}
}

// Close stops the ticking goroutine.
func (c *coarseClock) Close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
}
