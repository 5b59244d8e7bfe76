package workerapi

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-dev/kiln/pkg/workerapi/legacypb"
	pb "github.com/kiln-dev/kiln/pkg/workerapi/proto"
	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
)

// tinkWorker drives the old API the way tink-worker does: read the contexts,
// fetch the action list, pick the next action from the current index and
// state, and report RUNNING then SUCCESS for it.
type tinkWorker struct {
	conn *grpc.ClientConn
	id   string
}

func (w tinkWorker) contexts(ctx context.Context) ([]*legacypb.WorkflowContext, error) {
	stream, err := w.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/proto.WorkflowService/GetWorkflowContexts")
	if err != nil {
		return nil, err
	}
	if err := stream.SendMsg(&legacypb.WorkflowContextRequest{WorkerId: w.id}); err != nil {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	var out []*legacypb.WorkflowContext
	for {
		c := &legacypb.WorkflowContext{}
		err := stream.RecvMsg(c)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

func (w tinkWorker) report(ctx context.Context, wfID string, a *legacypb.WorkflowAction, st legacypb.State) error {
	return w.conn.Invoke(ctx, "/proto.WorkflowService/ReportActionStatus",
		&legacypb.WorkflowActionStatus{WorkflowId: wfID, TaskName: a.TaskName, ActionName: a.Name, ActionStatus: st, WorkerId: w.id, Message: "from tink-worker"},
		&legacypb.Empty{})
}

// step runs one action; false when there is nothing to do.
func (w tinkWorker) step(t *testing.T, ctx context.Context) bool {
	t.Helper()
	cs, err := w.contexts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) == 0 {
		return false
	}
	c := cs[0]
	list := &legacypb.WorkflowActionList{}
	if err := w.conn.Invoke(ctx, "/proto.WorkflowService/GetWorkflowActions", &legacypb.WorkflowActionsRequest{WorkflowId: c.WorkflowId}, list); err != nil {
		t.Fatal(err)
	}
	idx := int64(0)
	switch {
	case c.CurrentAction == "":
	case c.CurrentActionState == legacypb.State_STATE_SUCCESS:
		idx = c.CurrentActionIndex + 1
	case c.CurrentActionState == legacypb.State_STATE_RUNNING:
		idx = c.CurrentActionIndex
	default:
		return false
	}
	if idx >= int64(len(list.ActionList)) || idx >= c.TotalNumberOfActions {
		return false
	}
	a := list.ActionList[idx]
	if a.WorkerId != w.id {
		t.Fatalf("action %q is for worker %q", a.Name, a.WorkerId)
	}
	for _, st := range []legacypb.State{legacypb.State_STATE_RUNNING, legacypb.State_STATE_SUCCESS} {
		if err := w.report(ctx, c.WorkflowId, a, st); err != nil {
			t.Fatalf("report %s %s: %v", a.Name, st, err)
		}
	}
	return true
}

func TestLegacyTinkWorkerAPI(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "wf.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Create(ctx, testWorkflow("busybox")); err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	New(st, Options{}).Register(g)
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	w := tinkWorker{conn: conn, id: agentMAC}
	list := &legacypb.WorkflowActionList{}
	if err := conn.Invoke(ctx, "/proto.WorkflowService/GetWorkflowActions", &legacypb.WorkflowActionsRequest{WorkflowId: "cp01"}, list); err != nil {
		t.Fatal(err)
	}
	if a := list.ActionList[0]; len(list.ActionList) != 2 || a.TaskName != "install" || a.Timeout != 60 || a.WorkerId != agentMAC || len(a.Environment) != 2 {
		t.Fatalf("action list = %v", list)
	}
	steps := 0
	for w.step(t, ctx) {
		steps++
	}
	got, _ := st.Get(ctx, "eksa-system/cp01")
	if steps != 2 || got.State != workflow.StateSuccess || got.Tasks[0].Actions[1].Message != "from tink-worker" {
		t.Fatalf("after %d steps: %s", steps, got.State)
	}
	if cs, _ := w.contexts(ctx); len(cs) != 0 {
		t.Errorf("finished workflow still offered: %v", cs)
	}
	err = w.report(ctx, "eksa-system/cp01", &legacypb.WorkflowAction{TaskName: "install", Name: "nope"}, legacypb.State_STATE_RUNNING)
	if code(err) != codes.NotFound {
		t.Errorf("unknown action: %v", err)
	}
}

func TestIsLegacyStatus(t *testing.T) {
	state := pb.ActionStatusRequest_RUNNING
	cases := map[string]struct {
		msg  proto.Message
		want bool
	}{
		"current":              {&pb.ActionStatusRequest{WorkflowId: ptr("a/b"), TaskId: ptr("t"), ActionId: ptr("x"), ActionState: &state}, false},
		"current without id":   {&pb.ActionStatusRequest{WorkflowId: ptr("a/b"), ActionName: ptr("x"), ActionState: &state}, false},
		"legacy":               {&legacypb.WorkflowActionStatus{WorkflowId: "a/b", TaskName: "t", ActionName: "x", ActionStatus: legacypb.State_STATE_SUCCESS, Seconds: 3}, true},
		"legacy running":       {&legacypb.WorkflowActionStatus{WorkflowId: "a/b", TaskName: "t", ActionName: "x", ActionStatus: legacypb.State_STATE_RUNNING, Message: "m"}, true},
		"legacy, message only": {&legacypb.WorkflowActionStatus{WorkflowId: "a/b", TaskName: "t", ActionName: "x", Message: "m"}, true},
	}
	for name, tc := range cases {
		b, _ := proto.Marshal(tc.msg)
		if got := isLegacyStatus(b); got != tc.want {
			t.Errorf("%s: isLegacyStatus = %v", name, got)
		}
	}
}
