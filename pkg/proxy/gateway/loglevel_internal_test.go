package gateway

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/loglevel"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// levelRow is a store.ClusterLogLevelStore in memory.
type levelRow struct {
	mu  sync.Mutex
	cur store.ClusterLogLevel
}

func (r *levelRow) SetClusterLogLevel(_ context.Context, level string, until time.Time) (store.ClusterLogLevel, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur = store.ClusterLogLevel{Level: level, Until: until, Serial: r.cur.Serial + 1}
	return r.cur, nil
}

func (r *levelRow) ClusterLogLevel(context.Context) (store.ClusterLogLevel, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur, nil
}

func TestFollowClusterLogLevel(t *testing.T) {
	for _, tt := range []struct {
		name string
		// before is set before the node starts following, after while it
		// does; want is the node's level in the end.
		before, after *store.ClusterLogLevel
		want          slog.Level
	}{
		{name: "nothing set", want: slog.LevelWarn},
		{name: "set before the start, time left", before: &store.ClusterLogLevel{Level: "debug", Until: time.Now().Add(time.Hour)}, want: slog.LevelDebug},
		{name: "set before the start, no end", before: &store.ClusterLogLevel{Level: "debug"}, want: slog.LevelWarn},
		{name: "set before the start, over", before: &store.ClusterLogLevel{Level: "debug", Until: time.Now().Add(-time.Second)}, want: slog.LevelWarn},
		{name: "set while following", after: &store.ClusterLogLevel{Level: "info", Until: time.Now().Add(time.Hour)}, want: slog.LevelInfo},
		{name: "set while following, no end", after: &store.ClusterLogLevel{Level: "error"}, want: slog.LevelError},
		{name: "set while following, over", after: &store.ClusterLogLevel{Level: "debug", Until: time.Now().Add(-time.Second)}, want: slog.LevelWarn},
	} {
		t.Run(tt.name, func(t *testing.T) {
			row := &levelRow{}
			if tt.before != nil {
				_, _ = row.SetClusterLogLevel(context.Background(), tt.before.Level, tt.before.Until)
			}
			lv := loglevel.New(slog.LevelWarn)
			defer lv.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				followClusterLogLevel(ctx, row, lv, 5*time.Millisecond, slog.New(slog.DiscardHandler))
			}()
			time.Sleep(30 * time.Millisecond)
			if tt.after != nil {
				_, _ = row.SetClusterLogLevel(context.Background(), tt.after.Level, tt.after.Until)
			}
			deadline := time.Now().Add(5 * time.Second)
			for lv.Level() != tt.want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(30 * time.Millisecond) // a few more polls: the level stays
			cancel()
			<-done
			if lv.Level() != tt.want {
				t.Fatalf("level %v, want %v", lv.Level(), tt.want)
			}
		})
	}
}
