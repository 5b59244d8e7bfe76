package plugins

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// queueConfig is Kong 3.x's queue record (typedefs.queue).
type queueConfig struct {
	maxBatch         int
	maxCoalescing    time.Duration
	maxEntries       int
	maxBytes         int
	maxRetryTime     time.Duration
	initialRetry     time.Duration
	maxRetryDelay    time.Duration
	name             string // for log messages
	version          string // identifies the plugin config the queue serves
	log              *slog.Logger
	handler          func(ctx context.Context, batch [][]byte) error
	handlerTimeLimit time.Duration
}

// logQueue batches log entries and hands them to a handler from one
// background goroutine, which exists only while entries are waiting. The
// queue is bounded: when it is full the oldest entry is dropped. A batch
// the handler keeps failing is retried with exponential backoff until
// maxRetryTime, then dropped. Drops are counted and logged (at most once a
// second), never blocking a request.
type logQueue struct {
	cfg queueConfig

	mu      sync.Mutex
	entries [][]byte
	bytes   int
	running bool
	wake    chan struct{}

	dropped   atomic.Int64
	delivered atomic.Int64
	lastWarn  atomic.Int64 // unix nanos of the last drop warning
}

func newLogQueue(cfg queueConfig) *logQueue {
	if cfg.maxBatch < 1 {
		cfg.maxBatch = 1
	}
	if cfg.maxEntries < 1 {
		cfg.maxEntries = 10000
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	return &logQueue{cfg: cfg, wake: make(chan struct{}, 1)}
}

// add enqueues an entry; it never blocks on delivery.
func (q *logQueue) add(entry []byte) {
	q.mu.Lock()
	for len(q.entries) > 0 && (len(q.entries) >= q.cfg.maxEntries || (q.cfg.maxBytes > 0 && q.bytes+len(entry) > q.cfg.maxBytes)) {
		q.bytes -= len(q.entries[0])
		q.entries[0] = nil
		q.entries = q.entries[1:]
		q.drop(1, "queue full, dropping the oldest entry")
	}
	q.entries = append(q.entries, entry)
	q.bytes += len(entry)
	full := len(q.entries) >= q.cfg.maxBatch
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.run()
	} else if full {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

func (q *logQueue) drop(n int, why string) {
	total := q.dropped.Add(int64(n))
	now := time.Now().UnixNano()
	last := q.lastWarn.Load()
	if now-last >= int64(time.Second) && q.lastWarn.CompareAndSwap(last, now) {
		q.cfg.log.Warn("log entries dropped", "plugin", q.cfg.name, "reason", why, "dropped_total", total)
	}
}

// run delivers batches until the queue is empty, then exits.
func (q *logQueue) run() {
	for {
		q.mu.Lock()
		if len(q.entries) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		if len(q.entries) < q.cfg.maxBatch && q.cfg.maxCoalescing > 0 {
			q.mu.Unlock()
			t := time.NewTimer(q.cfg.maxCoalescing)
			select {
			case <-q.wake:
			case <-t.C:
			}
			t.Stop()
			q.mu.Lock()
		}
		n := min(len(q.entries), q.cfg.maxBatch)
		batch := append([][]byte(nil), q.entries[:n]...)
		for i := 0; i < n; i++ {
			q.bytes -= len(q.entries[i])
			q.entries[i] = nil
		}
		q.entries = q.entries[n:]
		q.mu.Unlock()
		q.deliver(batch)
	}
}

// deliver retries one batch with exponential backoff.
func (q *logQueue) deliver(batch [][]byte) {
	deadline := time.Now().Add(q.cfg.maxRetryTime)
	delay := q.cfg.initialRetry
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), q.cfg.handlerTimeLimit)
		err := q.cfg.handler(ctx, batch)
		cancel()
		if err == nil {
			q.delivered.Add(int64(len(batch)))
			return
		}
		if time.Now().Add(delay).After(deadline) {
			q.cfg.log.Warn("log batch delivery failed, giving up", "plugin", q.cfg.name, "attempts", attempt, "entries", len(batch), "error", err)
			q.drop(len(batch), "delivery failed for max_retry_time")
			return
		}
		q.cfg.log.Debug("log batch delivery failed, retrying", "plugin", q.cfg.name, "attempt", attempt, "retry_in", delay, "error", err)
		time.Sleep(delay)
		delay = min(delay*2, q.cfg.maxRetryDelay)
	}
}

// isRunning reports whether the delivery goroutine exists.
func (q *logQueue) isRunning() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running
}
