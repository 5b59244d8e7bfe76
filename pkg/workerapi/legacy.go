package workerapi

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-dev/kiln/pkg/workerapi/legacypb"
	pb "github.com/kiln-dev/kiln/pkg/workerapi/proto"
	"github.com/kiln-dev/kiln/pkg/workflow"
)

// Tinkerbell's current agent API and the older tink-worker API both use the
// service name proto.WorkflowService and both define ReportActionStatus,
// with different request types. gRPC routes on the method path only, so
// kiln registers one service with all four methods and decides per
// ReportActionStatus request which message it got (see isLegacyStatus).
var workflowServiceDesc = grpc.ServiceDesc{
	ServiceName: "proto.WorkflowService",
	HandlerType: (*pb.WorkflowServiceServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "GetAction", Handler: unary("GetAction", func(s *Server, ctx context.Context, req *pb.ActionRequest) (proto.Message, error) {
			return s.GetAction(ctx, req)
		})},
		{MethodName: "ReportActionStatus", Handler: reportActionStatusHandler},
		{MethodName: "GetWorkflowActions", Handler: unary("GetWorkflowActions", func(s *Server, ctx context.Context, req *legacypb.WorkflowActionsRequest) (proto.Message, error) {
			return s.GetWorkflowActions(ctx, req)
		})},
	},
	Streams: []grpc.StreamDesc{{
		StreamName:    "GetWorkflowContexts",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			req := &legacypb.WorkflowContextRequest{}
			if err := stream.RecvMsg(req); err != nil {
				return err
			}
			return srv.(*Server).GetWorkflowContexts(stream.Context(), req, func(c *legacypb.WorkflowContext) error { return stream.SendMsg(c) })
		},
	}},
	Metadata: "workflow.proto",
}

// unary adapts a typed method to a grpc.MethodDesc handler, honouring the
// server's interceptors (token authentication).
func unary[Req any, PReq interface {
	*Req
	proto.Message
}](method string, fn func(*Server, context.Context, PReq) (proto.Message, error)) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		req := PReq(new(Req))
		if err := dec(req); err != nil {
			return nil, err
		}
		call := func(ctx context.Context, r any) (any, error) { return fn(srv.(*Server), ctx, r.(PReq)) }
		if interceptor == nil {
			return call(ctx, req)
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/proto.WorkflowService/" + method}
		return interceptor(ctx, req, info, call)
	}
}

func reportActionStatusHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	// Decoding into a message without fields keeps every field as unknown
	// bytes: the request exactly as sent.
	raw := &legacypb.Empty{}
	if err := dec(raw); err != nil {
		return nil, err
	}
	b := raw.ProtoReflect().GetUnknown()
	var req proto.Message = &pb.ActionStatusRequest{}
	if isLegacyStatus(b) {
		req = &legacypb.WorkflowActionStatus{}
	}
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "decoding ReportActionStatus: %v", err)
	}
	call := func(ctx context.Context, r any) (any, error) {
		if old, ok := r.(*legacypb.WorkflowActionStatus); ok {
			return srv.(*Server).reportLegacy(ctx, old)
		}
		return srv.(*Server).ReportActionStatus(ctx, r.(*pb.ActionStatusRequest))
	}
	if interceptor == nil {
		return call(ctx, req)
	}
	return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: pb.WorkflowService_ReportActionStatus_FullMethodName}, call)
}

// isLegacyStatus tells an old WorkflowActionStatus from a current
// ActionStatusRequest by wire types: field 4 is the action_status enum
// (varint) in the old message and action_id (bytes) in the new one; field
// 5 is seconds (varint) vs action_name (bytes) and field 6 message (bytes)
// vs action_state (varint), for requests that omit field 4.
func isLegacyStatus(b []byte) bool {
	verdict := 0 // >0 legacy, <0 current
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == 4 && typ == protowire.VarintType, num == 5 && typ == protowire.VarintType, num == 6 && typ == protowire.BytesType:
			verdict++
		case num == 4 && typ == protowire.BytesType, num == 5 && typ == protowire.BytesType, num == 6 && typ == protowire.VarintType:
			verdict--
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return false
		}
		b = b[m:]
	}
	return verdict > 0
}

var legacyStates = map[workflow.State]legacypb.State{
	workflow.StatePending: legacypb.State_STATE_PENDING,
	workflow.StateRunning: legacypb.State_STATE_RUNNING,
	workflow.StateFailed:  legacypb.State_STATE_FAILED,
	workflow.StateTimeout: legacypb.State_STATE_TIMEOUT,
	workflow.StateSuccess: legacypb.State_STATE_SUCCESS,
}

