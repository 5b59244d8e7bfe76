// Package storetest is the behaviour every workflow store.Store must show,
// run by the tests of each implementation (bbolt, Kubernetes).
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
)

// Open returns an empty store for one subtest and the namespace its
// workflows must be created in.
type Open func(t *testing.T) (store.Store, string)

// Run runs the conformance suite, one subtest per behaviour.
func Run(t *testing.T, open Open) {
	t.Run("CreateGetListDelete", func(t *testing.T) { testCRUD(t, open) })
	t.Run("UpdateIsAtomic", func(t *testing.T) { testUpdate(t, open) })
	t.Run("StateRoundTrip", func(t *testing.T) { testRoundTrip(t, open) })
	t.Run("ConcurrentUpdatesLoseNothing", func(t *testing.T) { testConcurrent(t, open) })
	t.Run("AgentIndex", func(t *testing.T) { testAgentIndex(t, open) })
}

// NewWorkflow is a one-task, one-action workflow for agent.
func NewWorkflow(namespace, name, agent string, created time.Time) *workflow.Workflow {
	tpl := &workflow.Template{Name: "t", Tasks: []workflow.Task{{Name: "a", Worker: agent, Actions: []workflow.Action{{Name: "x", Image: "busybox", Timeout: 5}}}}}
	return workflow.New(namespace, name, name, "t", tpl, created)
}

func create(t *testing.T, s store.Store, wfs ...*workflow.Workflow) {
	t.Helper()
	for _, w := range wfs {
		if err := s.Create(context.Background(), w); err != nil {
			t.Fatalf("creating %s: %v", w.ID(), err)
		}
	}
}

func names(wfs []*workflow.Workflow) []string {
	out := []string{}
	for _, w := range wfs {
		out = append(out, w.Name)
	}
	return out
}

