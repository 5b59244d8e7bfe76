package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kiln-dev/kiln/pkg/workflow"
)

func newWorkflow(name, agent string, created time.Time) *workflow.Workflow {
	tpl := &workflow.Template{Name: "t", Tasks: []workflow.Task{{Name: "a", Worker: agent, Actions: []workflow.Action{{Name: "x", Image: "busybox", Timeout: 5}}}}}
	return workflow.New("", name, name, "t", tpl, created)
}

func TestBoltRoundTripAndReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wf.db")
	s, err := OpenBolt(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w2 := newWorkflow("wk01", "aa:00:00:00:00:02", now.Add(time.Minute))
	w1 := newWorkflow("cp01", "AA:00:00:00:00:01", now)
	w1b := newWorkflow("cp01-again", "aa:00:00:00:00:01", now.Add(time.Hour))
	for _, w := range []*workflow.Workflow{w2, w1, w1b} {
		if err := s.Create(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Create(ctx, w1); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if _, err := s.Get(ctx, "eksa-system/nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	byAgent, err := s.ListByAgent(ctx, "aa:00:00:00:00:01")
	if err != nil || len(byAgent) != 2 || byAgent[0].Name != "cp01" || byAgent[1].Name != "cp01-again" {
		t.Fatalf("ListByAgent = %v, %v", byAgent, err)
	}
	boom := errors.New("boom")
	if _, err := s.Update(ctx, w1.ID(), func(w *workflow.Workflow) error { w.State = workflow.StateFailed; return boom }); !errors.Is(err, boom) {
		t.Fatalf("update error not returned: %v", err)
	}
	got, _ := s.Get(ctx, w1.ID())
	if got.State != workflow.StatePending {
		t.Fatalf("failed update was stored: %s", got.State)
	}
	if _, err := s.Update(ctx, w1.ID(), func(w *workflow.Workflow) error { w.Name = "other"; return nil }); err == nil {
		t.Fatal("rename through update accepted")
	}
	if _, err := s.Update(ctx, w1.ID(), func(w *workflow.Workflow) error { w.State = workflow.StateRunning; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, w2.ID()); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, w2.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := OpenBolt(path, 50*time.Millisecond); err == nil {
		t.Fatal("a second process could open the locked database")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = OpenBolt(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	all, err := s.List(ctx)
	if err != nil || len(all) != 2 || all[0].ID() != "eksa-system/cp01" || all[0].State != workflow.StateRunning {
		t.Fatalf("after reopen: %v, %v", all, err)
	}
	if all[0].Tasks[0].Actions[0].ID != w1.Tasks[0].Actions[0].ID || !all[0].CreatedAt.Equal(now) {
		t.Fatalf("reopened workflow differs: %+v", all[0])
	}
}

func TestBoltConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	s, err := OpenBolt(filepath.Join(t.TempDir(), "wf.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := newWorkflow("cp01", "aa:00:00:00:00:01", time.Now())
	if err := s.Create(ctx, w); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Update(ctx, w.ID(), func(w *workflow.Workflow) error {
				w.AppendLog(workflow.Ref{}, "x")
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, _ := s.Get(ctx, w.ID())
	if n := len(got.Tasks[0].Actions[0].Log); n != 20 {
		t.Fatalf("%d log lines after 20 concurrent appends (lost updates)", n)
	}
}

func TestBoltAgentIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wf.db")
	s, err := OpenBolt(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	two := &workflow.Template{Name: "t", Tasks: []workflow.Task{
		{Name: "a", Worker: "AA:00:00:00:00:01", Actions: []workflow.Action{{Name: "x", Image: "busybox", Timeout: 5}}},
		{Name: "b", Worker: "aa:00:00:00:00:02", Actions: []workflow.Action{{Name: "y", Image: "busybox", Timeout: 5}}},
	}}
	w := workflow.New("", "multi", "multi", "t", two, time.Now())
	if err := s.Create(ctx, w); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, newWorkflow("other", "aa:00:00:00:00:03", time.Now())); err != nil {
		t.Fatal(err)
	}
	for _, agent := range []string{"aa:00:00:00:00:01", "AA:00:00:00:00:02"} {
		if got, err := s.ListByAgent(ctx, agent); err != nil || len(got) != 1 || got[0].Name != "multi" {
			t.Fatalf("ListByAgent(%s) = %v, %v", agent, got, err)
		}
	}
	// A prefix of another agent id must not match.
	if got, _ := s.ListByAgent(ctx, "aa:00:00:00:00:0"); len(got) != 0 {
		t.Fatalf("prefix matched: %v", got)
	}
	if err := s.Delete(ctx, w.ID()); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ListByAgent(ctx, "aa:00:00:00:00:01"); len(got) != 0 {
		t.Fatalf("deleted workflow still indexed: %v", got)
	}
	_ = s.Close()

	// A database written before the index existed gets it rebuilt on open.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(agentIndex) })
	_ = db.Close()
	s, err = OpenBolt(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.ListByAgent(ctx, "aa:00:00:00:00:03"); err != nil || len(got) != 1 || got[0].Name != "other" {
		t.Fatalf("after index rebuild: %v, %v", got, err)
	}
}
