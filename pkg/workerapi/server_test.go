package workerapi

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-dev/kiln/pkg/pki"
	"github.com/kiln-dev/kiln/pkg/workerapi/kilnpb"
	pb "github.com/kiln-dev/kiln/pkg/workerapi/proto"
	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
)

const agentMAC = "cc:48:3a:00:00:01"

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	srv   *Server
	st    store.Store
	clk   *clock
	wf    pb.WorkflowServiceClient
	logs  kilnpb.AgentLogClient
	admin kilnpb.AdminClient
}

func testWorkflow(lastImage string) *workflow.Workflow {
	tpl := &workflow.Template{Name: "t", GlobalTimeout: 3600, Tasks: []workflow.Task{{
		Name: "install", Worker: agentMAC, Volumes: []string{"/dev:/dev"},
		Environment: map[string]string{"A": "1"},
		Actions: []workflow.Action{
			{Name: "stream", Image: "quay.io/tinkerbell/actions/image2disk:latest", Timeout: 60, Environment: map[string]string{"B": "2"}, Namespaces: &workflow.Namespaces{PID: "host"}},
			{Name: "finish", Image: lastImage, Timeout: 30, Command: []string{"x"}},
		},
	}}}
	return workflow.New("", "cp01", "cp01", "t", tpl, time.Now())
}

