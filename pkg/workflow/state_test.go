package workflow

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var tplNow = time.Date(2026, 11, 21, 20, 0, 0, 0, time.UTC)

const agent = "cc:48:3a:00:00:01"

func twoActionTemplate(last string) *Template {
	return &Template{Name: "t", GlobalTimeout: 600, Tasks: []Task{{
		Name: "install", Worker: agent,
		Environment: map[string]string{"A": "task", "B": "task"},
		Volumes:     []string{"/dev:/dev"},
		Actions: []Action{
			{Name: "stream", Image: "quay.io/tinkerbell/actions/image2disk:latest", Timeout: 60, Environment: map[string]string{"B": "action"}, Volumes: []string{"/x:/y"}},
			{Name: "finish", Image: last, Timeout: 30},
		},
	}}}
}

func report(w *Workflow, r Ref, s State, msg string, at time.Time) error {
	return w.Apply(Report{TaskID: w.Tasks[r.Task].ID, ActionID: w.Action(r).ID, AgentID: agent, State: s, Message: msg}, at)
}

func TestHappyPath(t *testing.T) {
	w := New("", "cp01", "cp01", "t", twoActionTemplate("busybox"), tplNow)
	if w.State != StatePending || w.ID() != "eksa-system/cp01" || w.AgentID != agent {
		t.Fatalf("new workflow = %+v", w)
	}
	if _, err := w.Next("11:22:33:44:55:66", tplNow); !errors.Is(err, ErrNoAction) {
		t.Fatalf("other agent: %v", err)
	}
	r, err := w.Next(strings.ToUpper(agent), tplNow)
	if err != nil || r != (Ref{0, 0}) {
		t.Fatalf("Next = %v, %v", r, err)
	}
	if env := strings.Join(w.Env(r), ","); env != "A=task,B=action" {
		t.Errorf("env = %s", env)
	}
	if v := strings.Join(w.AllVolumes(r), ","); v != "/dev:/dev,/x:/y" {
		t.Errorf("volumes = %s", v)
	}
	steps := []struct {
		ref   Ref
		state State
		wf    State
	}{
		{Ref{0, 0}, StateRunning, StateRunning},
		{Ref{0, 0}, StateRunning, StateRunning}, // retried report
		{Ref{0, 0}, StateSuccess, StateRunning},
		{Ref{0, 1}, StateRunning, StateRunning},
		{Ref{0, 1}, StateSuccess, StateSuccess},
	}
	at := tplNow
	for i, s := range steps {
		at = at.Add(time.Second)
		if s.state == StateRunning {
			got, err := w.Next(agent, at)
			if err != nil || got != s.ref {
				t.Fatalf("step %d: Next = %v, %v; want %v", i, got, err, s.ref)
			}
		}
		if err := report(w, s.ref, s.state, "", at); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if w.State != s.wf {
			t.Fatalf("step %d: workflow %s, want %s", i, w.State, s.wf)
		}
	}
	if w.Deadline != tplNow.Add(time.Second+600*time.Second) {
		t.Errorf("deadline = %v", w.Deadline)
	}
	if d := w.Tasks[0].Actions[0].Duration(at); d != 2*time.Second {
		t.Errorf("duration = %v", d)
	}
	if _, err := w.Next(agent, at); !errors.Is(err, ErrNotRunnable) {
		t.Errorf("Next on finished workflow: %v", err)
	}
}

