// Package workerapi serves kiln workflows to provisioning agents over gRPC,
// wire-compatible with Tinkerbell's agent API (proto.WorkflowService:
// GetAction / ReportActionStatus, with the NotFound / FailedPrecondition
// codes Tinkerbell's agent backs off on), plus kiln's own log and admin
// services. It also enforces action and global timeouts on the server side.
package workerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kiln-dev/kiln/pkg/workerapi/kilnpb"
	pb "github.com/kiln-dev/kiln/pkg/workerapi/proto"
	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
)

// DefaultPort is Tinkerbell's worker API port.
const DefaultPort = 42113

// Options tune the server's timeout enforcement.
type Options struct {
	// Grace is added to an action's timeout before the server declares it
	// TIMEOUT itself (the agent normally reports first). Default 30 s.
	Grace time.Duration
	// LeaveAfter is how long the agent must be silent while a final
	// reboot/kexec action is RUNNING before that counts as SUCCESS. Default 60 s.
	LeaveAfter time.Duration
	// CheckEvery is the period of the timeout sweep. Default 5 s.
	CheckEvery time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Logger receives state transitions; default slog.Default().
	Logger *slog.Logger
	// OnChange, when set, is called with a copy of a workflow after every
	// state change (report, timeout, reset); it must return quickly.
	OnChange func(*workflow.Workflow)
}

// Server implements the worker API on top of a workflow store.
type Server struct {
	pb.UnimplementedWorkflowServiceServer
	kilnpb.UnimplementedAgentLogServer
	kilnpb.UnimplementedAdminServer

	store store.Store
	opts  Options
	log   *slog.Logger
}

// New returns a server backed by st.
func New(st store.Store, opts Options) *Server {
	if opts.Grace == 0 {
		opts.Grace = 30 * time.Second
	}
	if opts.LeaveAfter == 0 {
		opts.LeaveAfter = 60 * time.Second
	}
	if opts.CheckEvery == 0 {
		opts.CheckEvery = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{store: st, opts: opts, log: opts.Logger}
}

// Register adds every service to g: proto.WorkflowService with both
// Tinkerbell worker APIs (see legacy.go), and kiln's AgentLog and Admin.
func (s *Server) Register(g *grpc.Server) {
	g.RegisterService(&workflowServiceDesc, s)
	kilnpb.RegisterAgentLogServer(g, s)
	kilnpb.RegisterAdminServer(g, s)
}

// GetAction implements proto.WorkflowService.
func (s *Server) GetAction(ctx context.Context, req *pb.ActionRequest) (*pb.ActionResponse, error) {
	agentID := strings.ToLower(strings.TrimSpace(req.GetAgentId()))
	if agentID == "" {
		return nil, status.Error(codes.InvalidArgument, "agent_id is required")
	}
	wfs, err := s.store.ListByAgent(ctx, agentID)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading workflows: %v", err)
	}
	if len(wfs) == 0 {
		return nil, status.Errorf(codes.NotFound, "no workflow for agent %s", agentID)
	}
	var active *workflow.Workflow
	for _, w := range wfs {
		if !w.State.Terminal() {
			active = w
			break
		}
	}
	if active == nil {
		last := wfs[len(wfs)-1]
		return nil, noAction(last.ID(), fmt.Sprintf("workflow %s is %s; reset it to run again", last.ID(), last.State))
	}
	var resp *pb.ActionResponse
	var served workflow.Ref
	var nextErr error
	w, err := s.store.Update(ctx, active.ID(), func(w *workflow.Workflow) error {
		before := w.State
		ref, err := w.Next(agentID, s.opts.Now())
		if err != nil {
			if w.State != before {
				nextErr = err // a transition happened (final reboot done): keep it
				return nil
			}
			return err
		}
		served = ref
		resp = actionResponse(w, ref, agentID)
		return nil
	})
	if err == nil && nextErr != nil {
		s.log.Info("workflow finished", "workflow", w.ID(), "state", w.State, "reason", w.Reason)
		s.changed(w)
		err = nextErr
	}
	switch {
	case errors.Is(err, workflow.ErrNoAction), errors.Is(err, store.ErrNotFound):
		return nil, status.Error(codes.NotFound, err.Error())
	case errors.Is(err, workflow.ErrNotRunnable):
		return nil, noAction(active.ID(), err.Error())
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "updating workflow %s: %v", active.ID(), err)
	}
	s.log.Debug("action served", "workflow", w.ID(), "agent", agentID, "task", w.Tasks[served.Task].Name, "action", w.Action(served).Name)
	return resp, nil
}

