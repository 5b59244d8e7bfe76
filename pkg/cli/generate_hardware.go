package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/diag"
	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/hardware/kube"
)

func newGenerateHardwareCommand(streams Streams) *cobra.Command {
	var csvPath, outPath string
	cmd := &cobra.Command{
		Use:   "hardware --hardware-csv Hardware.csv [-o out.yaml]",
		Short: "Convert Hardware.csv into Hardware, BMC Machine and Secret objects",
		Long: `hardware validates the CSV and prints, per row, a tinkerbell.org/v1alpha1
Hardware, and for rows with a BMC a bmc.tinkerbell.org/v1alpha1 Machine and a
kubernetes.io/basic-auth Secret, all in namespace eksa-system and labelled
clusterctl.cluster.x-k8s.io/move so that the pivot carries them.`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if csvPath == "" {
				return usageError("--hardware-csv is required (env %s)", EnvName("hardware-csv"))
			}
			inv, err := hardware.ReadFile(csvPath)
			if err != nil {
				var list diag.List
				if errors.As(err, &list) {
					writeProblems(streams.Err, list)
					return withExitCode(ExitInvalidInput, fmt.Errorf("%s is invalid: %d error(s); nothing generated", csvPath, len(list.Errors())))
				}
				return withExitCode(ExitInvalidInput, err)
			}
			for _, w := range inv.Warnings {
				fmt.Fprintf(streams.Err, "! %s\n", w)
			}
			objs := kube.FromInventory(inv)
			out, err := objs.YAML()
			if err != nil {
				return err
			}
			if outPath == "" || outPath == "-" {
				_, err = streams.Out.Write(out)
				return err
			}
			if err := os.WriteFile(outPath, out, 0o600); err != nil {
				return withExitCode(ExitInvalidInput, fmt.Errorf("write %s: %w", outPath, err))
			}
			fmt.Fprintf(streams.Err, "✓ wrote %d Hardware, %d BMC Machine and %d Secret object(s) to %s\n", len(objs.Hardware), len(objs.BMCMachines), len(objs.Secrets), outPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&csvPath, "hardware-csv", "", "Hardware.csv inventory (env KILN_HARDWARE_CSV)")
	cmd.Flags().StringVarP(&outPath, "output", "o", "", "write the objects to this file instead of standard output (it holds BMC passwords: mode 0600)")
	return cmd
}
