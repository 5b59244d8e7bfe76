package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-dev/kiln/pkg/agent/actions"
	"github.com/kiln-dev/kiln/pkg/workerapi"
	"github.com/kiln-dev/kiln/pkg/workerapi/kilnpb"
	pb "github.com/kiln-dev/kiln/pkg/workerapi/proto"
)

// Options configure an Agent.
type Options struct {
	Config   Config
	Security workerapi.ClientSecurity
	// Runtime is handed to every action (Log is set per action).
	Runtime actions.Runtime
	// PollMin and PollMax bound the exponential back-off between polls
	// and retries (defaults 500 ms and 5 s, Tinkerbell's maximum).
	PollMin, PollMax time.Duration
	Logger           *slog.Logger
}

// Agent polls the worker API and runs actions.
type Agent struct {
	opts Options
	conn *grpc.ClientConn
	wf   pb.WorkflowServiceClient
	logs kilnpb.AgentLogClient
	log  *slog.Logger
}

// New connects lazily to the worker API; nothing is sent until Run.
func New(opts Options) (*Agent, error) {
	if err := opts.Config.Normalize(); err != nil {
		return nil, err
	}
	if opts.PollMin == 0 {
		opts.PollMin = 500 * time.Millisecond
	}
	if opts.PollMax == 0 {
		opts.PollMax = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	dial, err := opts.Security.DialOptions()
	if err != nil {
		return nil, err
	}
	// Reconnect as quickly as the agent polls (gRPC's default backs off to
	// 2 minutes), so an agent comes back within PollMax of its server.
	dial = append(dial, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: opts.PollMin, Multiplier: 1.6, Jitter: 0.2, MaxDelay: opts.PollMax},
		MinConnectTimeout: 5 * time.Second,
	}))
	conn, err := grpc.NewClient(opts.Config.Authority, dial...)
	if err != nil {
		return nil, fmt.Errorf("worker API address %q: %w", opts.Config.Authority, err)
	}
	return &Agent{
		opts: opts, conn: conn, log: opts.Logger.With("agent", opts.Config.WorkerID),
		wf: pb.NewWorkflowServiceClient(conn), logs: kilnpb.NewAgentLogClient(conn),
	}, nil
}

// Close releases the connection.
func (a *Agent) Close() error { return a.conn.Close() }

// Run polls for actions and runs them until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent started", "server", a.opts.Config.Authority)
	wait := a.opts.PollMin
	unreachable := false
	for {
		act, err := a.wf.GetAction(ctx, &pb.ActionRequest{AgentId: &a.opts.Config.WorkerID, AgentAttributes: attributes()})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			switch status.Code(err) {
			case codes.NotFound, codes.FailedPrecondition:
				a.log.Debug("no action", "reason", status.Convert(err).Message())
			case codes.Unauthenticated, codes.PermissionDenied:
				a.log.Error("the worker API refused this agent; check --token / client certificate", "err", err)
			default:
				if !unreachable {
					a.log.Warn("worker API unreachable; retrying with back-off", "err", err)
				}
				unreachable = true
			}
			if !sleep(ctx, wait) {
				return nil
			}
			wait = min(2*wait, a.opts.PollMax)
			continue
		}
		if unreachable {
			a.log.Info("worker API reachable again")
			unreachable = false
		}
		wait = a.opts.PollMin
		a.execute(ctx, act)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// execute runs one action and reports its outcome.