// noAction is the FailedPrecondition Tinkerbell's server sends when a
// workflow exists but serves no action, with the same PreconditionFailure
// detail (its agent backs off on the code alone, too).
func noAction(workflowID, msg string) error {
	st := status.New(codes.FailedPrecondition, msg)
	ds, err := st.WithDetails(&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{
		Type:        pb.PreconditionFailureViolation_PRECONDITION_FAILURE_VIOLATION_NO_ACTION_AVAILABLE.String(),
		Subject:     "tinkerbell.org/" + workflowID,
		Description: msg,
	}}})
	if err != nil {
		return st.Err()
	}
	return ds.Err()
}

func actionResponse(w *workflow.Workflow, r workflow.Ref, agentID string) *pb.ActionResponse {
	t := w.Tasks[r.Task]
	a := w.Action(r)
	resp := &pb.ActionResponse{
		WorkflowId:  ptr(w.ID()),
		TaskId:      ptr(t.ID),
		AgentId:     ptr(agentID),
		ActionId:    ptr(a.ID),
		Name:        ptr(a.Name),
		Image:       ptr(a.Image),
		Timeout:     ptr(a.Timeout),
		Command:     a.Command,
		Volumes:     w.AllVolumes(r),
		Environment: w.Env(r),
	}
	if a.Pid != "" {
		resp.Pid = ptr(a.Pid)
	}
	if ns := a.Namespaces; ns != nil {
		resp.Namespaces = &pb.Namespaces{}
		if ns.Network != "" {
			resp.Namespaces.Network = ptr(ns.Network)
		}
		if ns.PID != "" {
			resp.Namespaces.Pid = ptr(ns.PID)
		}
	}
	return resp
}

func ptr[T any](v T) *T { return &v }

var protoStates = map[pb.ActionStatusRequest_StateType]workflow.State{
	pb.ActionStatusRequest_PENDING: workflow.StatePending,
	pb.ActionStatusRequest_RUNNING: workflow.StateRunning,
	pb.ActionStatusRequest_FAILED:  workflow.StateFailed,
	pb.ActionStatusRequest_TIMEOUT: workflow.StateTimeout,
	pb.ActionStatusRequest_SUCCESS: workflow.StateSuccess,
}

// ReportActionStatus implements proto.WorkflowService.
func (s *Server) ReportActionStatus(ctx context.Context, req *pb.ActionStatusRequest) (*pb.ActionStatusResponse, error) {
	if req.GetWorkflowId() == "" || req.GetTaskId() == "" || req.GetActionId() == "" {
		return nil, status.Error(codes.InvalidArgument, "workflow_id, task_id and action_id are required")
	}
	st, ok := protoStates[req.GetActionState()]
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "action_state %v is not a reportable state", req.GetActionState())
	}
	rep := workflow.Report{
		TaskID: req.GetTaskId(), ActionID: req.GetActionId(), AgentID: req.GetAgentId(),
		State: st, Message: req.GetMessage().GetMessage(),
	}
	if ts := req.GetExecutionStart(); ts != nil {
		rep.Start = ts.AsTime()
	}
	if ts := req.GetExecutionStop(); ts != nil {
		rep.Stop = ts.AsTime()
	}
	var name string
	w, err := s.store.Update(ctx, req.GetWorkflowId(), func(w *workflow.Workflow) error {
		if ref, err := w.Find(rep.TaskID, rep.ActionID); err == nil {
			name = w.Action(ref).Name
		}
		return w.Apply(rep, s.opts.Now())
	})
	if err := reportError(err); err != nil {
		return nil, err
	}
	s.log.Info("action state", "workflow", w.ID(), "action", name, "state", st, "message", rep.Message, "workflowState", w.State)
	s.changed(w)
	return &pb.ActionStatusResponse{}, nil
}

// reportError maps store/state errors onto the codes Tinkerbell's agent
// treats as permanent (NotFound, InvalidArgument, FailedPrecondition) or
// retries (Unavailable).
func reportError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, workflow.ErrUnknownAction):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, workflow.ErrBadReport):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, workflow.ErrNotRunnable):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Unavailable, "%v", err)
}