// start serves a fresh store over loopback gRPC with the given security.
func start(t *testing.T, sec Security, cs ClientSecurity, wfs ...*workflow.Workflow) *fixture {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "wf.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := store.Ensure(context.Background(), st, wfs); err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Now()}
	srv := New(st, Options{Now: clk.Now, Grace: 5 * time.Second, LeaveAfter: 20 * time.Second})
	opts, err := sec.ServerOptions()
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(opts...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	dopts, err := cs.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(lis.Addr().String(), dopts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &fixture{srv: srv, st: st, clk: clk, wf: pb.NewWorkflowServiceClient(conn), logs: kilnpb.NewAgentLogClient(conn), admin: kilnpb.NewAdminClient(conn)}
}

func code(err error) codes.Code { return status.Code(err) }

func (f *fixture) report(t *testing.T, a *pb.ActionResponse, s pb.ActionStatusRequest_StateType, msg string) error {
	t.Helper()
	_, err := f.wf.ReportActionStatus(context.Background(), &pb.ActionStatusRequest{
		WorkflowId: a.WorkflowId, AgentId: a.AgentId, TaskId: a.TaskId, ActionId: a.ActionId, ActionName: a.Name,
		ActionState: &s, ExecutionStart: Timestamp(time.Now()), Message: &pb.ActionMessage{Message: ptr(msg)},
	})
	return err
}

func TestWorkflowOverGRPC(t *testing.T) {
	ctx := context.Background()
	f := start(t, Security{}, ClientSecurity{}, testWorkflow("busybox"))

	if _, err := f.wf.GetAction(ctx, &pb.ActionRequest{}); code(err) != codes.InvalidArgument {
		t.Fatalf("empty agent id: %v", err)
	}
	if _, err := f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr("11:22:33:44:55:66")}); code(err) != codes.NotFound {
		t.Fatalf("unknown agent: %v", err)
	}
	a, err := f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(strings.ToUpper(agentMAC))})
	if err != nil {
		t.Fatal(err)
	}
	if a.GetWorkflowId() != "eksa-system/cp01" || a.GetName() != "stream" || a.GetTimeout() != 60 ||
		strings.Join(a.GetEnvironment(), ",") != "A=1,B=2" || strings.Join(a.GetVolumes(), ",") != "/dev:/dev" ||
		a.GetNamespaces().GetPid() != "host" || a.GetAgentId() != agentMAC {
		t.Fatalf("action = %v", a)
	}
	if err := f.report(t, a, pb.ActionStatusRequest_RUNNING, "running action"); err != nil {
		t.Fatal(err)
	}
	// A restarted agent gets the RUNNING action again.
	again, err := f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(agentMAC)})
	if err != nil || again.GetActionId() != a.GetActionId() {
		t.Fatalf("re-serve: %v, %v", again, err)
	}
	if _, err := f.logs.AppendLog(ctx, &kilnpb.AppendLogRequest{WorkflowId: a.GetWorkflowId(), TaskId: a.GetTaskId(), ActionId: a.GetActionId(), Lines: []string{"wrote 1 MiB", "wrote 2 MiB"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.report(t, a, pb.ActionStatusRequest_SUCCESS, "done"); err != nil {
		t.Fatal(err)
	}
	b, err := f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(agentMAC)})
	if err != nil || b.GetName() != "finish" || strings.Join(b.GetCommand(), " ") != "x" {
		t.Fatalf("second action: %v, %v", b, err)
	}
	// Error codes an agent treats as permanent.
	bad := pb.ActionStatusRequest_RUNNING
	if _, err := f.wf.ReportActionStatus(ctx, &pb.ActionStatusRequest{WorkflowId: b.WorkflowId, TaskId: b.TaskId, ActionId: ptr("nope"), ActionState: &bad}); code(err) != codes.NotFound {
		t.Fatalf("unknown action: %v", err)
	}
	if _, err := f.wf.ReportActionStatus(ctx, &pb.ActionStatusRequest{WorkflowId: b.WorkflowId}); code(err) != codes.InvalidArgument {
		t.Fatalf("missing ids: %v", err)
	}
	if err := f.report(t, b, pb.ActionStatusRequest_PENDING, ""); code(err) != codes.InvalidArgument {
		t.Fatalf("PENDING report: %v", err)
	}
	if err := f.report(t, b, pb.ActionStatusRequest_RUNNING, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.report(t, b, pb.ActionStatusRequest_FAILED, "exit status 3"); err != nil {
		t.Fatal(err)
	}
	_, err = f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(agentMAC)})
	if code(err) != codes.FailedPrecondition {
		t.Fatalf("finished workflow: %v", err)
	}
	if d := status.Convert(err).Details(); len(d) != 1 || d[0].(*errdetails.PreconditionFailure).GetViolations()[0].GetType() != "PRECONDITION_FAILURE_VIOLATION_NO_ACTION_AVAILABLE" {
		t.Errorf("FailedPrecondition details = %v", d)
	}
	if err := f.report(t, b, pb.ActionStatusRequest_SUCCESS, ""); code(err) != codes.FailedPrecondition {
		t.Fatalf("report after failure: %v", err)
	}

	list, err := f.admin.ListWorkflows(ctx, &kilnpb.ListWorkflowsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var wfs []workflow.Workflow
	if err := json.Unmarshal(list.GetWorkflowsJson(), &wfs); err != nil || len(wfs) != 1 {
		t.Fatalf("list: %v %v", wfs, err)
	}
	w := wfs[0]
	if w.State != workflow.StateFailed || !strings.Contains(w.Reason, "exit status 3") || strings.Join(w.Tasks[0].Actions[0].Log, "|") != "wrote 1 MiB|wrote 2 MiB" {
		t.Fatalf("stored workflow: %+v", w)
	}
	if _, err := f.admin.ResetWorkflow(ctx, &kilnpb.ResetWorkflowRequest{WorkflowId: "cp01"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.ResetWorkflow(ctx, &kilnpb.ResetWorkflowRequest{WorkflowId: "nope"}); code(err) != codes.NotFound {
		t.Fatalf("reset unknown: %v", err)
	}
	if c, err := f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(agentMAC)}); err != nil || c.GetName() != "stream" {
		t.Fatalf("after reset: %v, %v", c, err)
	}
	// Reports from before the reset no longer apply.
	if err := f.report(t, a, pb.ActionStatusRequest_SUCCESS, ""); code(err) != codes.NotFound {
		t.Fatalf("stale report: %v", err)
	}
}

