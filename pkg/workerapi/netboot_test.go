package workerapi

import (
	"context"
	"testing"

	"github.com/kiln-dev/kiln/pkg/workerapi/kilnpb"
	pb "github.com/kiln-dev/kiln/pkg/workerapi/proto"
)

func TestNetbootSwitch(t *testing.T) {
	ctx := context.Background()
	allowed := map[string]bool{}
	f := start(t, Security{}, ClientSecurity{}, testWorkflow("busybox"))
	f.srv.opts.OnChange = NetbootSwitch(func(mac string, ok bool) { allowed[mac] = ok })
	for i := 0; i < 2; i++ {
		a, err := f.wf.GetAction(ctx, &pb.ActionRequest{AgentId: ptr(agentMAC)})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.report(t, a, pb.ActionStatusRequest_RUNNING, ""); err != nil {
			t.Fatal(err)
		}
		if v, set := allowed[agentMAC]; set {
			t.Fatalf("netboot switched to %v while the workflow runs", v)
		}
		if err := f.report(t, a, pb.ActionStatusRequest_SUCCESS, ""); err != nil {
			t.Fatal(err)
		}
	}
	if v, set := allowed[agentMAC]; !set || v {
		t.Fatalf("after SUCCESS netboot allowed=%v (set %v), want off", v, set)
	}
	if _, err := f.admin.ResetWorkflow(ctx, &kilnpb.ResetWorkflowRequest{WorkflowId: "cp01"}); err != nil {
		t.Fatal(err)
	}
	if !allowed[agentMAC] {
		t.Fatal("reset did not allow netboot again")
	}
}
