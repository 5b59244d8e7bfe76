package workflow

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// State is the state of an action or a whole workflow. The values are the
// tinkerbell.org/v1alpha1 ones (no STATE_ prefix).
type State string

// Workflow and action states.
const (
	StatePending State = "PENDING"
	StateRunning State = "RUNNING"
	StateSuccess State = "SUCCESS"
	StateFailed  State = "FAILED"
	StateTimeout State = "TIMEOUT"
)

// Terminal reports whether no further transition happens without a reset.
func (s State) Terminal() bool {
	return s == StateSuccess || s == StateFailed || s == StateTimeout
}

// DefaultNamespace is the namespace workflows get when none is given; it is
// the namespace EKS Anywhere keeps its Tinkerbell objects in.
const DefaultNamespace = "eksa-system"

// LogTailLines is how many log lines are kept per action.
const LogTailLines = 50

// Workflow is one machine's provisioning run: the rendered template plus the
// state of every action. It maps onto a tinkerbell.org/v1alpha1 Workflow
// (spec: template + hardware refs; status: state, tasks, currentState).
type Workflow struct {
	Namespace     string    `json:"namespace"`
	Name          string    `json:"name"`
	Hardware      string    `json:"hardware"`
	Template      string    `json:"template"`
	AgentID       string    `json:"agentID"`
	State         State     `json:"state"`
	Reason        string    `json:"reason,omitempty"`
	GlobalTimeout int64     `json:"globalTimeout"`
	CreatedAt     time.Time `json:"createdAt"`
	StartedAt     time.Time `json:"startedAt,omitzero"`
	FinishedAt    time.Time `json:"finishedAt,omitzero"`
	// Deadline is StartedAt + GlobalTimeout once the first action runs.
	Deadline time.Time `json:"deadline,omitzero"`
	// LastSeen is the last time the agent called the worker API.
	LastSeen time.Time    `json:"lastSeen,omitzero"`
	Tasks    []TaskStatus `json:"tasks"`
}

// TaskStatus is one task of a running workflow.
type TaskStatus struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	AgentID     string            `json:"agentID"`
	Volumes     []string          `json:"volumes,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	Actions     []ActionStatus    `json:"actions"`
}

// ActionStatus is one action of a running workflow and what happened to it.
type ActionStatus struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Image       string            `json:"image"`
	Timeout     int64             `json:"timeout"`
	Command     []string          `json:"command,omitempty"`
	Volumes     []string          `json:"volumes,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	Pid         string            `json:"pid,omitempty"`
	Namespaces  *Namespaces       `json:"namespaces,omitempty"`
	State       State             `json:"state"`
	StartedAt   time.Time         `json:"startedAt,omitzero"`
	FinishedAt  time.Time         `json:"finishedAt,omitzero"`
	Message     string            `json:"message,omitempty"`
	Log         []string          `json:"log,omitempty"`
}

// Duration is how long the action ran (so far, if still running).
func (a *ActionStatus) Duration(now time.Time) time.Duration {
	switch {
	case a.StartedAt.IsZero():
		return 0
	case a.FinishedAt.IsZero():
		return now.Sub(a.StartedAt)
	}
	return a.FinishedAt.Sub(a.StartedAt)
}

// New builds a PENDING workflow from a rendered template. Task and action
// ids are random (unique per run).
func New(namespace, name, hardwareName, templateName string, t *Template, now time.Time) *Workflow {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	w := &Workflow{
		Namespace: namespace, Name: name, Hardware: hardwareName, Template: templateName,
		State: StatePending, GlobalTimeout: t.GlobalTimeout, CreatedAt: now.UTC(),
	}
	for _, task := range t.Tasks {
		ts := TaskStatus{
			ID: newID(), Name: task.Name, AgentID: strings.TrimSpace(task.Worker),
			Volumes: task.Volumes, Environment: task.Environment,
		}
		for _, a := range task.Actions {
			ts.Actions = append(ts.Actions, ActionStatus{
				ID: newID(), Name: a.Name, Image: a.Image, Timeout: a.Timeout, Command: a.Command,
				Volumes: a.Volumes, Environment: a.Environment, Pid: a.Pid, Namespaces: a.Namespaces,
				State: StatePending,
			})
		}
		w.Tasks = append(w.Tasks, ts)
	}
	if len(w.Tasks) > 0 {
		w.AgentID = w.Tasks[0].AgentID
	}
	return w
}

