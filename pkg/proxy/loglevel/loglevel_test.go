package loglevel_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/loglevel"
)

func TestParseAndName(t *testing.T) {
	for _, tt := range []struct {
		name  string
		level slog.Level
	}{
		{"debug", slog.LevelDebug}, {"info", slog.LevelInfo}, {"notice", slog.LevelInfo + 2},
		{"warn", slog.LevelWarn}, {"error", slog.LevelError}, {"emerg", slog.LevelError + 12},
	} {
		got, ok := loglevel.Parse(tt.name)
		if !ok || got != tt.level {
			t.Errorf("Parse(%q) = %v, %v; want %v", tt.name, got, ok, tt.level)
		}
		if n := loglevel.Name(tt.level); n != tt.name {
			t.Errorf("Name(%v) = %q, want %q", tt.level, n, tt.name)
		}
	}
	for _, bad := range []string{"", "WARN", "warning", "trace"} {
		if _, ok := loglevel.Parse(bad); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if n := loglevel.Name(slog.LevelDebug - 4); n != "debug" {
		t.Errorf("Name below debug = %q", n)
	}
	if n := loglevel.Name(slog.LevelInfo + 1); n != "info" {
		t.Errorf("Name between info and notice = %q", n)
	}
	if !strings.HasPrefix(loglevel.Names(), "debug, info, notice, warn") {
		t.Errorf("Names = %q", loglevel.Names())
	}
}

func TestSetForAWhile(t *testing.T) {
	var out bytes.Buffer
	lv := loglevel.New(slog.LevelWarn)
	defer lv.Close()
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: lv}))
	log.Debug("hidden")
	lv.Set(slog.LevelDebug, 50*time.Millisecond)
	if lv.Until().IsZero() {
		t.Fatal("no pending return to the starting level")
	}
	log.Debug("shown")
	deadline := time.Now().Add(5 * time.Second)
	for lv.Level() != slog.LevelWarn {
		if time.Now().After(deadline) {
			t.Fatalf("level still %v after its time ran out", lv.Level())
		}
		time.Sleep(5 * time.Millisecond)
	}
	log.Debug("hidden again")
	if got := out.String(); strings.Contains(got, "hidden") || !strings.Contains(got, "shown") {
		t.Fatalf("log output %q", got)
	}
	if !lv.Until().IsZero() {
		t.Fatal("a return is still pending after it happened")
	}

	// A later Set replaces the earlier one's timer; d == 0 keeps the level.
	lv.Set(slog.LevelInfo, 20*time.Millisecond)
	lv.Set(slog.LevelError, 0)
	time.Sleep(60 * time.Millisecond)
	if lv.Level() != slog.LevelError || !lv.Until().IsZero() {
		t.Fatalf("level %v until %v, want error kept", lv.Level(), lv.Until())
	}
	if log.Enabled(context.Background(), slog.LevelWarn) {
		t.Fatal("warn enabled at error")
	}
}
