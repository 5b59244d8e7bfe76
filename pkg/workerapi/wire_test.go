package workerapi

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/kiln-dev/kiln/pkg/workerapi/proto"
)

// TestWireNumbers pins the field numbers and wire types of Tinkerbell's agent
// API, independently of the generated code, so a .proto edit cannot silently
// break compatibility with an unmodified Tinkerbell agent.
func TestWireNumbers(t *testing.T) {
	// A status report as Tinkerbell's agent encodes it.
	var b []byte
	str := func(n protowire.Number, s string) {
		b = protowire.AppendTag(b, n, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	str(1, "eksa-system/cp01")
	str(2, agentMAC)
	str(3, "task-1")
	str(4, "action-1")
	str(5, "stream")
	b = protowire.AppendTag(b, 6, protowire.VarintType)
	b = protowire.AppendVarint(b, 4) // TIMEOUT
	str(9, "1m3s")
	msg := protowire.AppendTag(nil, 1, protowire.BytesType)
	msg = protowire.AppendString(msg, "action completed")
	b = protowire.AppendTag(b, 10, protowire.BytesType)
	b = protowire.AppendBytes(b, msg)
	var req pb.ActionStatusRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	if req.GetWorkflowId() != "eksa-system/cp01" || req.GetAgentId() != agentMAC || req.GetTaskId() != "task-1" ||
		req.GetActionId() != "action-1" || req.GetActionName() != "stream" || req.GetActionState() != pb.ActionStatusRequest_TIMEOUT ||
		req.GetExecutionDuration() != "1m3s" || req.GetMessage().GetMessage() != "action completed" {
		t.Fatalf("decoded %v", &req)
	}

	// An action as kiln sends it: every field at Tinkerbell's number.
	out, err := proto.Marshal(actionResponse(testWorkflow("busybox"), struct{ Task, Action int }{0, 0}, agentMAC))
	if err != nil {
		t.Fatal(err)
	}
	want := map[protowire.Number]protowire.Type{1: protowire.BytesType, 2: protowire.BytesType, 3: protowire.BytesType, 4: protowire.BytesType,
		5: protowire.BytesType, 6: protowire.BytesType, 7: protowire.VarintType, 9: protowire.BytesType, 10: protowire.BytesType, 12: protowire.BytesType}
	seen := map[protowire.Number]bool{}
	for len(out) > 0 {
		num, typ, n := protowire.ConsumeTag(out)
		if n < 0 {
			t.Fatal(protowire.ParseError(n))
		}
		out = out[n:]
		if w, ok := want[num]; !ok || w != typ {
			t.Errorf("field %d has wire type %d, not expected", num, typ)
		}
		seen[num] = true
		m := protowire.ConsumeFieldValue(num, typ, out)
		out = out[m:]
	}
	for num := range want {
		if !seen[num] {
			t.Errorf("field %d missing", num)
		}
	}
	if pb.WorkflowService_GetAction_FullMethodName != "/proto.WorkflowService/GetAction" ||
		pb.WorkflowService_ReportActionStatus_FullMethodName != "/proto.WorkflowService/ReportActionStatus" {
		t.Error("service or method names differ from Tinkerbell's")
	}
}
