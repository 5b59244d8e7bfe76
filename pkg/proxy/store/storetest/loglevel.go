package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// RunClusterLogLevel is the conformance suite of
// store.ClusterLogLevelStore: nothing set at first, then every set is read
// back with a growing serial, with and without an end.
func RunClusterLogLevel(t *testing.T, s store.ClusterLogLevelStore) {
	ctx := context.Background()
	if l, err := s.ClusterLogLevel(ctx); err != nil || l != (store.ClusterLogLevel{}) {
		t.Fatalf("a fresh store's cluster log level: %+v %v", l, err)
	}
	until := base.Add(time.Minute)
	var serial int64
	for _, want := range []store.ClusterLogLevel{{Level: "debug", Until: until}, {Level: "notice"}, {Level: "error", Until: until.Add(time.Hour)}} {
		set, err := s.SetClusterLogLevel(ctx, want.Level, want.Until)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.ClusterLogLevel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != set || got.Level != want.Level || !got.Until.Equal(want.Until) || got.Serial <= serial {
			t.Fatalf("set %+v: returned %+v, read back %+v (previous serial %d)", want, set, got, serial)
		}
		serial = got.Serial
	}
}