// GetWorkflowContexts streams one context per unfinished workflow of the
// worker, then ends (old tink-worker API).
func (s *Server) GetWorkflowContexts(ctx context.Context, req *legacypb.WorkflowContextRequest, send func(*legacypb.WorkflowContext) error) error {
	if req.GetWorkerId() == "" {
		return status.Error(codes.InvalidArgument, "worker_id is required")
	}
	wfs, err := s.store.ListByAgent(ctx, req.GetWorkerId())
	if err != nil {
		return status.Errorf(codes.Unavailable, "reading workflows: %v", err)
	}
	for _, w := range wfs {
		if w.State.Terminal() {
			continue
		}
		c := &legacypb.WorkflowContext{WorkflowId: w.ID(), CurrentWorker: w.AgentID}
		index := int64(0)
		for _, t := range w.Tasks {
			for _, a := range t.Actions {
				if a.State != workflow.StatePending {
					c.CurrentWorker, c.CurrentTask, c.CurrentAction = t.AgentID, t.Name, a.Name
					c.CurrentActionIndex, c.CurrentActionState = index, legacyStates[a.State]
				}
				index++
			}
		}
		c.TotalNumberOfActions = index
		if err := send(c); err != nil {
			return err
		}
	}
	return nil
}

// GetWorkflowActions returns every action of a workflow, flattened across
// tasks, each with its task's worker (old tink-worker API).
func (s *Server) GetWorkflowActions(ctx context.Context, req *legacypb.WorkflowActionsRequest) (*legacypb.WorkflowActionList, error) {
	w, err := s.store.Get(ctx, QualifiedID(req.GetWorkflowId()))
	if err != nil {
		return nil, reportError(err)
	}
	list := &legacypb.WorkflowActionList{}
	for ti, t := range w.Tasks {
		for ai, a := range t.Actions {
			r := workflow.Ref{Task: ti, Action: ai}
			list.ActionList = append(list.ActionList, &legacypb.WorkflowAction{
				TaskName: t.Name, Name: a.Name, Image: a.Image, Timeout: a.Timeout, Command: a.Command,
				WorkerId: t.AgentID, Volumes: w.AllVolumes(r), Environment: w.Env(r), Pid: a.Pid,
			})
		}
	}
	return list, nil
}

var fromLegacy = map[legacypb.State]workflow.State{
	legacypb.State_STATE_PENDING: workflow.StatePending,
	legacypb.State_STATE_RUNNING: workflow.StateRunning,
	legacypb.State_STATE_FAILED:  workflow.StateFailed,
	legacypb.State_STATE_TIMEOUT: workflow.StateTimeout,
	legacypb.State_STATE_SUCCESS: workflow.StateSuccess,
}

// reportLegacy applies an old-style status report, which names the action
// by task and action name.
func (s *Server) reportLegacy(ctx context.Context, req *legacypb.WorkflowActionStatus) (*legacypb.Empty, error) {
	if req.GetWorkflowId() == "" || req.GetTaskName() == "" || req.GetActionName() == "" {
		return nil, status.Error(codes.InvalidArgument, "workflow_id, task_name and action_name are required")
	}
	st, ok := fromLegacy[req.GetActionStatus()]
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "action_status %v is not a known state", req.GetActionStatus())
	}
	now := s.opts.Now()
	w, err := s.store.Update(ctx, QualifiedID(req.GetWorkflowId()), func(w *workflow.Workflow) error {
		for _, t := range w.Tasks {
			if t.Name != req.GetTaskName() {
				continue
			}
			for _, a := range t.Actions {
				if a.Name == req.GetActionName() {
					rep := workflow.Report{TaskID: t.ID, ActionID: a.ID, AgentID: req.GetWorkerId(), State: st, Message: req.GetMessage()}
					if st.Terminal() && req.GetSeconds() > 0 && !a.StartedAt.IsZero() {
						rep.Stop = a.StartedAt.Add(time.Duration(req.GetSeconds()) * time.Second)
					}
					return w.Apply(rep, now)
				}
			}
		}
		return fmt.Errorf("%w: task %q action %q in %s", workflow.ErrUnknownAction, req.GetTaskName(), req.GetActionName(), w.ID())
	})
	if err := reportError(err); err != nil {
		return nil, err
	}
	s.log.Info("action state", "workflow", w.ID(), "action", req.GetActionName(), "state", st, "message", req.GetMessage(), "workflowState", w.State, "api", "tink-worker")
	s.changed(w)
	return &legacypb.Empty{}, nil
}
