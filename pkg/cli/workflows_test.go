package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/syncbuf"
	pb "github.com/kiln-dev/kiln/pkg/workerapi/proto"
	"github.com/kiln-dev/kiln/pkg/workflow"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func runKiln(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

const testCSV = `hostname,mac,ip_address,netmask,gateway,nameservers,labels,disk,vlan_id
cp01,cc:48:3a:00:00:01,10.10.50.11,255.255.254.0,10.10.50.1,10.10.50.2,type=cp,/dev/sda,
wk01,cc:48:3a:00:00:02,10.10.50.21,255.255.254.0,10.10.50.1,10.10.50.2,type=worker,/dev/nvme0n1,120
`

func TestServeWorkflowAndWorkflowsCommands(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "hw.csv")
	if err := os.WriteFile(csv, []byte(testCSV), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "wf.db")

	// A template that needs a value the operator did not give: exit 1, message names it.
	_, stderr, code := runKiln(t, "serve", "workflow", "--hardware-csv", csv, "--db", db, "--grpc-listen", "127.0.0.1:0")
	if code != ExitInvalidInput || !strings.Contains(stderr, "image_url") || !strings.Contains(stderr, "machine cp01") {
		t.Fatalf("missing --image-url: code %d, stderr %q", code, stderr)
	}
	if _, _, code := runKiln(t, "serve", "workflow"); code != ExitUsage {
		t.Fatalf("missing --hardware-csv: code %d", code)
	}

	srv := serveWorkflow(t, csv, "--db", db)
	addr, out, wf, ctx := srv.addr, srv.out, srv.wf, context.Background()
	act := srv.getAction(t, "cc:48:3a:00:00:02")
	if act.GetWorkflowId() != "eksa-system/wk01" || act.GetName() != "stream-image" {
		t.Fatalf("GetAction: %v\n%s", act, out.String())
	}
	if !strings.Contains(out.String(), "✓ read "+csv+": 2 machines") || !strings.Contains(out.String(), "2 created, 0 resumed") {
		t.Errorf("progress output:\n%s", out.String())
	}
	failed := pb.ActionStatusRequest_FAILED
	running := pb.ActionStatusRequest_RUNNING
	for _, st := range []*pb.ActionStatusRequest_StateType{&running, &failed} {
		if _, err := wf.ReportActionStatus(ctx, &pb.ActionStatusRequest{WorkflowId: act.WorkflowId, TaskId: act.TaskId, ActionId: act.ActionId,
			ActionState: st, Message: &pb.ActionMessage{Message: ptr("image2disk: GET http://10.10.50.5:8080/jammy.raw.gz: server answered 404 Not Found")}}); err != nil {
			t.Fatal(err)
		}
	}

	if got := out.String(); !strings.Contains(got, "… wk01: stream-image running") || !strings.Contains(got, "✗ wk01: stream-image FAILED after") ||
		!strings.Contains(got, "✗ wk01: workflow FAILED in") {
		t.Errorf("no progress lines for the failed action:\n%s", got)
	}
	stdout, stderr, code := runKiln(t, "workflows", "list", "--server", addr, "-o", "json")
	var wfs []workflow.Workflow
	if code != ExitOK || json.Unmarshal([]byte(stdout), &wfs) != nil || len(wfs) != 2 {
		t.Fatalf("list -o json: code %d %q %q", code, stdout, stderr)
	}
	stdout, _, _ = runKiln(t, "workflows", "--server", addr)
	if !strings.Contains(stdout, "eksa-system/wk01") || !strings.Contains(stdout, "stream-image FAILED (0/6 done)") {
		t.Errorf("list:\n%s", stdout)
	}
	stdout, _, code = runKiln(t, "workflows", "show", "wk01", "--server", addr)
	if code != ExitOK || !strings.Contains(stdout, "Workflow eksa-system/wk01: FAILED") || !strings.Contains(stdout, "404 Not Found") ||
		!strings.Contains(stdout, `Action "stream-image" FAILED`) {
		t.Errorf("show:\n%s", stdout)
	}
	if _, stderr, code := runKiln(t, "workflows", "show", "nope", "--server", addr); code != ExitInvalidInput || !strings.Contains(stderr, "eksa-system/cp01") {
		t.Errorf("show unknown: %d %q", code, stderr)
	}
	if stdout, _, code := runKiln(t, "workflows", "reset", "wk01", "--server", addr); code != ExitOK || !strings.Contains(stdout, "reset to PENDING") {
		t.Errorf("reset: %d %q", code, stdout)
	}
	if act2, err := wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr("cc:48:3a:00:00:02")}); err != nil || act2.GetName() != "stream-image" || act2.GetActionId() == act.GetActionId() {
		t.Errorf("after reset: %v, %v", act2, err)
	}
	// The database is locked while the server runs.
	if _, stderr, code := runKiln(t, "workflows", "--db", db); code != ExitInvalidInput || !strings.Contains(stderr, "use --server") {
		t.Errorf("--db while serving: %d %q", code, stderr)
	}
}

