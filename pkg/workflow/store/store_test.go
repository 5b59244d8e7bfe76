package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kiln-dev/kiln/pkg/workflow/store"
	"github.com/kiln-dev/kiln/pkg/workflow/store/storetest"
)

func openBolt(t testing.TB, path string) *store.Bolt {
	t.Helper()
	s, err := store.OpenBolt(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestBoltConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, string) {
		return openBolt(t, filepath.Join(t.TempDir(), "wf.db")), "eksa-system"
	})
}

func TestBoltReopenAndLock(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wf.db")
	s, err := store.OpenBolt(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w1 := storetest.NewWorkflow("", "cp01", "aa:00:00:00:00:01", now)
	if err := s.Create(ctx, w1); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenBolt(path, 50*time.Millisecond); err == nil {
		t.Fatal("a second process could open the locked database")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	all, err := openBolt(t, path).List(ctx)
	if err != nil || len(all) != 1 || all[0].ID() != "eksa-system/cp01" {
		t.Fatalf("after reopen: %v, %v", all, err)
	}
	if all[0].Tasks[0].Actions[0].ID != w1.Tasks[0].Actions[0].ID || !all[0].CreatedAt.Equal(now) {
		t.Fatalf("reopened workflow differs: %+v", all[0])
	}
}

func TestBoltAgentIndexRebuild(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wf.db")
	s, err := store.OpenBolt(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, storetest.NewWorkflow("", "other", "aa:00:00:00:00:03", time.Now())); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	// A database written before the index existed (no "agents" bucket)
	// gets it rebuilt on open.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("agents")) }); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if got, err := openBolt(t, path).ListByAgent(ctx, "aa:00:00:00:00:03"); err != nil || len(got) != 1 || got[0].Name != "other" {
		t.Fatalf("after index rebuild: %v, %v", got, err)
	}
}
