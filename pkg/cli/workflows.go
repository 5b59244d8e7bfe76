package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/kiln-dev/kiln/pkg/workerapi"
	"github.com/kiln-dev/kiln/pkg/workerapi/kilnpb"
	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
)

type workflowsOptions struct {
	storeOptions
	namespace string
	server    string
	sec       workerapi.ClientSecurity
	output    string
}

func newWorkflowsCommand(streams Streams) *cobra.Command {
	o := &workflowsOptions{}
	cmd := &cobra.Command{
		Use:   "workflows",
		Short: "Show each machine's provisioning workflow (list, show NAME, reset NAME)",
		Long: `Show provisioning workflows with the state and duration of every action and
the last log lines of a failed one. Reads a running "kiln serve workflow"
through its worker API (--server), its database when no server runs (--db),
or the Workflow objects of a server run with --kubeconfig (--kubeconfig).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return listWorkflows(cmd.Context(), streams, o) },
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.server, "server", "127.0.0.1:42113", "address of a running kiln workflow server")
	pf.StringVar(&o.db, "db", "", "read this workflow database file instead of a server (only while no server holds it)")
	pf.StringVar(&o.kubeconfig, "kubeconfig", "", "read the tinkerbell.org/v1alpha1 Workflow objects of this cluster instead of a server")
	pf.StringVar(&o.namespace, "namespace", workflow.DefaultNamespace, "namespace of the Workflow objects (with --kubeconfig)")
	pf.BoolVar(&o.sec.TLS, "tls", false, "connect to the server with TLS")
	pf.StringVar(&o.sec.CAFile, "ca-file", "", "verify the server against this CA certificate (PEM)")
	pf.StringVar(&o.sec.CertFile, "cert-file", "", "client certificate for mutual TLS (PEM)")
	pf.StringVar(&o.sec.KeyFile, "key-file", "", "client key for mutual TLS (PEM)")
	pf.StringVar(&o.sec.Token, "token", "", "bearer token the server requires")
	pf.StringVarP(&o.output, "output", "o", OutputText, fmt.Sprintf("output format: %v", []string{OutputText, OutputJSON}))

	list := &cobra.Command{
		Use: "list", Short: "List workflows with their current action", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return listWorkflows(cmd.Context(), streams, o) },
	}
	show := &cobra.Command{
		Use: "show NAME", Short: "Show one workflow action by action, with the log tail of a failed action", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return showWorkflow(cmd.Context(), streams, o, args[0]) },
	}
	reset := &cobra.Command{
		Use: "reset NAME", Short: "Reset a workflow to PENDING so the machine runs it again", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return resetWorkflow(cmd.Context(), streams, o, args[0])
		},
	}
	cmd.AddCommand(list, show, reset, newWorkflowsRenderCommand(streams, &o.output))
	return cmd
}

// loadWorkflows reads every workflow from the database file or the server.
func loadWorkflows(ctx context.Context, o *workflowsOptions) ([]*workflow.Workflow, error) {
	if o.db != "" || o.kubeconfig != "" {
		st, err := o.open(ctx)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		return st.List(ctx)
	}
	return withAdmin(ctx, o, func(ctx context.Context, c kilnpb.AdminClient) ([]*workflow.Workflow, error) {
		resp, err := c.ListWorkflows(ctx, &kilnpb.ListWorkflowsRequest{})
		if err != nil {
			return nil, err
		}
		var wfs []*workflow.Workflow
		if err := json.Unmarshal(resp.GetWorkflowsJson(), &wfs); err != nil {
			return nil, fmt.Errorf("server sent unreadable workflows: %w", err)
		}
		return wfs, nil
	})
}

// open opens the store --db or --kubeconfig names instead of a server.
func (o *workflowsOptions) open(ctx context.Context) (store.Store, error) {
	st, _, err := openWorkflowStore(ctx, o.storeOptions, o.namespace, time.Second)
	switch {
	case err != nil && o.kubeconfig == "":
		return nil, withExitCode(ExitInvalidInput, fmt.Errorf("%w (while a server runs, use --server instead)", err))
	case err != nil:
		return nil, withExitCode(ExitInvalidInput, err)
	}
	return st, nil
}

func withAdmin[T any](ctx context.Context, o *workflowsOptions, fn func(context.Context, kilnpb.AdminClient) (T, error)) (T, error) {
	var zero T
	opts, err := o.sec.DialOptions()
	if err != nil {
		return zero, usageError("%v", err)
	}
	conn, err := grpc.NewClient(o.server, opts...)
	if err != nil {
		return zero, usageError("--server %q: %v", o.server, err)
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := fn(cctx, kilnpb.NewAdminClient(conn))
	if err != nil {
		return zero, withExitCode(ExitInvalidInput, fmt.Errorf("workflow server %s: %w (is `kiln serve workflow` running? use --db to read its database file instead)", o.server, err))
	}
	return v, nil
}

func listWorkflows(ctx context.Context, streams Streams, o *workflowsOptions) error {
	if err := checkOutput(o.output, OutputText, OutputJSON); err != nil {
		return err
	}
	wfs, err := loadWorkflows(ctx, o)
	if err != nil {
		return err
	}
	if o.output == OutputJSON {
		if wfs == nil {
			wfs = []*workflow.Workflow{}
		}
		return writeJSON(streams.Out, wfs)
	}
	if len(wfs) == 0 {
		_, err := fmt.Fprintln(streams.Out, "no workflows")
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKFLOW\tMACHINE\tAGENT\tSTATE\tACTION\tDURATION")
	for _, w := range wfs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", w.ID(), w.Hardware, w.AgentID, w.State, currentAction(w), workflowDuration(w, now))
	}
	return tw.Flush()
}

func currentAction(w *workflow.Workflow) string {
	total, done := 0, 0
	for _, t := range w.Tasks {
		for _, a := range t.Actions {
			total++
			if a.State == workflow.StateSuccess {
				done++
			}
		}
	}
	ref, ok := w.Current()
	if !ok {
		return fmt.Sprintf("- (0/%d done)", total)
	}
	a := w.Action(ref)
	return fmt.Sprintf("%s %s (%d/%d done)", a.Name, a.State, done, total)
}

func workflowDuration(w *workflow.Workflow, now time.Time) string {
	switch {
	case w.StartedAt.IsZero():
		return "-"
	case w.FinishedAt.IsZero():
		return now.Sub(w.StartedAt).Round(time.Second).String()
	}
	return w.FinishedAt.Sub(w.StartedAt).Round(time.Second).String()
}

func findWorkflow(wfs []*workflow.Workflow, name string) (*workflow.Workflow, error) {
	id := workerapi.QualifiedID(name)
	var names []string
	for _, w := range wfs {
		if w.ID() == id || w.Hardware == name {
			return w, nil
		}
		names = append(names, w.ID())
	}
	return nil, withExitCode(ExitInvalidInput, fmt.Errorf("no workflow %q; known: %s", name, strings.Join(names, ", ")))
}

func showWorkflow(ctx context.Context, streams Streams, o *workflowsOptions, name string) error {
	if err := checkOutput(o.output, OutputText, OutputJSON); err != nil {
		return err
	}
	wfs, err := loadWorkflows(ctx, o)
	if err != nil {
		return err
	}
	w, err := findWorkflow(wfs, name)
	if err != nil {
		return err
	}
	if o.output == OutputJSON {
		return writeJSON(streams.Out, w)
	}
	return printWorkflow(streams.Out, w, time.Now())
}

func printWorkflow(out io.Writer, w *workflow.Workflow, now time.Time) error {
	fmt.Fprintf(out, "Workflow %s: %s\n", w.ID(), w.State)
	fmt.Fprintf(out, "  machine %s, agent %s, template %s, global timeout %ds\n", w.Hardware, w.AgentID, w.Template, w.GlobalTimeout)
	if !w.StartedAt.IsZero() {
		fmt.Fprintf(out, "  started %s, duration %s\n", w.StartedAt.Format(time.RFC3339), workflowDuration(w, now))
	}
	if w.Reason != "" {
		fmt.Fprintf(out, "  reason: %s\n", w.Reason)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nTASK\tACTION\tIMAGE\tSTATE\tDURATION\tMESSAGE")
	var failed []*workflow.ActionStatus
	for ti := range w.Tasks {
		t := &w.Tasks[ti]
		for ai := range t.Actions {
			a := &t.Actions[ai]
			d := "-"
			if !a.StartedAt.IsZero() {
				d = a.Duration(now).Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, a.Name, workflow.ImageName(a.Image), a.State, d, firstLine(a.Message))
			if a.State == workflow.StateFailed || a.State == workflow.StateTimeout {
				failed = append(failed, a)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, a := range failed {
		fmt.Fprintf(out, "\nAction %q %s: %s\n", a.Name, a.State, a.Message)
		if len(a.Log) == 0 {
			fmt.Fprintln(out, "  (no log lines received from the agent; check the syslog receiver)")
			continue
		}
		fmt.Fprintf(out, "  last %d log lines:\n", min(len(a.Log), 20))
		for _, l := range a.Log[max(0, len(a.Log)-20):] {
			fmt.Fprintf(out, "  | %s\n", l)
		}
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func resetWorkflow(ctx context.Context, streams Streams, o *workflowsOptions, name string) error {
	if o.db != "" || o.kubeconfig != "" {
		st, err := o.open(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		if _, err := st.Update(ctx, workerapi.QualifiedID(name), func(w *workflow.Workflow) error { w.Reset(); return nil }); err != nil {
			return withExitCode(ExitInvalidInput, err)
		}
	} else if _, err := withAdmin(ctx, o, func(ctx context.Context, c kilnpb.AdminClient) (*kilnpb.ResetWorkflowResponse, error) {
		return c.ResetWorkflow(ctx, &kilnpb.ResetWorkflowRequest{WorkflowId: name})
	}); err != nil {
		return err
	}
	_, err := fmt.Fprintf(streams.Out, "✓ workflow %s reset to PENDING; the machine runs it from the first action when it next asks\n", workerapi.QualifiedID(name))
	return err
}
