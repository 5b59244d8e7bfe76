package kube_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tinkv1 "github.com/tinkerbell/tink/api/v1alpha1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kiln-dev/kiln/pkg/bootstrap"
	"github.com/kiln-dev/kiln/pkg/bootstrap/embedded/embeddedtest"
	"github.com/kiln-dev/kiln/pkg/crds"
	"github.com/kiln-dev/kiln/pkg/workerapi"
	"github.com/kiln-dev/kiln/pkg/workerapi/kilnpb"
	pb "github.com/kiln-dev/kiln/pkg/workerapi/proto"
	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
	"github.com/kiln-dev/kiln/pkg/workflow/store/kube"
	"github.com/kiln-dev/kiln/pkg/workflow/store/storetest"
)

func TestMain(m *testing.M) {
	embeddedtest.MaybeRunChild()
	os.Exit(m.Run())
}

// TestKubeStore runs everything against one embedded control plane: the
// missing-CRD error before the CRDs are installed, then the store
// conformance suite, an interrupted Create, and the worker API driving a
// Workflow object's status.
func TestKubeStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded control plane")
	}
	ctx := context.Background()
	p := embeddedtest.Provider(t)
	cfg := bootstrap.Config{Name: "kn4-store", Dir: t.TempDir()}
	cl, err := p.Create(ctx, cfg)
	if err != nil {
		t.Fatalf("starting embedded control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Delete(context.Background(), cfg); err != nil {
			t.Errorf("deleting embedded control plane: %v", err)
		}
	})

	bare := embeddedtest.Client(t, cl.Kubeconfig)
	if _, err := kube.New(ctx, bare, ""); err == nil || !strings.Contains(err.Error(), "kiln bootstrap create") {
		t.Fatalf("store without the Workflow CRD: %v; want the hint to run kiln bootstrap create", err)
	}
	if err := crds.Install(ctx, bare); err != nil {
		t.Fatal(err)
	}
	c := embeddedtest.Client(t, cl.Kubeconfig) // fresh discovery: the CRDs exist now

	var n atomic.Int32
	open := func(t *testing.T) *kube.Store {
		t.Helper()
		s, err := kube.Open(ctx, cl.Kubeconfig, fmt.Sprintf("kn4-%d", n.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) (store.Store, string) {
			s := open(t)
			return s, s.Namespace()
		})
	})
	t.Run("InterruptedCreate", func(t *testing.T) { testInterruptedCreate(t, c, open(t)) })
	t.Run("WorkerAPI", func(t *testing.T) { testWorkerAPI(t, c, open(t)) })
}

// testInterruptedCreate: a kiln object whose status was never written (kiln
// stopped between the two writes of Create) is completed by the next
// Create; someone else's Workflow of the same name is left alone.
func testInterruptedCreate(t *testing.T, c client.Client, s *kube.Store) {
	ctx := context.Background()
	w := storetest.NewWorkflow(s.Namespace(), "cp01", "aa:00:00:00:00:01", time.Now())
	foreign := &tinkv1.Workflow{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: "theirs"}, Spec: tinkv1.WorkflowSpec{TemplateRef: "t", HardwareRef: "cp01"}}
	if err := c.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, storetest.NewWorkflow(s.Namespace(), "theirs", "aa:00:00:00:00:01", time.Now())); !errors.Is(err, store.ErrExists) {
		t.Fatalf("create over a Workflow kiln did not make: %v; want ErrExists", err)
	}
	obj := &tinkv1.Workflow{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: w.Name, Labels: map[string]string{kube.ManagedByLabel: "kiln"}}, Spec: tinkv1.WorkflowSpec{TemplateRef: "t", HardwareRef: "cp01"}}
	if err := c.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, w); err != nil {
		t.Fatalf("completing an interrupted create: %v", err)
	}
	got, err := s.Get(ctx, w.ID())
	if err != nil || len(got.Tasks) != 1 || got.Tasks[0].Actions[0].ID != w.Tasks[0].Actions[0].ID {
		t.Fatalf("after completing: %+v, %v", got, err)
	}
}

const agentMAC = "cc:48:3a:00:00:01"

