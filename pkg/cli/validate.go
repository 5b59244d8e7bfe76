package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/diag"
	"github.com/kiln-dev/kiln/pkg/validate"
)

type validateOptions struct {
	specFile    string
	hardwareCSV string
	output      string
}

func newValidateCommand(streams Streams) *cobra.Command {
	o := &validateOptions{}
	cmd := &cobra.Command{
		Use:   "validate -f ClusterSpec.yml --hardware-csv Hardware.csv",
		Short: "Check a ClusterSpec and Hardware.csv and report every problem at once",
		Long: `validate runs every static check kiln knows on the ClusterSpec, on the
Hardware.csv and on the two together (enough machines per node group, no
machine claimed twice, free virtual IPs). Nothing on the network is touched.

Exit status: 0 valid (warnings allowed), 1 invalid input, 2 usage error.
With -o json an invalid pair prints a JSON array of problems (file, line,
column, field, message); a valid pair prints the defaulted ClusterSpec and
the normalised inventory.`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if err := checkOutput(o.output, OutputText, OutputJSON); err != nil {
				return err
			}
			if o.specFile == "" || o.hardwareCSV == "" {
				return usageError("both -f/--filename (ClusterSpec) and --hardware-csv are required (env %s, %s)", EnvName("filename"), EnvName("hardware-csv"))
			}
			return runValidate(streams, o)
		},
	}
	cmd.Flags().StringVarP(&o.specFile, "filename", "f", "", "ClusterSpec YAML file (env KILN_FILENAME)")
	cmd.Flags().StringVar(&o.hardwareCSV, "hardware-csv", "", "Hardware.csv inventory (env KILN_HARDWARE_CSV)")
	addOutputFlag(cmd, &o.output, OutputText, OutputJSON)
	return cmd
}

// validJSON is what -o json prints for a valid pair.
type validJSON struct {
	Valid       bool      `json:"valid"`
	Warnings    diag.List `json:"warnings"`
	ClusterSpec any       `json:"clusterSpec"`
	Hardware    any       `json:"hardware"`
}

func runValidate(streams Streams, o *validateOptions) error {
	start := time.Now()
	r := validate.Files(o.specFile, o.hardwareCSV)
	errs, warns := r.Problems.Errors(), r.Problems.Warnings()

	if o.output == OutputJSON {
		var err error
		if r.Valid() {
			warnings := warns
			if warnings == nil {
				warnings = diag.List{}
			}
			err = writeJSON(streams.Out, validJSON{Valid: true, Warnings: warnings, ClusterSpec: r.Spec, Hardware: r.Inventory})
		} else {
			err = writeJSON(streams.Out, r.Problems)
		}
		if err != nil {
			return err
		}
	} else {
		writeValidateText(streams.Out, o, r, time.Since(start))
	}
	if !r.Valid() {
		return withExitCode(ExitInvalidInput, fmt.Errorf("%s: %d error(s), %d warning(s)", "invalid input", len(errs), len(warns)))
	}
	return nil
}

// writeProblems prints one line per problem: ✗ for an error, ! for a warning.
func writeProblems(w io.Writer, problems diag.List) {
	for _, p := range problems {
		mark := "✗"
		if p.Severity == diag.SeverityWarning {
			mark = "!"
		}
		fmt.Fprintf(w, "%s %s\n", mark, p)
	}
}

func writeValidateText(w io.Writer, o *validateOptions, r *validate.Result, took time.Duration) {
	writeProblems(w, r.Problems)
	if r.Spec != nil {
		cp, workers := 0, 0
		for _, g := range r.Spec.NodeGroups() {
			if g.ControlPlane {
				cp += g.Count
			} else {
				workers += g.Count
			}
		}
		fmt.Fprintf(w, "✓ %s: cluster %s, Kubernetes %s, %d control-plane and %d worker node(s)\n", o.specFile, r.Spec.Name(), r.Spec.Cluster.Spec.KubernetesVersion, cp, workers)
	}
	if r.Inventory != nil {
		bmcs := 0
		for _, m := range r.Inventory.Machines {
			if m.HasBMC() {
				bmcs++
			}
		}
		fmt.Fprintf(w, "✓ %s: %d machine(s), %d with a BMC\n", o.hardwareCSV, len(r.Inventory.Machines), bmcs)
	}
	switch {
	case !r.CrossChecked:
		fmt.Fprintf(w, "- spec × hardware checks skipped until both files are valid\n")
	case r.Valid():
		fmt.Fprintf(w, "✓ spec × hardware: every node group has its machines, no machine is claimed twice, virtual IPs are free\n")
	}
	if r.Valid() {
		fmt.Fprintf(w, "valid (%d warning(s)) in %s\n", len(r.Problems.Warnings()), took.Round(time.Millisecond))
	} else {
		fmt.Fprintf(w, "invalid: %d error(s), %d warning(s)\n", len(r.Problems.Errors()), len(r.Problems.Warnings()))
	}
}
