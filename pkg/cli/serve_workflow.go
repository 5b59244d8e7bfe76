package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/workerapi"
	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
	"github.com/kiln-dev/kiln/templates"
)

// defaultWorkflowTemplate is the embedded template used without --template.
const defaultWorkflowTemplate = "workflows/ubuntu.yaml"

type serveWorkflowOptions struct {
	hardwareCSV string
	template    string
	set         []string
	imageURL    string
	metadataURL string
	listen      string
	db          string
	namespace   string
	sec         workerapi.Security
	grace       time.Duration
	leaveAfter  time.Duration
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
	f.StringVar(&o.hardwareCSV, "hardware-csv", "", "Hardware.csv listing the machines (required)")
	f.StringVar(&o.template, "template", "", "workflow template file (Tinkerbell format); default: kiln's embedded Ubuntu template")
	f.StringArrayVar(&o.set, "set", nil, "extra template value key=value, available as {{ .key }} (repeatable)")
	f.StringVar(&o.imageURL, "image-url", "", "OS disk image URL, as {{ .image_url }}")
	f.StringVar(&o.metadataURL, "metadata-url", "", "kiln metadata service URL, as {{ .metadata_url }}")
	f.StringVar(&o.listen, "grpc-listen", fmt.Sprintf(":%d", workerapi.DefaultPort), "worker API listen address")
	f.StringVar(&o.db, "db", "kiln-workflows.db", "workflow database file (created if missing)")
	f.StringVar(&o.namespace, "namespace", workflow.DefaultNamespace, "namespace of the workflows (workflow ids are namespace/hostname)")
	f.StringVar(&o.sec.CertFile, "grpc-tls-cert", "", "serve TLS with this certificate (PEM)")
	f.StringVar(&o.sec.KeyFile, "grpc-tls-key", "", "key of --grpc-tls-cert (PEM)")
	f.StringVar(&o.sec.ClientCAFile, "grpc-client-ca", "", "require client certificates signed by this CA (mutual TLS)")
	f.StringVar(&o.sec.Token, "grpc-token", "", "require this bearer token from agents (Tinkerbell's agent cannot send one)")
	f.DurationVar(&o.grace, "action-grace", 30*time.Second, "how long past an action's timeout the server waits for the agent's report before marking it TIMEOUT")
	f.DurationVar(&o.leaveAfter, "reboot-leave-after", 60*time.Second, "a final reboot/kexec action still RUNNING counts as SUCCESS once the agent has been silent this long")
	return cmd
}

func templateValues(o *serveWorkflowOptions) (map[string]string, error) {
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
	if o.hardwareCSV == "" {
		return usageError("--hardware-csv is required")
	}
	values, err := templateValues(o)
	if err != nil {
		return err
	}
	step := newStepper(streams)

	var inv *hardware.Inventory
	if err := step.run(fmt.Sprintf("read %s", o.hardwareCSV), func() (string, error) {
		inv, err = hardware.ReadFile(o.hardwareCSV)
		if err != nil {
			return "", withExitCode(ExitInvalidInput, err)
		}
		return fmt.Sprintf("%d machines", len(inv.Machines)), nil
	}); err != nil {
		return err
	}

	name, src := "ubuntu (embedded)", []byte(nil)
	if o.template != "" {
		name = o.template
		if src, err = os.ReadFile(o.template); err != nil {
			return withExitCode(ExitInvalidInput, fmt.Errorf("--template: %w", err))
		}
	} else if src, err = templates.FS.ReadFile(defaultWorkflowTemplate); err != nil {
		return err
	}
	var wfs []*workflow.Workflow
	if err := step.run("render template "+name, func() (string, error) {
		wfs, err = workflow.ForInventory(inv, name, src, values, o.namespace, time.Now())
		if err != nil {
			return "", withExitCode(ExitInvalidInput, err)
		}
		return fmt.Sprintf("%d workflows", len(wfs)), nil
	}); err != nil {
		return err
	}

	var st *store.Bolt
	if err := step.run("open workflow database "+o.db, func() (string, error) {
		if st, err = store.OpenBolt(o.db, 2*time.Second); err != nil {
			return "", err
		}
		created, err := store.Ensure(ctx, st, wfs)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d created, %d resumed", created, len(wfs)-created), nil
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
	srv := workerapi.New(st, workerapi.Options{Grace: o.grace, LeaveAfter: o.leaveAfter})
	fmt.Fprintf(streams.Out, "✓ serving the worker API on %s (Ctrl-C to stop; `kiln workflows` shows progress)\n", lis.Addr())
	return srv.Serve(ctx, lis, opts...)
}

// stepper prints one progress line per step with ✓/✗ and its duration.
type stepper struct{ streams Streams }

func newStepper(s Streams) *stepper { return &stepper{streams: s} }

func (s *stepper) run(name string, fn func() (string, error)) error {
	start := time.Now()
	detail, err := fn()
	d := time.Since(start).Round(time.Millisecond)
	if err != nil {
		fmt.Fprintf(s.streams.Out, "✗ %s (%s)\n", name, d)
		return err
	}
	fmt.Fprintf(s.streams.Out, "✓ %s: %s (%s)\n", name, detail, d)
	return nil
}
