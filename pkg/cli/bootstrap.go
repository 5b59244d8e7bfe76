package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/bootstrap"
	"github.com/kiln-dev/kiln/pkg/bootstrap/embedded"
	"github.com/kiln-dev/kiln/pkg/bootstrap/embedded/controlplane"
	"github.com/kiln-dev/kiln/pkg/bootstrap/kind"
	"github.com/kiln-dev/kiln/pkg/capi"
	"github.com/kiln-dev/kiln/pkg/cliout"
	"github.com/kiln-dev/kiln/pkg/pivot"
)

// internalControlPlaneArgs is the hidden subcommand the embedded
// provider re-executes kiln with.
var internalControlPlaneArgs = []string{"internal", "controlplane"}

type bootstrapOptions struct {
	name, dir, mode, bindAddress, nodeImage string
	podSubnet, serviceSubnet                string
	output                                  string
}

func (o *bootstrapOptions) config() bootstrap.Config {
	return bootstrap.Config{
		Name: o.name, Dir: o.dir, BindAddress: o.bindAddress, NodeImage: o.nodeImage,
		PodSubnet: o.podSubnet, ServiceSubnet: o.serviceSubnet,
	}
}

func (o *bootstrapOptions) addFlags(cmd *cobra.Command, withCreate bool) {
	cmd.Flags().StringVar(&o.name, "name", "", "cluster name (env KILN_NAME)")
	cmd.Flags().StringVar(&o.dir, "dir", "", "cluster directory; generated files go under DIR/generated (default ./NAME)")
	cmd.Flags().StringVar(&o.mode, "bootstrap", bootstrap.ModeAuto, "bootstrap provider: auto (kind when Docker can run it, else embedded), kind or embedded")
	if withCreate {
		cmd.Flags().StringVar(&o.bindAddress, "bind-address", "", "address the bootstrap API listens on (default loopback)")
		cmd.Flags().StringVar(&o.nodeImage, "node-image", "", "kind node image (kind provider only)")
		cmd.Flags().StringVar(&o.podSubnet, "pod-subnet", "", "pod subnet of the bootstrap cluster (kind provider only)")
		cmd.Flags().StringVar(&o.serviceSubnet, "service-subnet", "", "service subnet of the bootstrap cluster")
	}
	addOutputFlag(cmd, &o.output, OutputText, OutputJSON)
}

func (o *bootstrapOptions) check() error {
	if o.name == "" {
		return usageError("--name is required")
	}
	if err := checkOutput(o.output, OutputText, OutputJSON); err != nil {
		return err
	}
	switch o.mode {
	case bootstrap.ModeAuto, bootstrap.ModeKind, bootstrap.ModeEmbedded:
		return nil
	}
	return usageError("--bootstrap %q is not one of auto, kind, embedded", o.mode)
}

func bootstrapProviders() (*kind.Provider, *embedded.Provider, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("locating the kiln binary to run the embedded control plane: %w", err)
	}
	return &kind.Provider{Log: slog.Default()},
		&embedded.Provider{Command: append([]string{exe}, internalControlPlaneArgs...), Log: slog.Default()}, nil
}

// resolveProvider picks the provider: the flag when explicit, else the one
// recorded at create time, else (create only) auto-detection.
func resolveProvider(ctx context.Context, o *bootstrapOptions, forCreate bool) (bootstrap.Provider, string, error) {
	k, e, err := bootstrapProviders()
	if err != nil {
		return nil, "", err
	}
	cfg := o.config()
	if o.mode == bootstrap.ModeAuto && !forCreate {
		recorded, err := bootstrap.RecordedProvider(cfg)
		if err != nil {
			return nil, "", err
		}
		switch recorded {
		case bootstrap.ModeKind:
			return k, "recorded at create", nil
		case bootstrap.ModeEmbedded, "":
			// Without a record only an embedded control plane can have
			// left data in the cluster directory; deleting it is harmless.
			return e, "recorded at create", nil
		}
	}
	return bootstrap.Select(ctx, o.mode, k, e, func(ctx context.Context) error { return k.Check(ctx, cfg) })
}

// existing checks the flags and finds the provider of an existing cluster
// (for delete and status).
func (o *bootstrapOptions) existing(ctx context.Context) (bootstrap.Provider, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	p, _, err := resolveProvider(ctx, o, false)
	if err != nil {
		return nil, withExitCode(ExitInvalidInput, err)
	}
	return p, nil
}

func newBootstrapCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create, delete and inspect the temporary bootstrap cluster (kind or embedded)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBootstrapCreateCommand(streams), newBootstrapDeleteCommand(streams), newBootstrapStatusCommand(streams), newBootstrapMoveCommand(streams))
	return cmd
}

// stepLines prints one progress line per finished bootstrap step.
func stepLines(w io.Writer) bootstrap.Step {
	return func(name string, took time.Duration, err error) { cliout.Progress(w, name, "", took, err) }
}

func newBootstrapCreateCommand(streams Streams) *cobra.Command {
	o := &bootstrapOptions{}
	cmd := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Start the bootstrap cluster, install the CRDs and leave it running",
		Long: "Starts the bootstrap cluster for NAME, installs the Cluster API, Tinkerbell and clusterctl CRDs,\n" +
			"writes NAME/generated/bootstrap.kubeconfig and returns while the cluster keeps running.\n" +
			"Creating a cluster that already runs reuses it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			p, reason, err := resolveProvider(ctx, o, true)
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			progressOut := streams.Out
			if o.output == OutputJSON {
				progressOut = streams.Err
			}
			fmt.Fprintf(progressOut, "✓ bootstrap provider %s: %s\n", p.Name(), reason)
			cl, err := bootstrap.Up(ctx, p, o.config(), stepLines(progressOut))
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			if o.output == OutputJSON {
				return writeJSON(streams.Out, cl)
			}
			fmt.Fprintf(streams.Out, "bootstrap cluster %s is running (%s); kubeconfig: %s\n", cl.Name, cl.Provider, cl.Kubeconfig)
			return nil
		},
	}
	o.addFlags(cmd, true)
	return cmd
}

