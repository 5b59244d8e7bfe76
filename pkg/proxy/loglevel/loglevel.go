// Package loglevel is a gateway node's log level that can be changed while
// it runs (Kong's /debug/node/log-level): a slog.Leveler set for a while,
// after which it returns to the level the node was started with.
package loglevel

import (
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Kong's log levels (nginx's) as slog levels: notice sits between info and
// warn, crit, alert and emerg above error.
var levels = []struct {
	name  string
	level slog.Level
}{
	{"debug", slog.LevelDebug},
	{"info", slog.LevelInfo},
	{"notice", slog.LevelInfo + 2},
	{"warn", slog.LevelWarn},
	{"error", slog.LevelError},
	{"crit", slog.LevelError + 4},
	{"alert", slog.LevelError + 8},
	{"emerg", slog.LevelError + 12},
}

// Parse returns the slog level of one of Kong's level names (debug, info,
// notice, warn, error, crit, alert, emerg).
func Parse(name string) (slog.Level, bool) {
	for _, l := range levels {
		if l.name == name {
			return l.level, true
		}
	}
	return 0, false
}

// Name is Kong's name for a level: the highest of Kong's levels at or
// below it.
func Name(level slog.Level) string {
	name := levels[0].name
	for _, l := range levels {
		if l.level <= level {
			name = l.name
		}
	}
	return name
}

// Names lists Kong's level names, lowest first, for messages.
func Names() string {
	n := make([]string, len(levels))
	for i, l := range levels {
		n[i] = l.name
	}
	return strings.Join(n, ", ")
}

// Level is a log level that Set changes for a while. Its zero value is not
// usable; make one with New. It is safe for concurrent use.
type Level struct {
	v    slog.LevelVar
	base slog.Level

	mu     sync.Mutex
	revert *time.Timer
	until  time.Time
}

// New returns a Level at base, the level it returns to.
func New(base slog.Level) *Level {
	l := &Level{base: base}
	l.v.Set(base)
	return l
}

// Level implements slog.Leveler.
func (l *Level) Level() slog.Level { return l.v.Level() }

// Set changes the level for d, after which it returns to the level New was
// given; d == 0 keeps it until the next Set. A later Set replaces an
// earlier one's timer.
func (l *Level) Set(level slog.Level, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.revert != nil {
		l.revert.Stop()
		l.revert, l.until = nil, time.Time{}
	}
	l.v.Set(level)
	if d <= 0 {
		return
	}
	l.until = time.Now().Add(d)
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.revert == t { // not replaced meanwhile
			l.v.Set(l.base)
			l.revert, l.until = nil, time.Time{}
		}
	})
	l.revert = t
}

// Until is when a level set for a while returns to the starting level
// (zero when none is pending).
func (l *Level) Until() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until
}

// Close stops a pending return to the starting level.
func (l *Level) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.revert != nil {
		l.revert.Stop()
		l.revert = nil
	}
}
