package server

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// h2Stream bounds an HTTP/2 stream's waits for its client as nginx does
// (client_body_timeout, send_timeout): a read of the request body or a
// write of the response that makes no progress for that long ends the
// stream, as the same waits end an HTTP/1.x connection. It wraps the
// streams net/http's server serves (connections not on an event loop:
// --event-loops -1); kiln's own HTTP/2 server bounds its waits itself
// (h2Req.wait).
//
// net/http's HTTP/2 server has per-stream deadlines, but a deadline runs
// from when it is set whatever the handler does meanwhile, so a response
// that waits on a slow upstream between two writes would be cut. h2Stream
// counts only the time spent inside a read or a write, with one timer per
// stream that is armed while one is in progress, and sets net/http's
// deadline to the past when a wait has lasted too long: net/http then
// fails the read (the request gets 408) or resets the stream (the write
// fails, the upstream connection is closed). The connection's own
// WriteByteTimeout does not cover a stream stalled by a flow-control window
// the client never opens: the connection then has nothing to write.
type h2Stream struct {
	http.ResponseWriter
	body                     io.ReadCloser
	rc                       *http.ResponseController
	bodyTimeout, sendTimeout time.Duration

	mu sync.Mutex
	// readSince and writeSince are when the read or write in progress
	// began (zero: none).
	readSince, writeSince time.Time
	// watch runs check at due while watching.
	watch    *time.Timer
	watching bool
	due      time.Time
	// ended is set when the handler returns: net/http's ResponseWriter
	// must not be used after that.
	ended bool
}

// h2WriteChunk bounds one wait of a response write: a larger write is made
// in pieces this size (one HTTP/2 frame of the default maximum size), each
// of which counts as progress.
const h2WriteChunk = 16 << 10

// newH2Stream wraps an HTTP/2 request's ResponseWriter and body; end must
// be called before the handler returns.
func (e *Engine) newH2Stream(w http.ResponseWriter, r *http.Request) *h2Stream {
	s := &h2Stream{ResponseWriter: w, rc: http.NewResponseController(w), bodyTimeout: e.bodyTimeout, sendTimeout: e.sendTimeout}
	if r.Body != nil && r.Body != http.NoBody {
		s.body = r.Body
		r.Body = h2Body{s}
	}
	return s
}

// end stops the stream's timer (the handler is returning).
func (s *h2Stream) end() {
	s.mu.Lock()
	s.ended = true
	if s.watch != nil {
		s.watch.Stop()
	}
	s.mu.Unlock()
}

// begin records that a wait starts now and makes sure the timer runs.
func (s *h2Stream) begin(since *time.Time, timeout time.Duration) {
	s.mu.Lock()
	now := time.Now()
	*since = now
	if due := now.Add(timeout); !s.ended && (!s.watching || due.Before(s.due)) {
		s.watching, s.due = true, due
		if s.watch == nil {
			s.watch = time.AfterFunc(timeout, s.check)
		} else {
			s.watch.Reset(timeout)
		}
	}
	s.mu.Unlock()
}

// done records that the wait begun with begin is over.
func (s *h2Stream) done(since *time.Time) {
	s.mu.Lock()
	*since = time.Time{}
	s.mu.Unlock()
}

// check runs on the timer: it ends the waits that have lasted their
// timeout and sets the timer for the first of the others.
func (s *h2Stream) check() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watching = false
	if s.ended {
		return
	}
	now := time.Now()
	var next time.Duration
	waiting := func(since *time.Time, timeout time.Duration, expire func(time.Time) error) {
		if since.IsZero() {
			return
		}
		left := timeout - now.Sub(*since)
		if left <= 0 {
			*since = time.Time{}
			// A deadline in the past: net/http acts on it at once.
			_ = expire(time.Unix(1, 0))
			return
		}
		if next == 0 || left < next {
			next = left
		}
	}
	waiting(&s.readSince, s.bodyTimeout, s.rc.SetReadDeadline)
	waiting(&s.writeSince, s.sendTimeout, s.rc.SetWriteDeadline)
	if next > 0 {
		s.watching, s.due = true, now.Add(next)
		s.watch.Reset(next)
	}
}

func (s *h2Stream) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), h2WriteChunk)]
		s.begin(&s.writeSince, s.sendTimeout)
		n, err := s.ResponseWriter.Write(chunk)
		s.done(&s.writeSince)
		written += n
		if err != nil {
			return written, err
		}
		p = p[len(chunk):]
	}
	return written, nil
}

// Flush sends what is buffered, which may wait for the client's
// flow-control window too.
func (s *h2Stream) Flush() {
	s.begin(&s.writeSince, s.sendTimeout)
	_ = s.rc.Flush()
	s.done(&s.writeSince)
}

// Unwrap gives http.ResponseController the stream's ResponseWriter.
func (s *h2Stream) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// h2Body is the request body of an h2Stream.
type h2Body struct{ s *h2Stream }

func (b h2Body) Read(p []byte) (int, error) {
	b.s.begin(&b.s.readSince, b.s.bodyTimeout)
	n, err := b.s.body.Read(p)
	b.s.done(&b.s.readSince)
	return n, err
}

func (b h2Body) Close() error { return b.s.body.Close() }