func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ID is the worker-API workflow id, "<namespace>/<name>".
func (w *Workflow) ID() string { return w.Namespace + "/" + w.Name }

// Errors GetAction-style look-ups return; the worker API maps them onto the
// gRPC codes Tinkerbell's agent expects.
var (
	// ErrNoAction: nothing to run for this agent now (gRPC NotFound).
	ErrNoAction = errors.New("no action for this agent")
	// ErrNotRunnable: the workflow is finished or disabled (gRPC FailedPrecondition).
	ErrNotRunnable = errors.New("workflow is not runnable")
	// ErrUnknownAction: a report names an action the workflow does not have.
	ErrUnknownAction = errors.New("unknown task or action")
	// ErrBadReport: a report is not a legal transition.
	ErrBadReport = errors.New("invalid status report")
)

// Ref addresses one action in a workflow.
type Ref struct {
	Task, Action int
}

// Next returns the action agentID should run now: the first action that is
// not SUCCESS, re-serving a RUNNING action after an agent or server restart.
// It records that the agent was seen.
func (w *Workflow) Next(agentID string, now time.Time) (Ref, error) {
	if w.State.Terminal() {
		return Ref{}, fmt.Errorf("%w: %s is %s", ErrNotRunnable, w.ID(), w.State)
	}
	for ti := range w.Tasks {
		t := &w.Tasks[ti]
		for ai := range t.Actions {
			a := &t.Actions[ai]
			if a.State == StateSuccess {
				continue
			}
			if !strings.EqualFold(t.AgentID, agentID) {
				return Ref{}, fmt.Errorf("%w: next action %q of %s belongs to worker %s", ErrNoAction, a.Name, w.ID(), t.AgentID)
			}
			w.LastSeen = now.UTC()
			if a.State == StateRunning && IsRebootAction(a.Image) && w.isLast(ti, ai) {
				// The machine came back asking for work while its final
				// reboot was running: the reboot happened.
				w.finishAction(ti, ai, StateSuccess, "machine rebooted (agent returned after the final reboot action)", now)
				return Ref{}, fmt.Errorf("%w: %s finished", ErrNotRunnable, w.ID())
			}
			return Ref{Task: ti, Action: ai}, nil
		}
	}
	return Ref{}, fmt.Errorf("%w: all actions of %s succeeded", ErrNoAction, w.ID())
}

// Action returns the action at r.
func (w *Workflow) Action(r Ref) *ActionStatus { return &w.Tasks[r.Task].Actions[r.Action] }

// Find locates an action by task and action id.
func (w *Workflow) Find(taskID, actionID string) (Ref, error) {
	for ti, t := range w.Tasks {
		if t.ID != taskID {
			continue
		}
		for ai, a := range t.Actions {
			if a.ID == actionID {
				return Ref{Task: ti, Action: ai}, nil
			}
		}
	}
	return Ref{}, fmt.Errorf("%w: task %q action %q in %s", ErrUnknownAction, taskID, actionID, w.ID())
}

func (w *Workflow) isLast(ti, ai int) bool {
	return ti == len(w.Tasks)-1 && ai == len(w.Tasks[ti].Actions)-1
}

// Report is a status report from an agent.
type Report struct {
	TaskID, ActionID string
	AgentID          string
	State            State
	Message          string
	Start, Stop      time.Time
}