func TestServerEnforcesTimeouts(t *testing.T) {
	ctx := context.Background()
	f := start(t, Security{}, ClientSecurity{}, testWorkflow("quay.io/tinkerbell/actions/reboot:latest"))
	a, err := f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(agentMAC)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.report(t, a, pb.ActionStatusRequest_RUNNING, ""); err != nil {
		t.Fatal(err)
	}
	f.clk.Add(64 * time.Second)
	if err := f.srv.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if w, _ := f.st.Get(ctx, "eksa-system/cp01"); w.State != workflow.StateRunning {
		t.Fatalf("timed out before timeout+grace: %s", w.State)
	}
	f.clk.Add(2 * time.Second)
	_ = f.srv.Sweep(ctx)
	w, _ := f.st.Get(ctx, "eksa-system/cp01")
	if w.State != workflow.StateTimeout || w.Tasks[0].Actions[0].State != workflow.StateTimeout {
		t.Fatalf("after timeout: %s / %s", w.State, w.Tasks[0].Actions[0].State)
	}

	// Final reboot run by an agent that never reports back: SUCCESS once
	// the machine has been gone for LeaveAfter.
	if _, err := f.admin.ResetWorkflow(ctx, &kilnpb.ResetWorkflowRequest{WorkflowId: "eksa-system/cp01"}); err != nil {
		t.Fatal(err)
	}
	a, _ = f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(agentMAC)})
	_ = f.report(t, a, pb.ActionStatusRequest_RUNNING, "")
	_ = f.report(t, a, pb.ActionStatusRequest_SUCCESS, "")
	b, _ := f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(agentMAC)})
	if err := f.report(t, b, pb.ActionStatusRequest_RUNNING, ""); err != nil {
		t.Fatal(err)
	}
	f.clk.Add(21 * time.Second)
	_ = f.srv.Sweep(ctx)
	if w, _ := f.st.Get(ctx, "eksa-system/cp01"); w.State != workflow.StateSuccess {
		t.Fatalf("final reboot: %s (%s)", w.State, w.Reason)
	}
}

func TestTokenAuth(t *testing.T) {
	ctx := context.Background()
	good := start(t, Security{Token: "s3cret"}, ClientSecurity{Token: "s3cret"}, testWorkflow("busybox"))
	if _, err := good.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(agentMAC)}); err != nil {
		t.Fatalf("right token: %v", err)
	}
	for _, tok := range []string{"", "wrong"} {
		f := start(t, Security{Token: "s3cret"}, ClientSecurity{Token: tok}, testWorkflow("busybox"))
		if _, err := f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(agentMAC)}); code(err) != codes.Unauthenticated {
			t.Fatalf("token %q: %v", tok, err)
		}
	}
}

func TestMutualTLS(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	newCert(t, dir, "server", ca)
	newCert(t, dir, "client", ca)
	newCert(t, dir, "stranger", newCA(t, dir, "other-ca"))
	p := func(n string) string { return filepath.Join(dir, n) }
	sec := Security{CertFile: p("server.crt"), KeyFile: p("server.key"), ClientCAFile: p("ca.crt")}

	f := start(t, sec, ClientSecurity{TLS: true, CAFile: p("ca.crt"), CertFile: p("client.crt"), KeyFile: p("client.key")}, testWorkflow("busybox"))
	if _, err := f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(agentMAC)}); err != nil {
		t.Fatalf("mTLS with a good client cert: %v", err)
	}
	cases := map[string]ClientSecurity{
		"no client cert": {TLS: true, CAFile: p("ca.crt")},
		"foreign cert":   {TLS: true, CAFile: p("ca.crt"), CertFile: p("stranger.crt"), KeyFile: p("stranger.key")},
		"plain text":     {},
		"untrusted srv":  {TLS: true, CAFile: p("other-ca.crt"), CertFile: p("client.crt"), KeyFile: p("client.key")},
	}
	for name, cs := range cases {
		f := start(t, sec, cs, testWorkflow("busybox"))
		if _, err := f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(agentMAC)}); code(err) != codes.Unavailable {
			t.Errorf("%s: %v, want the connection refused", name, err)
		}
	}
	if _, err := (Security{ClientCAFile: p("ca.crt")}).ServerOptions(); err == nil {
		t.Error("client CA without TLS accepted")
	}
}

// loopbackCert is a certificate for 127.0.0.1 usable by both ends.
func loopbackCert(name string) pki.Options {
	return pki.Options{CommonName: name, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usage: pki.ServerAuth | pki.ClientAuth, Validity: time.Hour}
}

// newCA writes name.crt/name.key of a self-signed CA.
func newCA(t *testing.T, dir, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(loopbackCert(name))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteFiles(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")); err != nil {
		t.Fatal(err)
	}
	return ca
}

// newCert writes name.crt/name.key signed by ca.
func newCert(t *testing.T, dir, name string, ca *pki.CA) {
	t.Helper()
	kp, err := ca.Issue(loopbackCert(name))
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.WriteFiles(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")); err != nil {
		t.Fatal(err)
	}
}
