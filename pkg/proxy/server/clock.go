package server

import (
	"sync/atomic"
	"time"
)

// coarseClock is a millisecond-resolution clock for the request path. On
// virtual machines without a usable vDSO clock every time.Now is a system
// call (200-350 ns measured on the development VM, several per request);
// like nginx's cached time, the proxy reads a value refreshed every
// millisecond by one goroutine instead. The goroutine stops after a second
// without readers and restarts on the next read.
type coarseClock struct {
	ns      atomic.Int64 // cached Unix nanoseconds; 0 while not ticking
	used    atomic.Bool
	running atomic.Bool
	stop    chan struct{}
}

func newCoarseClock() *coarseClock { return &coarseClock{stop: make(chan struct{})} }

// Now returns the cached time (at most about a millisecond old).
func (c *coarseClock) Now() time.Time {
	if !c.used.Load() {
		c.used.Store(true)
	}
	if ns := c.ns.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	if c.running.CompareAndSwap(false, true) {
		go c.run()
	}
	return time.Now()
}

func (c *coarseClock) run() {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	idle := 0
	for {
		select {
		case <-c.stop:
			c.ns.Store(0)
			return
		case now := <-t.C:
			c.ns.Store(now.UnixNano())
			if c.used.Swap(false) {
				idle = 0
				continue
			}
			if idle++; idle > 1000 {
				c.ns.Store(0)
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