func TestIllegalTransitions(t *testing.T) {
	cases := []struct {
		name  string
		setup func(w *Workflow)
		ref   Ref
		state State
		want  error
	}{
		{"pending report", nil, Ref{0, 0}, StatePending, ErrBadReport},
		{"skip ahead", nil, Ref{0, 1}, StateRunning, ErrBadReport},
		{"finish ahead", nil, Ref{0, 1}, StateSuccess, ErrBadReport},
		{"success to running", func(w *Workflow) {
			_ = report(w, Ref{0, 0}, StateRunning, "", tplNow)
			_ = report(w, Ref{0, 0}, StateSuccess, "", tplNow)
		}, Ref{0, 0}, StateRunning, ErrBadReport},
		{"after failure", func(w *Workflow) {
			_ = report(w, Ref{0, 0}, StateRunning, "", tplNow)
			_ = report(w, Ref{0, 0}, StateFailed, "boom", tplNow)
		}, Ref{0, 1}, StateRunning, ErrNotRunnable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := New("", "cp01", "cp01", "t", twoActionTemplate("busybox"), tplNow)
			if tc.setup != nil {
				tc.setup(w)
			}
			if err := report(w, tc.ref, tc.state, "", tplNow); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	w := New("", "cp01", "cp01", "t", twoActionTemplate("busybox"), tplNow)
	if err := w.Apply(Report{TaskID: "nope", ActionID: "x", State: StateRunning}, tplNow); !errors.Is(err, ErrUnknownAction) {
		t.Errorf("unknown action: %v", err)
	}
	if err := w.Apply(Report{TaskID: w.Tasks[0].ID, ActionID: w.Tasks[0].Actions[0].ID, AgentID: "other", State: StateRunning}, tplNow); !errors.Is(err, ErrBadReport) {
		t.Errorf("wrong agent: %v", err)
	}
}

func TestFailureAndReset(t *testing.T) {
	w := New("", "cp01", "cp01", "t", twoActionTemplate("busybox"), tplNow)
	_ = report(w, Ref{0, 0}, StateRunning, "", tplNow)
	for i := 0; i < LogTailLines+10; i++ {
		w.AppendLog(Ref{0, 0}, fmt.Sprintf("line %d", i))
	}
	if err := report(w, Ref{0, 0}, StateFailed, "image2disk: unexpected EOF after 3 MiB", tplNow.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if w.State != StateFailed || !strings.Contains(w.Reason, `action "stream" FAILED: image2disk: unexpected EOF`) {
		t.Fatalf("state %s reason %q", w.State, w.Reason)
	}
	if n := len(w.Tasks[0].Actions[0].Log); n != LogTailLines || w.Tasks[0].Actions[0].Log[n-1] != "line 59" {
		t.Errorf("log tail = %d lines ending %q", n, w.Tasks[0].Actions[0].Log[n-1])
	}
	oldID := w.Tasks[0].Actions[0].ID
	if _, err := w.Next(agent, tplNow); !errors.Is(err, ErrNotRunnable) {
		t.Fatalf("finished workflow served an action: %v", err)
	}
	w.Reset()
	if w.State != StatePending || w.Reason != "" || w.Tasks[0].Actions[0].State != StatePending || w.Tasks[0].Actions[0].Log != nil {
		t.Fatalf("after reset: %+v", w)
	}
	if w.Tasks[0].Actions[0].ID == oldID {
		t.Error("reset kept action ids; stale reports from the old run would apply")
	}
	if r, err := w.Next(agent, tplNow); err != nil || r != (Ref{0, 0}) {
		t.Fatalf("after reset Next = %v, %v", r, err)
	}
}

func TestRestartReservesRunningAction(t *testing.T) {
	w := New("", "cp01", "cp01", "t", twoActionTemplate("busybox"), tplNow)
	_ = report(w, Ref{0, 0}, StateRunning, "", tplNow)
	if r, err := w.Next(agent, tplNow.Add(time.Second)); err != nil || r != (Ref{0, 0}) {
		t.Fatalf("Next while RUNNING = %v, %v; want the same action again", r, err)
	}
}

func TestServerTimeouts(t *testing.T) {
	const grace = 10 * time.Second
	t.Run("action", func(t *testing.T) {
		w := New("", "cp01", "cp01", "t", twoActionTemplate("busybox"), tplNow)
		_ = report(w, Ref{0, 0}, StateRunning, "", tplNow)
		if w.Expire(tplNow.Add(60*time.Second+grace), grace, time.Hour) {
			t.Fatal("expired at exactly timeout+grace")
		}
		if !w.Expire(tplNow.Add(61*time.Second+grace), grace, time.Hour) {
			t.Fatal("not expired after timeout+grace")
		}
		if w.State != StateTimeout || w.Tasks[0].Actions[0].State != StateTimeout {
			t.Fatalf("state %s / %s", w.State, w.Tasks[0].Actions[0].State)
		}
	})
	t.Run("global", func(t *testing.T) {
		tpl := twoActionTemplate("busybox")
		tpl.GlobalTimeout = 20
		w := New("", "cp01", "cp01", "t", tpl, tplNow)
		_ = report(w, Ref{0, 0}, StateRunning, "", tplNow)
		if !w.Expire(tplNow.Add(21*time.Second), grace, time.Hour) || w.State != StateTimeout || !strings.Contains(w.Reason, "global_timeout") {
			t.Fatalf("state %s reason %q", w.State, w.Reason)
		}
	})
	t.Run("agent timeout report", func(t *testing.T) {
		w := New("", "cp01", "cp01", "t", twoActionTemplate("busybox"), tplNow)
		_ = report(w, Ref{0, 0}, StateRunning, "", tplNow)
		_ = report(w, Ref{0, 0}, StateTimeout, "action timed out after 1m0s", tplNow)
		if w.State != StateTimeout {
			t.Fatalf("state %s", w.State)
		}
	})
	t.Run("pending is never expired", func(t *testing.T) {
		w := New("", "cp01", "cp01", "t", twoActionTemplate("busybox"), tplNow)
		if w.Expire(tplNow.Add(24*time.Hour), grace, time.Minute) {
			t.Fatal("a workflow nobody picked up timed out")
		}
	})
}

func TestFinalReboot(t *testing.T) {
	const leave = 30 * time.Second
	start := func(image string) *Workflow {
		w := New("", "cp01", "cp01", "t", twoActionTemplate(image), tplNow)
		_ = report(w, Ref{0, 0}, StateRunning, "", tplNow)
		_ = report(w, Ref{0, 0}, StateSuccess, "", tplNow)
		_, _ = w.Next(agent, tplNow)
		_ = report(w, Ref{0, 1}, StateRunning, "", tplNow)
		return w
	}
	t.Run("machine leaves", func(t *testing.T) {
		w := start("127.0.0.1/embedded/reboot")
		if w.Expire(tplNow.Add(leave-time.Second), time.Second, leave) {
			t.Fatal("finished before the agent was silent long enough")
		}
		if !w.Expire(tplNow.Add(leave), time.Second, leave) || w.State != StateSuccess {
			t.Fatalf("state %s", w.State)
		}
	})
	t.Run("machine returns", func(t *testing.T) {
		w := start("quay.io/tinkerbell/actions/kexec:latest")
		if _, err := w.Next(agent, tplNow.Add(5*time.Second)); !errors.Is(err, ErrNotRunnable) || w.State != StateSuccess {
			t.Fatalf("Next = %v, state %s", err, w.State)
		}
	})
	t.Run("agent reports before reboot", func(t *testing.T) {
		w := start("quay.io/tinkerbell/actions/reboot:latest")
		if err := report(w, Ref{0, 1}, StateSuccess, "rebooting", tplNow); err != nil || w.State != StateSuccess {
			t.Fatalf("err %v state %s", err, w.State)
		}
	})
	t.Run("not for ordinary actions", func(t *testing.T) {
		w := start("busybox")
		if w.Expire(tplNow.Add(leave), time.Minute, leave) {
			t.Fatal("an ordinary last action finished because the agent was silent")
		}
	})
}