func testCRUD(t *testing.T, open Open) {
	ctx := context.Background()
	s, ns := open(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w2 := NewWorkflow(ns, "wk01", "aa:00:00:00:00:02", now.Add(time.Minute))
	w1 := NewWorkflow(ns, "cp01", "AA:00:00:00:00:01", now)
	w1b := NewWorkflow(ns, "cp01-again", "aa:00:00:00:00:01", now.Add(time.Hour))
	create(t, s, w2, w1, w1b)
	if err := s.Create(ctx, w1); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if _, err := s.Get(ctx, ns+"/nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	byAgent, err := s.ListByAgent(ctx, "aa:00:00:00:00:01")
	if got := fmt.Sprint(names(byAgent)); err != nil || got != "[cp01 cp01-again]" {
		t.Fatalf("ListByAgent = %s, %v; want [cp01 cp01-again] (oldest first)", got, err)
	}
	all, err := s.List(ctx)
	if got := fmt.Sprint(names(all)); err != nil || got != "[cp01 cp01-again wk01]" {
		t.Fatalf("List = %s, %v; want sorted by id", got, err)
	}
	if err := s.Delete(ctx, w2.ID()); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, w2.ID()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.Get(ctx, w2.ID()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if n, err := store.Ensure(ctx, s, []*workflow.Workflow{w1, w2}); err != nil || n != 1 {
		t.Fatalf("Ensure created %d (%v), want 1: only the deleted one", n, err)
	}
}

func testUpdate(t *testing.T, open Open) {
	ctx := context.Background()
	s, ns := open(t)
	w := NewWorkflow(ns, "cp01", "aa:00:00:00:00:01", time.Now())
	create(t, s, w)
	boom := errors.New("boom")
	if _, err := s.Update(ctx, w.ID(), func(w *workflow.Workflow) error { w.State = workflow.StateFailed; return boom }); !errors.Is(err, boom) {
		t.Fatalf("update error not returned: %v", err)
	}
	if got, err := s.Get(ctx, w.ID()); err != nil || got.State != workflow.StatePending {
		t.Fatalf("failed update was stored: %v, %v", got, err)
	}
	if _, err := s.Update(ctx, w.ID(), func(w *workflow.Workflow) error { w.Name = "other"; return nil }); err == nil {
		t.Fatal("rename through update accepted")
	}
	if _, err := s.Update(ctx, w.ID(), func(w *workflow.Workflow) error { w.State = workflow.StateRunning; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, ns+"/nope", func(*workflow.Workflow) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of a missing workflow: %v", err)
	}
	got, err := s.Get(ctx, w.ID())
	if err != nil || got.State != workflow.StateRunning {
		t.Fatalf("update not stored: %v, %v", got, err)
	}
}

// testRoundTrip drives a two-task workflow through the state machine and
// checks that every field reads back exactly as it was written.
func testRoundTrip(t *testing.T, open Open) {
	ctx := context.Background()
	s, ns := open(t)
	tpl := &workflow.Template{Name: "ubuntu", GlobalTimeout: 3600, Tasks: []workflow.Task{
		{Name: "os", Worker: "aa:00:00:00:00:01", Volumes: []string{"/dev:/dev"}, Environment: map[string]string{"A": "1"}, Actions: []workflow.Action{
			{Name: "stream", Image: "quay.io/tinkerbell/actions/image2disk:latest", Timeout: 600, Environment: map[string]string{"B": "2"}, Namespaces: &workflow.Namespaces{PID: "host"}},
			{Name: "cfg", Image: "writefile", Timeout: 60, Command: []string{"sh", "-c", "true"}, Volumes: []string{"/a:/b"}, Pid: "host"},
		}},
		{Name: "post", Worker: "aa:00:00:00:00:01", Actions: []workflow.Action{{Name: "reboot", Image: "reboot", Timeout: 30}}},
	}}
	start := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	w := workflow.New(ns, "cp01", "cp01-hw", "ubuntu", tpl, start)
	create(t, s, w)
	steps := []func(*workflow.Workflow) error{
		func(w *workflow.Workflow) error {
			return w.Apply(workflow.Report{TaskID: w.Tasks[0].ID, ActionID: w.Tasks[0].Actions[0].ID, State: workflow.StateRunning, Start: start.Add(1500 * time.Millisecond)}, start.Add(2*time.Second))
		},
		func(w *workflow.Workflow) error {
			w.AppendLog(workflow.Ref{}, "wrote 1 MiB", "wrote 2 MiB")
			return nil
		},
		func(w *workflow.Workflow) error {
			return w.Apply(workflow.Report{TaskID: w.Tasks[0].ID, ActionID: w.Tasks[0].Actions[0].ID, State: workflow.StateSuccess, Message: "done", Stop: start.Add(70*time.Second + 250*time.Millisecond)}, start.Add(71*time.Second))
		},
		func(w *workflow.Workflow) error {
			return w.Apply(workflow.Report{TaskID: w.Tasks[0].ID, ActionID: w.Tasks[0].Actions[1].ID, State: workflow.StateFailed, Message: "exit status 3\nsecond line"}, start.Add(80*time.Second))
		},
	}
	var want *workflow.Workflow
	for i, step := range steps {
		var err error
		if want, err = s.Update(ctx, w.ID(), step); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got, err := s.Get(ctx, w.ID())
		if err != nil {
			t.Fatal(err)
		}
		if g, wnt := asJSON(t, got), asJSON(t, want); g != wnt {
			t.Fatalf("step %d: stored workflow reads back differently:\n got %s\nwant %s", i, g, wnt)
		}
	}
	if want.State != workflow.StateFailed || want.Reason == "" {
		t.Fatalf("final state %s reason %q", want.State, want.Reason)
	}
	reset, err := s.Update(ctx, w.ID(), func(w *workflow.Workflow) error { w.Reset(); return nil })
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, w.ID())
	if err != nil || asJSON(t, got) != asJSON(t, reset) || got.State != workflow.StatePending || got.Tasks[0].Actions[0].Log != nil {
		t.Fatalf("after reset: %+v, %v", got, err)
	}
}

func asJSON(t *testing.T, w *workflow.Workflow) string {
	t.Helper()
	raw, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// testConcurrent races updaters on one workflow: each appends a log line,
// and none may be lost.
func testConcurrent(t *testing.T, open Open) {
	ctx := context.Background()
	s, ns := open(t)
	w := NewWorkflow(ns, "cp01", "aa:00:00:00:00:01", time.Now())
	create(t, s, w)
	const updaters, each = 2, 10
	var wg sync.WaitGroup
	for u := 0; u < updaters; u++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := s.Update(ctx, w.ID(), func(w *workflow.Workflow) error {
					w.AppendLog(workflow.Ref{}, fmt.Sprintf("updater %d line %d", u, i))
					return nil
				}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, err := s.Get(ctx, w.ID())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Tasks[0].Actions[0].Log); n != updaters*each {
		t.Fatalf("%d log lines after %d concurrent appends (lost updates)", n, updaters*each)
	}
}

func testAgentIndex(t *testing.T, open Open) {
	ctx := context.Background()
	s, ns := open(t)
	two := &workflow.Template{Name: "t", Tasks: []workflow.Task{
		{Name: "a", Worker: "AA:00:00:00:00:01", Actions: []workflow.Action{{Name: "x", Image: "busybox", Timeout: 5}}},
		{Name: "b", Worker: "aa:00:00:00:00:02", Actions: []workflow.Action{{Name: "y", Image: "busybox", Timeout: 5}}},
	}}
	w := workflow.New(ns, "multi", "multi", "t", two, time.Now())
	create(t, s, w, NewWorkflow(ns, "other", "aa:00:00:00:00:03", time.Now()), NewWorkflow(ns, "named", "worker-7", time.Now()))
	for _, agent := range []string{"aa:00:00:00:00:01", "AA:00:00:00:00:02"} {
		if got, err := s.ListByAgent(ctx, agent); err != nil || fmt.Sprint(names(got)) != "[multi]" {
			t.Fatalf("ListByAgent(%s) = %v, %v", agent, names(got), err)
		}
	}
	if got, err := s.ListByAgent(ctx, "Worker-7"); err != nil || fmt.Sprint(names(got)) != "[named]" {
		t.Fatalf("ListByAgent(Worker-7) = %v, %v", names(got), err)
	}
	// A prefix of another agent id must not match.
	if got, err := s.ListByAgent(ctx, "aa:00:00:00:00:0"); err != nil || len(got) != 0 {
		t.Fatalf("prefix matched: %v, %v", names(got), err)
	}
	if err := s.Delete(ctx, w.ID()); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ListByAgent(ctx, "aa:00:00:00:00:01"); err != nil || len(got) != 0 {
		t.Fatalf("deleted workflow still indexed: %v, %v", names(got), err)
	}
}
