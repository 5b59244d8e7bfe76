package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/workerapi"
	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
	"github.com/kiln-dev/kiln/pkg/workflow/store/kube"
	"github.com/kiln-dev/kiln/templates"
)

// defaultWorkflowTemplate is the embedded template used without --template.
const defaultWorkflowTemplate = "workflows/ubuntu.yaml"

// templateOptions choose the template, the machines and the values a
// workflow is rendered with (serve workflow, workflows render).
type templateOptions struct {
	hardwareCSV string
	template    string
	set         []string
	imageURL    string
	metadataURL string
	namespace   string
}

func addTemplateFlags(cmd *cobra.Command, o *templateOptions) {
	f := cmd.Flags()
	f.StringVar(&o.hardwareCSV, "hardware-csv", "", "Hardware.csv listing the machines (required)")
	f.StringVar(&o.template, "template", "", "workflow template file (Tinkerbell format); default: kiln's embedded Ubuntu template")
	f.StringArrayVar(&o.set, "set", nil, "extra template value key=value, available as {{ .key }} (repeatable)")
	f.StringVar(&o.imageURL, "image-url", "", "OS disk image URL, as {{ .image_url }}")
	f.StringVar(&o.metadataURL, "metadata-url", "", "kiln metadata service URL, as {{ .metadata_url }}")
	f.StringVar(&o.namespace, "namespace", workflow.DefaultNamespace, "namespace of the workflows (with --kubeconfig: of the Workflow objects)")
}

// storeOptions choose where workflows are kept: a local bbolt file, or
// tinkerbell.org/v1alpha1 Workflow objects in a Kubernetes API.
type storeOptions struct {
	db         string
	kubeconfig string
}

// openWorkflowStore opens the store the options select and describes it for
// progress output. Its errors are the operator's to fix (exit 1).
func openWorkflowStore(ctx context.Context, o storeOptions, namespace string, lockWait time.Duration) (store.Store, string, error) {
	if o.kubeconfig != "" {
		st, err := kube.Open(ctx, o.kubeconfig, namespace)
		if err != nil {
			return nil, "", fmt.Errorf("--kubeconfig %s: %w", o.kubeconfig, err)
		}
		return st, fmt.Sprintf("Workflow objects in namespace %s of %s", st.Namespace(), o.kubeconfig), nil
	}
	st, err := store.OpenBolt(o.db, lockWait)
	if err != nil {
		return nil, "", err
	}
	return st, "workflow database " + o.db, nil
}

type serveWorkflowOptions struct {
	templateOptions
	storeOptions
	listen     string
	sec        workerapi.Security
	grace      time.Duration
	leaveAfter time.Duration
}