func (a *Agent) execute(ctx context.Context, act *pb.ActionResponse) {
	log := a.log.With("workflow", act.GetWorkflowId(), "action", act.GetName(), "image", act.GetImage())
	start := time.Now()
	if !a.report(ctx, act, pb.ActionStatusRequest_RUNNING, "running action", start, time.Time{}) {
		return
	}
	log.Info("action started", "timeout", act.GetTimeout())
	sink := newLogSink(a.logs, act, log)
	sinkCtx, stopSink := context.WithCancel(ctx)
	sinkDone := make(chan struct{})
	go func() { defer close(sinkDone); sink.run(sinkCtx, a.opts.PollMax) }()

	timeout := time.Duration(act.GetTimeout()) * time.Second
	if timeout <= 0 {
		timeout = time.Hour // what the old tink-worker did for a missing timeout
		log.Warn("action has no timeout; using 1h")
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	rt := a.opts.Runtime
	rt.Log = sink
	var then actions.Then
	fn, err := actions.Lookup(act.GetImage())
	if err == nil {
		then, err = fn(actx, &rt, actions.ParseEnv(act.GetEnvironment()), act.GetCommand())
	}
	timedOut := errors.Is(actx.Err(), context.DeadlineExceeded)
	cancel()
	stop := time.Now()
	state, msg := pb.ActionStatusRequest_SUCCESS, "action completed"
	switch {
	case ctx.Err() != nil:
		stopSink()
		<-sinkDone
		return // shutting down: the server re-serves the RUNNING action
	case timedOut:
		state, msg = pb.ActionStatusRequest_TIMEOUT, fmt.Sprintf("action timed out after %s", timeout)
		if err != nil {
			msg += ": " + err.Error()
		}
	case err != nil:
		state, msg = pb.ActionStatusRequest_FAILED, err.Error()
	case then != nil:
		msg = "action completed; rebooting now"
	}
	if state != pb.ActionStatusRequest_SUCCESS {
		fmt.Fprintf(sink, "%s: %s\n", state, msg)
	}
	stopSink()
	<-sinkDone
	sink.flush(ctx)
	log.Info("action finished", "state", state, "duration", stop.Sub(start).Round(time.Millisecond), "message", msg)
	if !a.report(ctx, act, state, msg, start, stop) {
		return
	}
	if state == pb.ActionStatusRequest_SUCCESS && then != nil {
		if err := then(); err != nil {
			log.Error("reboot after the final action failed", "err", err)
		}
	}
}

// report sends a status report, retrying transient errors until ctx ends.
// It returns false when the report could not be delivered.
func (a *Agent) report(ctx context.Context, act *pb.ActionResponse, st pb.ActionStatusRequest_StateType, msg string, start, stop time.Time) bool {
	req := &pb.ActionStatusRequest{
		WorkflowId: act.WorkflowId, AgentId: &a.opts.Config.WorkerID, TaskId: act.TaskId, ActionId: act.ActionId,
		ActionName: act.Name, ActionState: &st, ExecutionStart: workerapi.Timestamp(start), ExecutionStop: workerapi.Timestamp(stop),
		Message: &pb.ActionMessage{Message: &msg},
	}
	if !stop.IsZero() {
		d := stop.Sub(start).Round(time.Millisecond).String()
		req.ExecutionDuration = &d
	}
	wait := a.opts.PollMin
	for {
		_, err := a.wf.ReportActionStatus(ctx, req)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		switch status.Code(err) {
		case codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition, codes.Unauthenticated, codes.PermissionDenied:
			a.log.Error("the server rejected a status report; abandoning this action", "action", act.GetName(), "state", st, "err", err)
			return false
		}
		a.log.Warn("status report failed; retrying", "action", act.GetName(), "state", st, "err", err)
		if !sleep(ctx, wait) {
			return false
		}
		wait = min(2*wait, a.opts.PollMax)
	}
}

// attributes describes the machine's network interfaces for the server.
func attributes() *pb.AgentAttributes {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	attrs := &pb.AgentAttributes{}
	for _, i := range ifs {
		if len(i.HardwareAddr) == 0 {
			continue
		}
		name, mac := i.Name, i.HardwareAddr.String()
		attrs.Network = append(attrs.Network, &pb.Network{Name: &name, Mac: &mac})
	}
	return attrs
}

// logSink turns action output into lines: each goes to the agent's log
// (console and syslog) and is batched to the server's AgentLog service.
type logSink struct {
	client kilnpb.AgentLogClient
	act    *pb.ActionResponse
	log    *slog.Logger

	mu       sync.Mutex
	partial  []byte
	pending  []string
	disabled bool
}

const maxPendingLines = 2000

func newLogSink(c kilnpb.AgentLogClient, act *pb.ActionResponse, log *slog.Logger) *logSink {
	return &logSink{client: c, act: act, log: log}
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.addLine(string(s.partial[:i]))
		s.partial = s.partial[i+1:]
	}
	if len(s.partial) > 4096 { // a very long line without newline
		s.addLine(string(s.partial))
		s.partial = nil
	}
	return len(p), nil
}

func (s *logSink) addLine(line string) {
	line = strings.TrimRight(line, "\r")
	s.log.Info(line)
	if s.disabled {
		return
	}
	s.pending = append(s.pending, line)
	if n := len(s.pending); n > maxPendingLines {
		s.pending = s.pending[n-maxPendingLines:]
	}
}

func (s *logSink) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(min(every, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.flush(ctx)
		}
	}
}

// flush sends pending lines; on failure they stay queued for the next try.
func (s *logSink) flush(ctx context.Context) {
	s.mu.Lock()
	if len(s.partial) > 0 {
		s.addLine(string(s.partial))
		s.partial = nil
	}
	lines := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(lines) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := s.client.AppendLog(cctx, &kilnpb.AppendLogRequest{
		WorkflowId: s.act.GetWorkflowId(), AgentId: s.act.GetAgentId(), TaskId: s.act.GetTaskId(), ActionId: s.act.GetActionId(), Lines: lines,
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	switch status.Code(err) {
	case codes.OK:
	case codes.Unimplemented: // a Tinkerbell server: logs stay local
		s.disabled = true
	case codes.NotFound, codes.InvalidArgument:
	default:
		s.pending = append(lines, s.pending...)
		if n := len(s.pending); n > maxPendingLines {
			s.pending = s.pending[n-maxPendingLines:]
		}
	}
}