func newBootstrapDeleteCommand(streams Streams) *cobra.Command {
	o := &bootstrapOptions{}
	cmd := &cobra.Command{
		Use:   "delete --name NAME",
		Short: "Stop the bootstrap cluster and remove its data (succeeds if there is none)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := o.existing(cmd.Context())
			if err != nil {
				return err
			}
			start := time.Now()
			err = bootstrap.Down(cmd.Context(), p, o.config())
			if o.output == OutputText {
				stepLines(streams.Out)(fmt.Sprintf("delete %s bootstrap cluster %s", p.Name(), o.name), time.Since(start), err)
			}
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			if o.output == OutputJSON {
				return writeJSON(streams.Out, map[string]any{"name": o.name, "provider": p.Name(), "deleted": true})
			}
			return nil
		},
	}
	o.addFlags(cmd, false)
	return cmd
}

func newBootstrapStatusCommand(streams Streams) *cobra.Command {
	o := &bootstrapOptions{}
	cmd := &cobra.Command{
		Use:   "status --name NAME",
		Short: "Report whether the bootstrap cluster exists, runs and answers (exit 1 when not healthy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := o.existing(cmd.Context())
			if err != nil {
				return err
			}
			st, err := p.Status(cmd.Context(), o.config())
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			if o.output == OutputJSON {
				if err := writeJSON(streams.Out, st); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(streams.Out, "name:       %s\nprovider:   %s\nexists:     %t\nrunning:    %t\nhealthy:    %t\n", st.Name, st.Provider, st.Exists, st.Running, st.Healthy)
				if st.Endpoint != "" {
					fmt.Fprintf(streams.Out, "endpoint:   %s\n", st.Endpoint)
				}
				if st.Kubeconfig != "" {
					fmt.Fprintf(streams.Out, "kubeconfig: %s\n", st.Kubeconfig)
				}
				if st.PID != 0 {
					fmt.Fprintf(streams.Out, "pid:        %d\n", st.PID)
				}
				fmt.Fprintf(streams.Out, "detail:     %s\n", st.Detail)
			}
			if !st.Healthy {
				return withExitCode(ExitInvalidInput, nil)
			}
			return nil
		},
	}
	o.addFlags(cmd, false)
	return cmd
}

// newInternalCommand holds hidden subcommands kiln runs itself.
func newInternalCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:    internalControlPlaneArgs[0],
		Short:  "Commands kiln runs itself (not for operators)",
		Hidden: true,
		Args:   cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   internalControlPlaneArgs[1] + " DATA_DIR",
		Short: "Serve an embedded bootstrap control plane (etcd + kube-apiserver) from DATA_DIR",
		Args:  cobra.ExactArgs(1),
		// kube-apiserver parses its own flags; keep cobra's hands off.
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if code := controlplane.Run(args[0], streams.Err); code != 0 {
				return withExitCode(code, nil)
			}
			return nil
		},
	})
	return cmd
}

func newBootstrapMoveCommand(streams Streams) *cobra.Command {
	o := &bootstrapOptions{}
	var toKubeconfig, namespace string
	cmd := &cobra.Command{
		Use:   "move --name NAME --to-kubeconfig PATH [--namespace eksa-system]",
		Short: "Move (pivot) the Cluster API objects of a namespace from the bootstrap cluster to another cluster",
		Long: "Runs clusterctl move from NAME's bootstrap cluster to the cluster of --to-kubeconfig, limited to\n" +
			"--namespace, after checking the target is reachable and serves the CRDs, and verifies afterwards\n" +
			"that every moved object arrived with its owner references rebuilt.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			if toKubeconfig == "" {
				return usageError("--to-kubeconfig is required")
			}
			progressOut := streams.Out
			if o.output == OutputJSON {
				progressOut = streams.Err
			}
			res, err := pivot.Move(cmd.Context(), pivot.Options{
				FromKubeconfig: o.config().KubeconfigPath(), ToKubeconfig: toKubeconfig, Namespace: namespace, Log: slog.Default(),
			}, stepLines(progressOut))
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			if o.output == OutputJSON {
				return writeJSON(streams.Out, res)
			}
			fmt.Fprintf(streams.Out, "moved %d object(s) from namespace %s; %d left on the bootstrap cluster (not part of any Cluster)\n", len(res.Moved), namespace, len(res.Stayed))
			return nil
		},
	}
	cmd.Flags().StringVar(&o.name, "name", "", "cluster name (env KILN_NAME)")
	cmd.Flags().StringVar(&o.dir, "dir", "", "cluster directory (default ./NAME)")
	cmd.Flags().StringVar(&toKubeconfig, "to-kubeconfig", "", "kubeconfig of the target management cluster")
	cmd.Flags().StringVar(&namespace, "namespace", capi.DefaultNamespace, "namespace holding the Cluster API objects")
	o.mode = bootstrap.ModeAuto
	addOutputFlag(cmd, &o.output, OutputText, OutputJSON)
	return cmd
}