// AppendLog implements kilnpb.AgentLog: it keeps the last lines of each
// action's output.
func (s *Server) AppendLog(ctx context.Context, req *kilnpb.AppendLogRequest) (*kilnpb.AppendLogResponse, error) {
	if req.GetWorkflowId() == "" || req.GetTaskId() == "" || req.GetActionId() == "" {
		return nil, status.Error(codes.InvalidArgument, "workflow_id, task_id and action_id are required")
	}
	_, err := s.store.Update(ctx, req.GetWorkflowId(), func(w *workflow.Workflow) error {
		ref, err := w.Find(req.GetTaskId(), req.GetActionId())
		if err != nil {
			return err
		}
		w.AppendLog(ref, req.GetLines()...)
		w.LastSeen = s.opts.Now().UTC()
		return nil
	})
	if err := reportError(err); err != nil {
		return nil, err
	}
	return &kilnpb.AppendLogResponse{}, nil
}

// ListWorkflows implements kilnpb.Admin.
func (s *Server) ListWorkflows(ctx context.Context, _ *kilnpb.ListWorkflowsRequest) (*kilnpb.ListWorkflowsResponse, error) {
	wfs, err := s.store.List(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading workflows: %v", err)
	}
	if wfs == nil {
		wfs = []*workflow.Workflow{}
	}
	raw, err := json.Marshal(wfs)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encoding workflows: %v", err)
	}
	return &kilnpb.ListWorkflowsResponse{WorkflowsJson: raw}, nil
}

// ResetWorkflow implements kilnpb.Admin.
func (s *Server) ResetWorkflow(ctx context.Context, req *kilnpb.ResetWorkflowRequest) (*kilnpb.ResetWorkflowResponse, error) {
	id := QualifiedID(req.GetWorkflowId())
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "workflow_id is required")
	}
	w, err := s.store.Update(ctx, id, func(w *workflow.Workflow) error { w.Reset(); return nil })
	if err != nil {
		return nil, reportError(err)
	}
	s.log.Info("workflow reset", "workflow", id)
	s.changed(w)
	return &kilnpb.ResetWorkflowResponse{}, nil
}

func (s *Server) changed(w *workflow.Workflow) {
	if s.opts.OnChange != nil && w != nil {
		s.opts.OnChange(w)
	}
}

// QualifiedID turns a bare workflow name into "<default namespace>/<name>".
func QualifiedID(id string) string {
	if id == "" || strings.Contains(id, "/") {
		return id
	}
	return workflow.DefaultNamespace + "/" + id
}

// Run enforces server-side timeouts until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("timeout sweep failed", "err", err)
			}
		}
	}
}

// Sweep applies timeouts to every running workflow once.
func (s *Server) Sweep(ctx context.Context) error {
	wfs, err := s.store.List(ctx)
	if err != nil {
		return err
	}
	for _, w := range wfs {
		if w.State != workflow.StateRunning {
			continue
		}
		changed := false
		w2, err := s.store.Update(ctx, w.ID(), func(w *workflow.Workflow) error {
			changed = w.Expire(s.opts.Now(), s.opts.Grace, s.opts.LeaveAfter)
			if !changed {
				return errUnchanged
			}
			return nil
		})
		if errors.Is(err, errUnchanged) {
			continue
		}
		if err != nil {
			return fmt.Errorf("applying timeouts to %s: %w", w.ID(), err)
		}
		s.log.Info("workflow state", "workflow", w2.ID(), "state", w2.State, "reason", w2.Reason)
		s.changed(w2)
	}
	return nil
}

var errUnchanged = errors.New("unchanged")

// Timestamp converts t for a status report (nil for the zero time).
func Timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// Serve runs the worker API on lis and the timeout sweep until ctx ends,
// then stops gracefully (in-flight calls finish, at most 5 s).
func (s *Server) Serve(ctx context.Context, lis net.Listener, opts ...grpc.ServerOption) error {
	g := grpc.NewServer(opts...)
	s.Register(g)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go func() { _ = s.Run(sweepCtx) }()
	select {
	case err := <-errc:
		return fmt.Errorf("worker API on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		g.Stop()
	}
	return nil
}