func ptr[T any](v T) *T { return &v }

// servedWorkflow is a `kiln serve workflow` running in the test.
type servedWorkflow struct {
	addr string
	out  *syncbuf.Buffer
	wf   pb.WorkflowServiceClient
}

// serveWorkflow runs `kiln serve workflow` for the machines of csv with the
// store flags given, until the test ends (then it must exit 0).
func serveWorkflow(t *testing.T, csv string, storeArgs ...string) *servedWorkflow {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncbuf.Buffer{}
	done := make(chan int)
	args := append([]string{"serve", "workflow", "--hardware-csv", csv, "--grpc-listen", addr,
		"--image-url", "http://10.10.50.5:8080/jammy.raw.gz", "--metadata-url", "http://10.10.50.5:7172"}, storeArgs...)
	go func() { done <- Run(ctx, args, strings.NewReader(""), out, out) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != ExitOK {
			t.Errorf("serve workflow exited %d:\n%s", code, out.String())
		}
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &servedWorkflow{addr: addr, out: out, wf: pb.NewWorkflowServiceClient(conn)}
}

// getAction polls GetAction for agent until the server answers (it
// starts in the background), for up to a minute.
func (s *servedWorkflow) getAction(t *testing.T, agent string) *pb.ActionResponse {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		act, err := s.wf.GetAction(context.Background(), &pb.ActionRequest{AgentId: ptr(agent)})
		if err == nil {
			return act
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetAction(%s): %v\n%s", agent, err, s.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestInitArgs(t *testing.T) {
	if got := InitArgs([]string{"/init", "console=ttyS0"}); strings.Join(got, " ") != "agent --init" {
		t.Errorf("as /init: %v", got)
	}
	if got := InitArgs([]string{"/usr/bin/kiln", "workflows", "list"}); strings.Join(got, " ") != "workflows list" {
		t.Errorf("as kiln: %v", got)
	}
}

func TestAgentCommandNeedsServer(t *testing.T) {
	_, stderr, code := runKiln(t, "agent")
	if code != ExitInvalidInput || !strings.Contains(stderr, "no worker id") {
		t.Errorf("kiln agent without settings: %d %q", code, stderr)
	}
	_, stderr, code = runKiln(t, "agent", "--worker-id", "aa:bb:cc:dd:ee:ff")
	if code != ExitInvalidInput || !strings.Contains(stderr, "grpc_authority") {
		t.Errorf("kiln agent without authority: %d %q", code, stderr)
	}
}

func TestWorkflowsRender(t *testing.T) {
	csv := filepath.Join(t.TempDir(), "hw.csv")
	if err := os.WriteFile(csv, []byte(testCSV), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runKiln(t, "workflows", "render", "--hardware-csv", csv, "--image-url", "http://10.0.0.5/img.zst", "--metadata-url", "http://10.0.0.5:7172", "wk01")
	if code != ExitOK || !strings.Contains(stdout, "# workflow eksa-system/wk01 for wk01") || !strings.Contains(stdout, "vlan120:") ||
		strings.Contains(stdout, "cp01") || !strings.Contains(stderr, "✓ render template") {
		t.Fatalf("render wk01: %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, _, code = runKiln(t, "workflows", "render", "--hardware-csv", csv, "--set", "image_url=u", "--set", "metadata_url=m", "-o", "json")
	var wfs []workflow.Workflow
	if code != ExitOK || json.Unmarshal([]byte(stdout), &wfs) != nil || len(wfs) != 2 || wfs[0].Tasks[0].Actions[0].Environment["IMG_URL"] != "u" {
		t.Fatalf("render -o json: %d %s", code, stdout)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("name: x\ntasks:\n- name: t\n  worker: \"{{.device_1}}\"\n  actions:\n  - name: a\n    image: busybox\n"), 0o600)
	_, stderr, code = runKiln(t, "workflows", "render", "--hardware-csv", csv, "--template", bad)
	if code != ExitInvalidInput || !strings.Contains(stderr, `task 1 "t" action 1 "a": timeout must be a positive`) || !strings.Contains(stderr, "machine wk01") {
		t.Fatalf("invalid template: %d %q", code, stderr)
	}
	if _, stderr, code := runKiln(t, "workflows", "render", "--hardware-csv", csv); code != ExitInvalidInput || !strings.Contains(stderr, "hint: template values come from --set") {
		t.Fatalf("missing values: %d %q", code, stderr)
	}
}