func newServeWorkflowCommand(streams Streams) *cobra.Command {
	o := &serveWorkflowOptions{}
	cmd := &cobra.Command{
		Use:   "workflow",
		Short: "Create one workflow per machine from a template and serve the Tinkerbell-compatible worker API",
		Long: `Render the workflow template for every machine of Hardware.csv, store one
workflow per machine (existing workflows are kept, so a restarted server
resumes where it stopped) and serve the worker API that kiln's agent and
Tinkerbell's agent poll. Without --template kiln's default Ubuntu template is
used; it needs --image-url and --metadata-url.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServeWorkflow(cmd.Context(), streams, o) },
	}
	f := cmd.Flags()
	addTemplateFlags(cmd, &o.templateOptions)
	f.StringVar(&o.listen, "grpc-listen", fmt.Sprintf(":%d", workerapi.DefaultPort), "worker API listen address")
	f.StringVar(&o.db, "db", "kiln-workflows.db", "workflow database file (created if missing; not used with --kubeconfig)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "keep workflows as tinkerbell.org/v1alpha1 Workflow objects in this cluster (e.g. the bootstrap cluster's) instead of --db")
	f.StringVar(&o.sec.CertFile, "grpc-tls-cert", "", "serve TLS with this certificate (PEM)")
	f.StringVar(&o.sec.KeyFile, "grpc-tls-key", "", "key of --grpc-tls-cert (PEM)")
	f.StringVar(&o.sec.ClientCAFile, "grpc-client-ca", "", "require client certificates signed by this CA (mutual TLS)")
	f.StringVar(&o.sec.Token, "grpc-token", "", "require this bearer token from agents (Tinkerbell's agent cannot send one)")
	f.DurationVar(&o.grace, "action-grace", 30*time.Second, "how long past an action's timeout the server waits for the agent's report before marking it TIMEOUT")
	f.DurationVar(&o.leaveAfter, "reboot-leave-after", 60*time.Second, "a final reboot/kexec action still RUNNING counts as SUCCESS once the agent has been silent this long")
	return cmd
}

func templateValues(o *templateOptions) (map[string]string, error) {
	values := map[string]string{}
	for _, kv := range o.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError("--set %q: want key=value", kv)
		}
		values[k] = v
	}
	if o.imageURL != "" {
		values["image_url"] = o.imageURL
	}
	if o.metadataURL != "" {
		values["metadata_url"] = o.metadataURL
	}
	return values, nil
}

func runServeWorkflow(ctx context.Context, streams Streams, o *serveWorkflowOptions) error {
	step := progress{streams.Out}
	r, err := renderWorkflows(step, &o.templateOptions)
	if err != nil {
		return err
	}
	wfs := r.workflows

	var st store.Store
	if err := step.step("open workflow store", func() (string, error) {
		var where string
		if st, where, err = openWorkflowStore(ctx, o.storeOptions, o.namespace, 2*time.Second); err != nil {
			return "", withExitCode(ExitInvalidInput, err)
		}
		created, err := store.Ensure(ctx, st, wfs)
		if err != nil {
			_ = st.Close()
			return "", fmt.Errorf("storing workflows in %s: %w", where, err)
		}
		return fmt.Sprintf("%s: %d created, %d resumed", where, created, len(wfs)-created), nil
	}); err != nil {
		return err
	}
	defer st.Close()

	opts, err := o.sec.ServerOptions()
	if err != nil {
		return usageError("%v", err)
	}
	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return withExitCode(ExitInvalidInput, fmt.Errorf("--grpc-listen %s: %w", o.listen, err))
	}
	progress := newWorkflowProgress(streams)
	srv := workerapi.New(st, workerapi.Options{Grace: o.grace, LeaveAfter: o.leaveAfter, OnChange: progress.changed})
	fmt.Fprintf(streams.Out, "✓ serving the worker API on %s (Ctrl-C to stop; `kiln workflows` shows progress)\n", lis.Addr())
	return srv.Serve(ctx, lis, opts...)
}

// rendered is a template rendered for every machine of an inventory.
type rendered struct {
	inv       *hardware.Inventory
	name      string
	src       []byte
	values    map[string]string
	workflows []*workflow.Workflow
}

// renderWorkflows reads the inventory and the template and renders one
// workflow per machine, one progress step each.
func renderWorkflows(step progress, o *templateOptions) (*rendered, error) {
	if o.hardwareCSV == "" {
		return nil, usageError("--hardware-csv is required")
	}
	values, err := templateValues(o)
	if err != nil {
		return nil, err
	}
	var inv *hardware.Inventory
	if err := step.step(fmt.Sprintf("read %s", o.hardwareCSV), func() (string, error) {
		inv, err = hardware.ReadFile(o.hardwareCSV)
		if err != nil {
			return "", withExitCode(ExitInvalidInput, err)
		}
		return fmt.Sprintf("%d machines", len(inv.Machines)), nil
	}); err != nil {
		return nil, err
	}
	name, src := "ubuntu (embedded)", []byte(nil)
	if o.template != "" {
		name = o.template
		if src, err = os.ReadFile(o.template); err != nil {
			return nil, withExitCode(ExitInvalidInput, fmt.Errorf("--template: %w", err))
		}
	} else if src, err = templates.FS.ReadFile(defaultWorkflowTemplate); err != nil {
		return nil, err
	}
	r := &rendered{inv: inv, name: name, src: src, values: values}
	err = step.step("render template "+name, func() (string, error) {
		r.workflows, err = workflow.ForInventory(inv, name, src, values, o.namespace, time.Now())
		if err != nil && strings.Contains(err.Error(), "map has no entry for key") {
			err = fmt.Errorf("%w\nhint: template values come from --set KEY=VALUE, --image-url (.image_url) and --metadata-url (.metadata_url)", err)
		}
		if err != nil {
			return "", withExitCode(ExitInvalidInput, err)
		}
		return fmt.Sprintf("%d workflows", len(r.workflows)), nil
	})
	return r, err
}

// workflowProgress prints one line per action transition and per finished
// workflow while the server runs, so the operator sees provisioning move.
type workflowProgress struct {
	streams Streams
	mu      sync.Mutex
	actions map[string]workflow.State // action id → last printed state
	done    map[string]workflow.State // workflow id → last printed final state
}

func newWorkflowProgress(s Streams) *workflowProgress {
	return &workflowProgress{streams: s, actions: map[string]workflow.State{}, done: map[string]workflow.State{}}
}

func (p *workflowProgress) changed(w *workflow.Workflow) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for _, t := range w.Tasks {
		for i := range t.Actions {
			a := &t.Actions[i]
			if p.actions[a.ID] == a.State || a.State == workflow.StatePending {
				continue
			}
			p.actions[a.ID] = a.State
			d := a.Duration(now).Round(100 * time.Millisecond)
			switch a.State {
			case workflow.StateRunning:
				fmt.Fprintf(p.streams.Out, "… %s: %s running\n", w.Hardware, a.Name)
			case workflow.StateSuccess:
				fmt.Fprintf(p.streams.Out, "✓ %s: %s (%s)\n", w.Hardware, a.Name, d)
			default:
				fmt.Fprintf(p.streams.Out, "✗ %s: %s %s after %s: %s\n", w.Hardware, a.Name, a.State, d, firstLine(a.Message))
			}
		}
	}
	switch {
	case w.State.Terminal() && p.done[w.ID()] != w.State:
		p.done[w.ID()] = w.State
		mark := "✓"
		if w.State != workflow.StateSuccess {
			mark = "✗"
		}
		fmt.Fprintf(p.streams.Out, "%s %s: workflow %s in %s%s (details: kiln workflows show %s)\n", mark, w.Hardware, w.State, workflowDuration(w, now), reasonSuffix(w), w.Hardware)
	case w.State == workflow.StatePending && p.done[w.ID()] != "":
		delete(p.done, w.ID()) // reset: print the next run again
		fmt.Fprintf(p.streams.Out, "… %s: workflow reset to PENDING\n", w.Hardware)
	}
}

func reasonSuffix(w *workflow.Workflow) string {
	if w.Reason == "" {
		return ""
	}
	return ": " + firstLine(w.Reason)
}

// newWorkflowsRenderCommand is "kiln workflows render"; output is the
// workflows group's -o flag.
func newWorkflowsRenderCommand(streams Streams, output *string) *cobra.Command {
	o := &templateOptions{}
	cmd := &cobra.Command{
		Use:   "render [MACHINE...]",
		Short: "Render and validate the workflow template for machines of Hardware.csv, without serving",
		Long: `Render the workflow template (default: kiln's embedded Ubuntu template) for
every machine of Hardware.csv, or only the named ones, validate it as
"kiln serve workflow" would, and print the rendered YAML (-o json: the
workflows as they would be stored). Exit status 1 names every machine, task
and action with a problem.`,
		RunE: func(_ *cobra.Command, args []string) error {
			if err := checkOutput(*output, OutputText, OutputJSON); err != nil {
				return err
			}
			r, err := renderWorkflows(progress{streams.Err}, o)
			if err != nil {
				return err
			}
			var picked []*workflow.Workflow
			for _, w := range r.workflows {
				if len(args) == 0 || slices.Contains(args, w.Hardware) {
					picked = append(picked, w)
				}
			}
			if len(args) > 0 && len(picked) != len(args) {
				return withExitCode(ExitInvalidInput, fmt.Errorf("machines %v are not all in %s", args, o.hardwareCSV))
			}
			if *output == OutputJSON {
				return writeJSON(streams.Out, picked)
			}
			for i, w := range picked {
				m, _ := r.inv.ByHostname(w.Hardware)
				out, err := workflow.Render(r.name, r.src, workflow.RenderInput{Machine: m, Values: r.values}.Data())
				if err != nil {
					return err
				}
				if i > 0 {
					fmt.Fprintln(streams.Out, "---")
				}
				fmt.Fprintf(streams.Out, "# workflow %s for %s (%s)\n%s", w.ID(), w.Hardware, w.AgentID, strings.TrimLeft(string(out), "\n"))
			}
			return nil
		},
	}
	addTemplateFlags(cmd, o)
	return cmd
}