// testWorkerAPI serves the worker API from the Kubernetes store and plays an
// agent: the Workflow object's Tinkerbell status follows every report.
func testWorkerAPI(t *testing.T, c client.Client, s *kube.Store) {
	ctx := context.Background()
	tpl := &workflow.Template{Name: "ubuntu", GlobalTimeout: 3600, Tasks: []workflow.Task{{
		Name: "os-installation", Worker: agentMAC, Actions: []workflow.Action{
			{Name: "stream-image", Image: "quay.io/tinkerbell/actions/image2disk:latest", Timeout: 600},
			{Name: "reboot", Image: "reboot", Timeout: 30},
		},
	}}}
	w := workflow.New(s.Namespace(), "cp01", "cp01", "ubuntu", tpl, time.Now())
	if _, err := store.Ensure(ctx, s, []*workflow.Workflow{w}); err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	workerapi.New(s, workerapi.Options{}).Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	wf, logs := pb.NewWorkflowServiceClient(conn), kilnpb.NewAgentLogClient(conn)

	agent := agentMAC
	a, err := wf.GetAction(ctx, &pb.ActionRequest{AgentId: &agent})
	if err != nil || a.GetName() != "stream-image" || a.GetWorkflowId() != w.ID() {
		t.Fatalf("GetAction = %v, %v", a, err)
	}
	report := func(st pb.ActionStatusRequest_StateType, msg string) {
		t.Helper()
		if _, err := wf.ReportActionStatus(ctx, &pb.ActionStatusRequest{
			WorkflowId: a.WorkflowId, AgentId: a.AgentId, TaskId: a.TaskId, ActionId: a.ActionId, ActionName: a.Name,
			ActionState: &st, ExecutionStart: workerapi.Timestamp(time.Now()), Message: &pb.ActionMessage{Message: &msg},
		}); err != nil {
			t.Fatalf("report %v: %v", st, err)
		}
	}
	object := func() *tinkv1.Workflow {
		t.Helper()
		var obj tinkv1.Workflow
		if err := c.Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: w.Name}, &obj); err != nil {
			t.Fatal(err)
		}
		return &obj
	}

	if obj := object(); obj.Status.State != tinkv1.WorkflowStatePending || obj.Spec.HardwareRef != "cp01" || obj.Spec.TemplateRef != "ubuntu" ||
		obj.Spec.HardwareMap["device_1"] != agentMAC || obj.Status.TemplateRendering != tinkv1.TemplateRenderingSuccessful ||
		obj.Status.GlobalTimeout != 3600 || obj.Labels[kube.AgentLabel(agentMAC)] != "true" {
		t.Fatalf("created object: %+v", obj)
	}
	report(pb.ActionStatusRequest_RUNNING, "streaming")
	obj := object()
	act := obj.Status.Tasks[0].Actions[0]
	if obj.Status.State != tinkv1.WorkflowStateRunning || act.Status != tinkv1.WorkflowStateRunning || act.StartedAt == nil ||
		obj.Status.CurrentAction != "stream-image" || obj.Status.Tasks[0].WorkerAddr != agentMAC || act.Image != "quay.io/tinkerbell/actions/image2disk:latest" || act.Timeout != 600 {
		t.Fatalf("after RUNNING: %+v", obj.Status)
	}
	if _, err := logs.AppendLog(ctx, &kilnpb.AppendLogRequest{WorkflowId: a.GetWorkflowId(), TaskId: a.GetTaskId(), ActionId: a.GetActionId(), Lines: []string{"wrote 1 MiB"}}); err != nil {
		t.Fatal(err)
	}
	report(pb.ActionStatusRequest_FAILED, "disk full")
	obj = object()
	act = obj.Status.Tasks[0].Actions[0]
	if obj.Status.State != tinkv1.WorkflowStateFailed || act.Status != tinkv1.WorkflowStateFailed || act.Message != "disk full" ||
		obj.Status.Tasks[0].Actions[1].Status != tinkv1.WorkflowStatePending {
		t.Fatalf("after FAILED: %+v", obj.Status)
	}
	var ext struct {
		Reason string `json:"reason"`
		Tasks  []struct {
			Actions []struct {
				Log []string `json:"log"`
			} `json:"actions"`
		} `json:"tasks"`
	}
	for _, cond := range obj.Status.Conditions {
		if cond.Type == kube.ExtensionCondition {
			if err := json.Unmarshal([]byte(cond.Message), &ext); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !strings.Contains(ext.Reason, "disk full") || len(ext.Tasks) != 1 || strings.Join(ext.Tasks[0].Actions[0].Log, "|") != "wrote 1 MiB" {
		t.Fatalf("kiln's extension condition: %+v", ext)
	}
	if _, err := wf.GetAction(ctx, &pb.ActionRequest{AgentId: &agent}); err == nil {
		t.Fatal("GetAction served an action of a FAILED workflow")
	}
}
