package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	tinkv1 "github.com/tinkerbell/tink/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-dev/kiln/pkg/workflow"
)

// Labels, annotations and the condition kiln writes on Workflow objects.
const (
	// ManagedByLabel marks the Workflow objects kiln created.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "kiln"
	// AgentLabelPrefix + encoded agent id is set on a Workflow for every
	// worker of its tasks, so an agent's poll lists only its workflows.
	AgentLabelPrefix = "agent.kiln.dev/"
	// ExtensionCondition is the status condition type that carries what a
	// tinkerbell.org/v1alpha1 WorkflowStatus has no field for (task and
	// action ids, log tails, kiln's reason and timestamps) as JSON in its
	// message. It lives in status so one status update writes all of it.
	ExtensionCondition tinkv1.WorkflowConditionType = "KilnWorkflowState"
	// extensionReason is the condition's reason.
	extensionReason = "KilnExtension"
	// hardwareMapKey is the template device key of the workflow's agent, as
	// in Tinkerbell templates ({{.device_1}}).
	hardwareMapKey = "device_1"
)

// extension is the part of a kiln workflow with no place in the Tinkerbell
// WorkflowStatus schema. Tasks and actions line up with status.tasks by
// index.
type extension struct {
	CreatedAt  time.Time `json:"createdAt"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	Deadline   time.Time `json:"deadline,omitzero"`
	LastSeen   time.Time `json:"lastSeen,omitzero"`
	Reason     string    `json:"reason,omitempty"`
	Tasks      []taskExt `json:"tasks,omitempty"`
}

type taskExt struct {
	ID      string      `json:"id"`
	Actions []actionExt `json:"actions,omitempty"`
}

type actionExt struct {
	ID         string               `json:"id"`
	StartedAt  time.Time            `json:"startedAt,omitzero"`
	FinishedAt time.Time            `json:"finishedAt,omitzero"`
	Namespaces *workflow.Namespaces `json:"namespaces,omitempty"`
	Log        []string             `json:"log,omitempty"`
}

// tinkState and kilnState convert between kiln's states and Tinkerbell's
// STATE_-prefixed ones. Tinkerbell's STATE_PREPARING and STATE_POST (boot
// jobs kiln does not run) read as RUNNING.
func tinkState(s workflow.State) tinkv1.WorkflowState {
	if s == "" {
		return ""
	}
	return tinkv1.WorkflowState("STATE_" + string(s))
}

func kilnState(s tinkv1.WorkflowState) workflow.State {
	switch s {
	case "":
		return workflow.StatePending
	case tinkv1.WorkflowStatePreparing, tinkv1.WorkflowStatePost:
		return workflow.StateRunning
	}
	return workflow.State(strings.TrimPrefix(string(s), "STATE_"))
}

// AgentLabel returns the label key that marks the workflows of agentID. Label
// names allow [a-z0-9-_.] and 63 characters, so a MAC's colons become
// dashes; any other id is hashed. Collisions only widen the candidate list:
// ListByAgent still compares the ids.
func AgentLabel(agentID string) string {
	id := strings.ToLower(strings.TrimSpace(agentID))
	enc := strings.ReplaceAll(id, ":", "-")
	ok := enc != "" && len(enc) <= 63 && isAlnum(enc[0]) && isAlnum(enc[len(enc)-1])
	for i := 0; ok && i < len(enc); i++ {
		ok = isAlnum(enc[i]) || enc[i] == '-' || enc[i] == '.' || enc[i] == '_'
	}
	if !ok {
		sum := sha256.Sum256([]byte(id))
		enc = "sha256-" + hex.EncodeToString(sum[:20])
	}
	return AgentLabelPrefix + enc
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// agentLabels returns the agent labels of a workflow's tasks.
func agentLabels(w *workflow.Workflow) map[string]string {
	l := map[string]string{ManagedByLabel: managedBy}
	for _, t := range w.Tasks {
		l[AgentLabel(t.AgentID)] = "true"
	}
	return l
}

// toObject builds the Workflow object's metadata and spec (what Create
// writes; Update never changes them).
func toObject(w *workflow.Workflow) *tinkv1.Workflow {
	obj := &tinkv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: w.Name, Labels: agentLabels(w)},
		Spec:       tinkv1.WorkflowSpec{TemplateRef: w.Template, HardwareRef: w.Hardware},
	}
	if w.AgentID != "" {
		obj.Spec.HardwareMap = map[string]string{hardwareMapKey: w.AgentID}
	}
	return obj
}

// setStatus writes w into obj.Status the way Tinkerbell's controller and
// server fill it, keeping conditions other writers set.
func setStatus(obj *tinkv1.Workflow, w *workflow.Workflow) error {
	st := &obj.Status
	st.State = tinkState(w.State)
	st.GlobalTimeout = w.GlobalTimeout
	st.TemplateRendering = tinkv1.TemplateRenderingSuccessful
	st.CurrentAction = ""
	if ref, ok := w.Current(); ok {
		st.CurrentAction = w.Action(ref).Name
	}
	ext := extension{
		CreatedAt: w.CreatedAt, StartedAt: w.StartedAt, FinishedAt: w.FinishedAt,
		Deadline: w.Deadline, LastSeen: w.LastSeen, Reason: w.Reason,
	}
	st.Tasks = make([]tinkv1.Task, 0, len(w.Tasks))
	for _, t := range w.Tasks {
		task := tinkv1.Task{Name: t.Name, WorkerAddr: t.AgentID, Volumes: t.Volumes, Environment: t.Environment, Actions: []tinkv1.Action{}}
		te := taskExt{ID: t.ID}
		for _, a := range t.Actions {
			ta := tinkv1.Action{
				Name: a.Name, Image: a.Image, Timeout: a.Timeout, Command: a.Command, Volumes: a.Volumes,
				Pid: a.Pid, Environment: a.Environment, Status: tinkState(a.State), Message: a.Message,
			}
			if !a.StartedAt.IsZero() {
				ta.StartedAt = &metav1.Time{Time: a.StartedAt}
				if !a.FinishedAt.IsZero() {
					ta.Seconds = int64(a.FinishedAt.Sub(a.StartedAt).Seconds())
				}
			}
			task.Actions = append(task.Actions, ta)
			te.Actions = append(te.Actions, actionExt{ID: a.ID, StartedAt: a.StartedAt, FinishedAt: a.FinishedAt, Namespaces: a.Namespaces, Log: a.Log})
		}
		st.Tasks = append(st.Tasks, task)
		ext.Tasks = append(ext.Tasks, te)
	}
	raw, err := json.Marshal(ext)
	if err != nil {
		return fmt.Errorf("encoding kiln state of workflow %s: %w", w.ID(), err)
	}
	st.SetCondition(tinkv1.WorkflowCondition{
		Type: tinkv1.TemplateRenderedSuccess, Status: metav1.ConditionTrue, Reason: "Rendered",
		Message: "kiln rendered the template", Time: conditionTime(st, tinkv1.TemplateRenderedSuccess, w.CreatedAt),
	})
	now := metav1.NewTime(time.Now().UTC())
	st.SetCondition(tinkv1.WorkflowCondition{
		Type: ExtensionCondition, Status: metav1.ConditionTrue, Reason: extensionReason, Message: string(raw), Time: &now,
	})
	return nil
}

// conditionTime keeps an existing condition's time.
func conditionTime(st *tinkv1.WorkflowStatus, t tinkv1.WorkflowConditionType, def time.Time) *metav1.Time {
	for _, c := range st.Conditions {
		if c.Type == t && c.Time != nil {
			return c.Time
		}
	}
	return &metav1.Time{Time: def}
}

// initialised reports whether obj's status was written by kiln (or
// rendered by Tinkerbell's controller).
func initialised(obj *tinkv1.Workflow) bool {
	return len(obj.Status.Tasks) > 0 || obj.Status.HasCondition(ExtensionCondition, metav1.ConditionTrue)
}

// fromObject reads a kiln workflow back. The Tinkerbell fields are
// authoritative for what they hold (a Tinkerbell server may have updated
// them); the extension condition supplies the rest and exact timestamps.
func fromObject(obj *tinkv1.Workflow) (*workflow.Workflow, error) {
	w := &workflow.Workflow{
		Namespace: obj.Namespace, Name: obj.Name, Hardware: obj.Spec.HardwareRef, Template: obj.Spec.TemplateRef,
		AgentID: obj.Spec.HardwareMap[hardwareMapKey], State: kilnState(obj.Status.State),
		GlobalTimeout: obj.Status.GlobalTimeout, CreatedAt: obj.CreationTimestamp.UTC(),
	}
	var ext extension
	for _, c := range obj.Status.Conditions {
		if c.Type == ExtensionCondition {
			if err := json.Unmarshal([]byte(c.Message), &ext); err != nil {
				return nil, fmt.Errorf("workflow %s/%s: condition %s is not kiln's JSON (%w); delete the Workflow object and let kiln re-create it", obj.Namespace, obj.Name, ExtensionCondition, err)
			}
			w.CreatedAt = ext.CreatedAt
		}
	}
	w.StartedAt, w.FinishedAt, w.Deadline, w.LastSeen, w.Reason = ext.StartedAt, ext.FinishedAt, ext.Deadline, ext.LastSeen, ext.Reason
	for ti, t := range obj.Status.Tasks {
		var te taskExt
		if ti < len(ext.Tasks) {
			te = ext.Tasks[ti]
		}
		ts := workflow.TaskStatus{ID: te.ID, Name: t.Name, AgentID: t.WorkerAddr, Volumes: t.Volumes, Environment: t.Environment}
		for ai, a := range t.Actions {
			var ae actionExt
			if ai < len(te.Actions) {
				ae = te.Actions[ai]
			}
			as := workflow.ActionStatus{
				ID: ae.ID, Name: a.Name, Image: a.Image, Timeout: a.Timeout, Command: a.Command, Volumes: a.Volumes,
				Environment: a.Environment, Pid: a.Pid, Namespaces: ae.Namespaces, State: kilnState(a.Status),
				StartedAt: ae.StartedAt, FinishedAt: ae.FinishedAt, Message: a.Message, Log: ae.Log,
			}
			if a.StartedAt != nil && !sameSecond(a.StartedAt.Time, ae.StartedAt) {
				// Changed by another writer: its (second-precision) time wins.
				as.StartedAt = a.StartedAt.UTC()
				as.FinishedAt = time.Time{}
				if a.Seconds > 0 || a.Status == tinkv1.WorkflowStateSuccess || a.Status == tinkv1.WorkflowStateFailed || a.Status == tinkv1.WorkflowStateTimeout {
					as.FinishedAt = as.StartedAt.Add(time.Duration(a.Seconds) * time.Second)
				}
			}
			ts.Actions = append(ts.Actions, as)
		}
		w.Tasks = append(w.Tasks, ts)
	}
	return w, nil
}

func sameSecond(a, b time.Time) bool { return a.Unix() == b.Unix() }
