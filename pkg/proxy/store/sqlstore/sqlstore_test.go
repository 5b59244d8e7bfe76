package sqlstore_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/store"
	"github.com/kiln-dev/kiln/pkg/proxy/store/pgtest"
	"github.com/kiln-dev/kiln/pkg/proxy/store/sqlstore"
	"github.com/kiln-dev/kiln/pkg/proxy/store/storetest"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(s *pgtest.Server) { pg = s }))
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return storetest.OpenSQLite(t) })
}

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := storetest.OpenPostgres(t, pg, 0)
		return s
	})
}

func TestSQLiteDataPlanes(t *testing.T) {
	storetest.RunDataPlanes(t, func(t *testing.T) store.DataPlaneStore { return storetest.OpenSQLite(t) })
}

func TestPostgresDataPlanes(t *testing.T) {
	storetest.RunDataPlanes(t, func(t *testing.T) store.DataPlaneStore {
		s, _ := storetest.OpenPostgres(t, pg, 0)
		return s
	})
}

func TestPostgresPollSeesOtherNode(t *testing.T) {
	ctx := context.Background()
	a, dsn := storetest.OpenPostgres(t, pg, 50*time.Millisecond)
	b, err := sqlstore.OpenPostgres(ctx, dsn, 0)
	storetest.Must(t, err)
	defer b.Close()
	ch := a.Changed()
	storetest.Must(t, b.Insert(ctx, "consumers", storetest.Mk(t, "consumers", map[string]any{"username": "x"})))
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("node A did not notice node B's write")
	}
	cfg, err := a.Snapshot(ctx)
	if err != nil || len(cfg.Consumers) != 1 {
		t.Fatalf("snapshot on A: %v %v", cfg, err)
	}
}

// TestPostgresListenSeesOtherNode: with a poll interval far beyond the
// test's timeout, only LISTEN/NOTIFY can deliver node B's write to node A.
func TestPostgresListenSeesOtherNode(t *testing.T) {
	ctx := context.Background()
	a, dsn := storetest.OpenPostgres(t, pg, time.Hour)
	b, err := sqlstore.OpenPostgres(ctx, dsn, 0)
	storetest.Must(t, err)
	defer b.Close()
	// A's LISTEN connection comes up in the background; writes committed
	// before it listens are not delivered, so write again until one is.
	for i := 0; i < 10; i++ {
		ch := a.Changed()
		start := time.Now()
		name := fmt.Sprintf("listen-%d", i)
		storetest.Must(t, b.Insert(ctx, "consumers", storetest.Mk(t, "consumers", map[string]any{"username": name})))
		select {
		case <-ch:
			t.Logf("node A notified %s after node B's commit", time.Since(start).Round(time.Millisecond))
			return
		case <-time.After(time.Second):
		}
	}
	t.Fatal("node A was never notified of node B's writes")
}

func TestSQLiteClusterLogLevel(t *testing.T) {
	storetest.RunClusterLogLevel(t, storetest.OpenSQLite(t))
}

func TestPostgresClusterLogLevel(t *testing.T) {
	s, _ := storetest.OpenPostgres(t, pg, 0)
	storetest.RunClusterLogLevel(t, s)
}
