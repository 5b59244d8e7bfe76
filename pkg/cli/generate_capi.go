package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/capi"
	"github.com/kiln-dev/kiln/pkg/validate"
)

func newGenerateCAPICommand(streams Streams) *cobra.Command {
	var specPath, csvPath, outPath, namespace string
	cmd := &cobra.Command{
		Use:   "capi -f ClusterSpec.yml --hardware-csv Hardware.csv [-o out.yaml]",
		Short: "Generate the Cluster API objects (Cluster, KubeadmControlPlane, MachineDeployments, Tinkerbell*) for a ClusterSpec",
		Long: `capi validates the ClusterSpec against the Hardware.csv and prints the Cluster API
objects that build the cluster: Cluster, TinkerbellCluster, KubeadmControlPlane
(control-plane VIP served by kube-vip as a static pod) and its
TinkerbellMachineTemplate, and per worker group a KubeadmConfigTemplate,
TinkerbellMachineTemplate and MachineDeployment. Machine templates select
hardware with the machine config's selector and carry the provisioning workflow
template.`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if specPath == "" {
				return usageError("-f/--filename is required (env %s)", EnvName("filename"))
			}
			if csvPath == "" {
				return usageError("--hardware-csv is required (env %s)", EnvName("hardware-csv"))
			}
			r := validate.Files(specPath, csvPath)
			writeProblems(streams.Err, r.Problems)
			if !r.Valid() {
				return withExitCode(ExitInvalidInput, fmt.Errorf("%d error(s) in %s / %s; nothing generated", len(r.Problems.Errors()), specPath, csvPath))
			}
			objs, err := capi.Generate(r.Spec, r.Inventory, capi.Options{Namespace: namespace})
			if err != nil {
				return withExitCode(ExitInvalidInput, err)
			}
			out, err := capi.Marshal(objs)
			if err != nil {
				return err
			}
			if outPath == "" || outPath == "-" {
				_, err = streams.Out.Write(out)
				return err
			}
			if err := os.WriteFile(outPath, out, 0o644); err != nil {
				return withExitCode(ExitInvalidInput, fmt.Errorf("write %s: %w", outPath, err))
			}
			fmt.Fprintf(streams.Err, "✓ wrote %d Cluster API object(s) to %s\n", len(objs), outPath)
			return nil
		},
	}
	cmd.Flags().StringVarP(&specPath, "filename", "f", "", "ClusterSpec file (env KILN_FILENAME)")
	cmd.Flags().StringVar(&csvPath, "hardware-csv", "", "Hardware.csv inventory (env KILN_HARDWARE_CSV)")
	cmd.Flags().StringVarP(&outPath, "output", "o", "", "write the objects to this file instead of standard output")
	cmd.Flags().StringVar(&namespace, "namespace", capi.DefaultNamespace, "namespace of the generated objects (where the Hardware lives)")
	return cmd
}
