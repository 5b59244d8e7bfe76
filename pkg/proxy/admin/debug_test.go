package admin_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/admin"
	"github.com/kiln-dev/kiln/pkg/proxy/admin/admintest"
	"github.com/kiln-dev/kiln/pkg/proxy/loglevel"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

func TestDebugNodeLogLevel(t *testing.T) {
	lv := loglevel.New(slog.LevelWarn)
	t.Cleanup(lv.Close)
	c, _ := admintest.NewClientOptions(t, admin.Options{Store: &notOff{store.NewMemory()}, LogLevel: lv})
	message := func(r admintest.Resp, want string) {
		t.Helper()
		if r.Body["message"] != want {
			t.Fatalf("message %q, want %q", r.Body["message"], want)
		}
	}
	message(c.Expect(c.JSON("GET", "/debug/node/log-level", ""), 200), "log level: warn")

	// A level set for a while (seconds, rounded up) returns to the start.
	message(c.Expect(c.JSON("PUT", "/debug/node/log-level/debug?timeout=0.2", ""), 200), "log level changed")
	message(c.Expect(c.JSON("GET", "/debug/node/log-level", ""), 200), "log level: debug")
	if left := time.Until(lv.Until()); left < 500*time.Millisecond || left > time.Second {
		t.Fatalf("timeout 0.2 reverts in %v, want 1 s", left)
	}
	message(c.Expect(c.JSON("PUT", "/debug/node/log-level/debug", ""), 200), "log level is already debug")
	deadline := time.Now().Add(5 * time.Second)
	for lv.Level() != slog.LevelWarn {
		if time.Now().After(deadline) {
			t.Fatal("the level did not return to warn")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The default timeout is Kong's 60 s; the body may carry it (0: kept).
	message(c.Expect(c.JSON("PUT", "/debug/node/log-level/notice", ""), 200), "log level changed")
	if left := time.Until(lv.Until()); left < 55*time.Second || left > 60*time.Second {
		t.Fatalf("default timeout reverts in %v, want 60 s", left)
	}
	message(c.Expect(c.JSON("PUT", "/debug/node/log-level/info", `{"timeout":0}`), 200), "log level changed")
	message(c.Expect(c.Form("PUT", "/debug/node/log-level/error", "timeout=0"), 200), "log level changed")
	if lv.Level() != slog.LevelError || !lv.Until().IsZero() {
		t.Fatalf("level %v until %v, want error with no return", lv.Level(), lv.Until())
	}

	for _, tt := range []struct {
		method, path, body string
		status             int
		message            string
	}{
		{"PUT", "/debug/node/log-level/verbose", "", 400, "unknown log level: verbose"},
		{"PUT", "/debug/node/log-level/debug?timeout=-1", "", 400, "timeout must be greater than or equal to 0"},
		{"PUT", "/debug/node/log-level/debug?timeout=soon", "", 400, `timeout must be a number of seconds, got "soon"`},
		{"PUT", "/debug/node/log-level/debug", `{"timeout":[1]}`, 400, "timeout must be a number of seconds, got [1]"},
		{"POST", "/debug/node/log-level/debug", "", 405, "Method not allowed"},
		{"DELETE", "/debug/node/log-level", "", 405, "Method not allowed"},
		{"GET", "/debug/cluster/log-level/debug", "", 404, "Not found"},
		{"GET", "/debug/node/log-level/debug/x", "", 404, "Not found"},
	} {
		r := c.JSON(tt.method, tt.path, tt.body)
		if r.Status != tt.status || r.Body["message"] != tt.message {
			t.Errorf("%s %s %s: %d %q, want %d %q", tt.method, tt.path, tt.body, r.Status, r.Body["message"], tt.status, tt.message)
		}
	}
	if lv.Level() != slog.LevelError {
		t.Fatalf("a refused change moved the level to %v", lv.Level())
	}

	// Without a database, as in Kong, the level can be read, not changed.
	dbless, _ := admintest.NewClientOptions(t, admin.Options{Store: store.NewMemory(), LogLevel: lv})
	message(dbless.Expect(dbless.JSON("GET", "/debug/node/log-level", ""), 200), "log level: error")
	message(dbless.Expect(dbless.JSON("PUT", "/debug/node/log-level/debug", ""), 405), "cannot change log level when not using a database")
	// Without a level (a bare Admin API), the endpoints do not exist.
	bare, _ := admintest.NewClient(t, store.NewMemory())
	bare.Expect(bare.JSON("GET", "/debug/node/log-level", ""), 404)
}

// clusterLevels is a store.ClusterLogLevelStore in memory.
type clusterLevels struct{ last store.ClusterLogLevel }

func (c *clusterLevels) SetClusterLogLevel(_ context.Context, level string, until time.Time) (store.ClusterLogLevel, error) {
	c.last = store.ClusterLogLevel{Level: level, Until: until, Serial: c.last.Serial + 1}
	return c.last, nil
}

func (c *clusterLevels) ClusterLogLevel(context.Context) (store.ClusterLogLevel, error) {
	return c.last, nil
}

func TestDebugClusterLogLevel(t *testing.T) {
	lv := loglevel.New(slog.LevelWarn)
	t.Cleanup(lv.Close)
	cluster := &clusterLevels{}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	c, _ := admintest.NewClientOptions(t, admin.Options{Store: &notOff{store.NewMemory()}, LogLevel: lv, ClusterLogLevel: cluster,
		Now: func() time.Time { return now }})
	r := c.Expect(c.JSON("PUT", "/debug/cluster/log-level/debug?timeout=90", ""), 200)
	if r.Body["message"] != "log level changed" || lv.Level() != slog.LevelDebug {
		t.Fatalf("PUT: %v, local level %v", r.Body, lv.Level())
	}
	if want := (store.ClusterLogLevel{Level: "debug", Until: now.Add(90 * time.Second), Serial: 1}); cluster.last != want {
		t.Fatalf("recorded for the cluster %+v, want %+v", cluster.last, want)
	}
	c.Expect(c.JSON("PUT", "/debug/cluster/log-level/info?timeout=0", ""), 200)
	if !cluster.last.Until.IsZero() || cluster.last.Serial != 2 {
		t.Fatalf("timeout 0 recorded as %+v, want no end", cluster.last)
	}
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{"PUT", "/debug/cluster/log-level/verbose", 400},
		{"GET", "/debug/cluster/log-level/debug", 405},
		{"GET", "/debug/cluster/log-level", 404},
	} {
		if r := c.JSON(tt.method, tt.path, ""); r.Status != tt.status {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, r.Status, tt.status)
		}
	}
	if cluster.last.Serial != 2 {
		t.Fatalf("a refused change reached the cluster: %+v", cluster.last)
	}
	dbless, _ := admintest.NewClientOptions(t, admin.Options{Store: store.NewMemory(), LogLevel: lv, ClusterLogLevel: cluster})
	if r := dbless.JSON("PUT", "/debug/cluster/log-level/debug", ""); r.Status != 405 {
		t.Fatalf("DB-less cluster PUT: %d %s", r.Status, r.Raw)
	}
}