// Apply applies an agent's status report. Reports for a finished workflow or
// that would move an action backwards are rejected; a repeated identical
// report is accepted (agents retry).
func (w *Workflow) Apply(r Report, now time.Time) error {
	ref, err := w.Find(r.TaskID, r.ActionID)
	if err != nil {
		return err
	}
	t := &w.Tasks[ref.Task]
	if r.AgentID != "" && !strings.EqualFold(t.AgentID, r.AgentID) {
		return fmt.Errorf("%w: task %q of %s belongs to worker %s, not %s", ErrBadReport, t.Name, w.ID(), t.AgentID, r.AgentID)
	}
	a := &t.Actions[ref.Action]
	w.LastSeen = now.UTC()
	if r.State == StatePending || r.State == "" {
		return fmt.Errorf("%w: state %q cannot be reported", ErrBadReport, r.State)
	}
	if a.State == r.State {
		return nil // retried report
	}
	if w.State.Terminal() {
		return fmt.Errorf("%w: %s is already %s; reset it to run again", ErrNotRunnable, w.ID(), w.State)
	}
	for _, earlier := range w.before(ref) {
		if earlier.State != StateSuccess {
			return fmt.Errorf("%w: action %q cannot run before %q succeeded", ErrBadReport, a.Name, earlier.Name)
		}
	}
	switch r.State {
	case StateRunning:
		if a.State != StatePending {
			return fmt.Errorf("%w: action %q is %s, cannot become RUNNING", ErrBadReport, a.Name, a.State)
		}
		start := r.Start
		if start.IsZero() {
			start = now
		}
		a.State, a.StartedAt, a.Message = StateRunning, start.UTC(), r.Message
		if w.State == StatePending {
			w.State, w.StartedAt = StateRunning, now.UTC()
			if w.GlobalTimeout > 0 {
				w.Deadline = w.StartedAt.Add(time.Duration(w.GlobalTimeout) * time.Second)
			}
		}
	case StateSuccess, StateFailed, StateTimeout:
		if a.State != StateRunning && a.State != StatePending {
			return fmt.Errorf("%w: action %q is already %s", ErrBadReport, a.Name, a.State)
		}
		if a.StartedAt.IsZero() {
			a.StartedAt = r.Start.UTC()
			if a.StartedAt.IsZero() {
				a.StartedAt = now.UTC()
			}
		}
		if w.State == StatePending {
			w.State, w.StartedAt = StateRunning, now.UTC()
		}
		stop := r.Stop
		if stop.IsZero() {
			stop = now
		}
		w.finishAction(ref.Task, ref.Action, r.State, r.Message, stop)
	default:
		return fmt.Errorf("%w: state %q cannot be reported", ErrBadReport, r.State)
	}
	return nil
}

func (w *Workflow) before(r Ref) []*ActionStatus {
	var out []*ActionStatus
	for ti := 0; ti <= r.Task; ti++ {
		for ai := range w.Tasks[ti].Actions {
			if ti == r.Task && ai >= r.Action {
				break
			}
			out = append(out, &w.Tasks[ti].Actions[ai])
		}
	}
	return out
}

// finishAction sets a final action state and derives the workflow state.
func (w *Workflow) finishAction(ti, ai int, s State, msg string, at time.Time) {
	a := &w.Tasks[ti].Actions[ai]
	a.State, a.FinishedAt = s, at.UTC()
	if msg != "" {
		a.Message = msg
	}
	switch {
	case s != StateSuccess:
		w.State, w.FinishedAt = s, at.UTC()
		w.Reason = fmt.Sprintf("task %q action %q %s: %s", w.Tasks[ti].Name, a.Name, s, a.Message)
	case w.isLast(ti, ai):
		w.State, w.FinishedAt = StateSuccess, at.UTC()
	}
}

