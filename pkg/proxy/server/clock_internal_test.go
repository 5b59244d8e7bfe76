package server

import (
	"testing"
	"time"
)

// TestCoarseClockTicksOnlyWhenReadOften: sparse reads get the current time
// and start no ticker; a burst of reads starts it and then reads get the
// cached time; once reads stop the ticker stops and reads get the current
// time again.
func TestCoarseClockTicksOnlyWhenReadOften(t *testing.T) {
	c := newCoarseClock()
	defer c.Close()
	within := func(got time.Time) {
		t.Helper()
		if d := time.Since(got); d < 0 || d > 50*time.Millisecond {
			t.Fatalf("clock read %v off the current time", d)
		}
	}

	for range 5 {
		within(c.Now())
		time.Sleep(2 * time.Millisecond)
	}
	if c.ticking() {
		t.Fatal("the clock ticks after five reads two milliseconds apart")
	}

	// A burst well above tickStartCalls within a millisecond (retried:
	// a slow machine may spread one burst over two windows).
	deadline := time.Now().Add(5 * time.Second)
	for !c.ticking() {
		if time.Now().After(deadline) {
			t.Fatal("the clock does not tick under a burst of reads")
		}
		for range 4 * tickStartCalls {
			c.Now()
		}
	}
	within(c.Now())
	before := c.ns.Load()
	got := c.Now().UnixNano()
	if after := c.ns.Load(); got != before && got != after {
		t.Fatalf("a ticking clock returned %d, not its cached time (%d or %d)", got, before, after)
	}

	// No reads: the ticker stops after tickStopTicks quiet ticks.
	deadline = time.Now().Add(5 * time.Second)
	for c.ticking() {
		if time.Now().After(deadline) {
			t.Fatal("the clock keeps ticking with no reads")
		}
		time.Sleep(time.Millisecond)
	}
	within(c.Now())

	// And it starts again.
	deadline = time.Now().Add(5 * time.Second)
	for !c.ticking() {
		if time.Now().After(deadline) {
			t.Fatal("the clock does not tick again under a second burst")
		}
		for range 4 * tickStartCalls {
			c.Now()
		}
	}
}

// ticking reports whether the clock serves cached time.
func (c *coarseClock) ticking() bool { return c.ns.Load() != 0 }
