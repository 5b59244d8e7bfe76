package kube

import (
	"strings"
	"testing"
	"time"

	tinkv1 "github.com/tinkerbell/tink/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kiln-dev/kiln/pkg/workflow"
)

func TestAgentLabel(t *testing.T) {
	tests := []struct {
		agent, want string
	}{
		{"cc:48:3A:00:00:01", "agent.kiln.dev/cc-48-3a-00-00-01"},
		{" cc:48:3a:00:00:01 ", "agent.kiln.dev/cc-48-3a-00-00-01"},
		{"worker-7", "agent.kiln.dev/worker-7"},
		{"10.0.0.5", "agent.kiln.dev/10.0.0.5"},
		{"-leading", "agent.kiln.dev/sha256-"},
		{"has space", "agent.kiln.dev/sha256-"},
		{strings.Repeat("a", 64), "agent.kiln.dev/sha256-"},
		{"", "agent.kiln.dev/sha256-"},
		{"ÄÖ:ü", "agent.kiln.dev/sha256-"},
		{"a/b=c", "agent.kiln.dev/sha256-"},
	}
	for _, tt := range tests {
		got := AgentLabel(tt.agent)
		ok := got == tt.want
		if strings.HasSuffix(tt.want, "sha256-") {
			ok = strings.HasPrefix(got, tt.want) && len(got) > len(tt.want)
		}
		if !ok {
			t.Errorf("AgentLabel(%q) = %q, want %q…", tt.agent, got, tt.want)
		}
		if errs := validation.IsQualifiedName(got); len(errs) > 0 {
			t.Errorf("AgentLabel(%q) = %q is not a label key: %v", tt.agent, got, errs)
		}
		if upper := AgentLabel(strings.ToUpper(tt.agent)); upper != got {
			t.Errorf("AgentLabel depends on case: %q → %q, upper case → %q", tt.agent, got, upper)
		}
	}
}

func TestStates(t *testing.T) {
	for _, s := range []workflow.State{workflow.StatePending, workflow.StateRunning, workflow.StateSuccess, workflow.StateFailed, workflow.StateTimeout} {
		if got := kilnState(tinkState(s)); got != s {
			t.Errorf("%s → %s → %s", s, tinkState(s), got)
		}
	}
	for tink, want := range map[tinkv1.WorkflowState]workflow.State{
		tinkv1.WorkflowStatePending: workflow.StatePending, tinkv1.WorkflowStatePreparing: workflow.StateRunning,
		tinkv1.WorkflowStatePost: workflow.StateRunning, "": workflow.StatePending, tinkv1.WorkflowStateTimeout: workflow.StateTimeout,
	} {
		if got := kilnState(tink); got != want {
			t.Errorf("kilnState(%q) = %s, want %s", tink, got, want)
		}
	}
}

// TestForeignStartedAt: when another writer (a Tinkerbell server) set an
// action's startedAt/seconds, kiln reads those instead of its own times.
func TestForeignStartedAt(t *testing.T) {
	tpl := &workflow.Template{Name: "t", Tasks: []workflow.Task{{Name: "a", Worker: "aa:00:00:00:00:01", Actions: []workflow.Action{{Name: "x", Image: "busybox", Timeout: 5}}}}}
	w := workflow.New("ns", "wf", "hw", "t", tpl, time.Now())
	start := time.Date(2026, 1, 1, 0, 0, 0, 500, time.UTC)
	w.Tasks[0].Actions[0].StartedAt, w.Tasks[0].Actions[0].State = start, workflow.StateRunning
	obj := toObject(w)
	if err := setStatus(obj, w); err != nil {
		t.Fatal(err)
	}
	got, err := fromObject(obj)
	if err != nil || !got.Tasks[0].Actions[0].StartedAt.Equal(start) {
		t.Fatalf("own exact start lost: %v, %v", got.Tasks[0].Actions[0].StartedAt, err)
	}
	foreign := metav1.NewTime(start.Add(time.Hour).Truncate(time.Second))
	a := &obj.Status.Tasks[0].Actions[0]
	a.StartedAt, a.Seconds, a.Status = &foreign, 42, tinkv1.WorkflowStateSuccess
	got, err = fromObject(obj)
	ga := got.Tasks[0].Actions[0]
	if err != nil || !ga.StartedAt.Equal(foreign.Time) || ga.Duration(time.Now()) != 42*time.Second || ga.State != workflow.StateSuccess {
		t.Fatalf("foreign update not read: %+v, %v", ga, err)
	}
	obj.Status.Conditions[len(obj.Status.Conditions)-1].Message = "{"
	if _, err := fromObject(obj); err == nil || !strings.Contains(err.Error(), string(ExtensionCondition)) {
		t.Fatalf("corrupt extension: %v", err)
	}
}