// Expire enforces timeouts on the server side: a RUNNING action that has
// run past its timeout plus grace becomes TIMEOUT, as does a workflow past
// its global deadline. A final reboot/kexec action that is RUNNING and whose
// agent has been silent for leaveAfter counts as SUCCESS (the machine left to
// reboot). It reports whether anything changed.
func (w *Workflow) Expire(now time.Time, grace, leaveAfter time.Duration) bool {
	if w.State != StateRunning {
		return false
	}
	for ti := range w.Tasks {
		for ai := range w.Tasks[ti].Actions {
			a := &w.Tasks[ti].Actions[ai]
			if a.State != StateRunning {
				continue
			}
			if IsRebootAction(a.Image) && w.isLast(ti, ai) && !w.LastSeen.IsZero() && now.Sub(w.LastSeen) >= leaveAfter {
				w.finishAction(ti, ai, StateSuccess, fmt.Sprintf("machine left after the final %s action (agent silent for %s)", ImageName(a.Image), now.Sub(w.LastSeen).Round(time.Second)), now)
				return true
			}
			limit := a.StartedAt.Add(time.Duration(a.Timeout)*time.Second + grace)
			if now.After(limit) {
				w.finishAction(ti, ai, StateTimeout, fmt.Sprintf("no result from the agent within the action timeout of %ds (enforced by the server)", a.Timeout), now)
				return true
			}
		}
	}
	if !w.Deadline.IsZero() && now.After(w.Deadline) {
		w.State, w.FinishedAt = StateTimeout, now.UTC()
		w.Reason = fmt.Sprintf("global_timeout of %ds exceeded", w.GlobalTimeout)
		for ti := range w.Tasks {
			for ai := range w.Tasks[ti].Actions {
				if a := &w.Tasks[ti].Actions[ai]; a.State == StateRunning {
					a.State, a.FinishedAt, a.Message = StateTimeout, now.UTC(), "workflow global_timeout exceeded"
				}
			}
		}
		return true
	}
	return false
}

// Reset puts every action back to PENDING so the workflow runs again. It is
// the only way to re-run a finished workflow.
func (w *Workflow) Reset() {
	w.State, w.Reason = StatePending, ""
	w.StartedAt, w.FinishedAt, w.Deadline, w.LastSeen = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	for ti := range w.Tasks {
		for ai := range w.Tasks[ti].Actions {
			a := &w.Tasks[ti].Actions[ai]
			a.State, a.Message, a.Log = StatePending, "", nil
			a.StartedAt, a.FinishedAt = time.Time{}, time.Time{}
			a.ID = newID()
		}
	}
}

// AppendLog adds lines to an action's log tail, keeping the last LogTailLines.
func (w *Workflow) AppendLog(r Ref, lines ...string) {
	a := w.Action(r)
	a.Log = append(a.Log, lines...)
	if n := len(a.Log); n > LogTailLines {
		a.Log = append([]string(nil), a.Log[n-LogTailLines:]...)
	}
}

// Env returns the action's environment merged under its task's (action
// wins) as sorted K=V strings, as the worker API sends it.
func (w *Workflow) Env(r Ref) []string {
	merged := map[string]string{}
	for k, v := range w.Tasks[r.Task].Environment {
		merged[k] = v
	}
	for k, v := range w.Action(r).Environment {
		merged[k] = v
	}
	out := make([]string, 0, len(merged))
	for k, v := range merged {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// AllVolumes returns task volumes followed by action volumes.
func (w *Workflow) AllVolumes(r Ref) []string {
	return append(append([]string(nil), w.Tasks[r.Task].Volumes...), w.Action(r).Volumes...)
}

// Current returns the action that runs now or ran last, for display.
func (w *Workflow) Current() (Ref, bool) {
	var last Ref
	found := false
	for ti := range w.Tasks {
		for ai, a := range w.Tasks[ti].Actions {
			if a.State != StatePending {
				last, found = Ref{ti, ai}, true
			}
		}
	}
	return last, found
}

// IsRebootAction reports whether an image reboots or kexecs the machine, so
// that the agent cannot report after it: reboot, kexec, waitdaemon.
func IsRebootAction(image string) bool {
	switch ImageName(image) {
	case "reboot", "kexec", "waitdaemon":
		return true
	}
	return false
}
