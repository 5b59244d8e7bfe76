package flagenv

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestName(t *testing.T) {
	for flag, want := range map[string]string{
		"hardware-csv": "KILN_HARDWARE_CSV",
		"v":            "KILN_V",
		"grpc-token":   "KILN_GRPC_TOKEN",
	} {
		if got := Name(flag); got != want {
			t.Errorf("Name(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestBind(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantAddr  string
		wantCount int
		wantErr   []string
	}{
		{name: "env fills unset flags", env: map[string]string{"KILN_ADDR": "10.0.0.1", "KILN_COUNT": "3"}, wantAddr: "10.0.0.1", wantCount: 3},
		{name: "command line wins", args: []string{"--addr", "cli"}, env: map[string]string{"KILN_ADDR": "env"}, wantAddr: "cli"},
		{name: "inherited flag", env: map[string]string{"KILN_VERBOSE": "true"}},
		{name: "every bad value reported", env: map[string]string{"KILN_COUNT": "many", "KILN_VERBOSE": "perhaps"},
			wantErr: []string{`KILN_COUNT="many" is not a valid value for --count`, `KILN_VERBOSE="perhaps" is not a valid value for --verbose`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addr string
			var count int
			var verbose bool
			root := &cobra.Command{Use: "root"}
			root.PersistentFlags().BoolVar(&verbose, "verbose", false, "")
			var bindErr error
			child := &cobra.Command{Use: "child", RunE: func(cmd *cobra.Command, _ []string) error { return nil },
				PreRun: func(cmd *cobra.Command, _ []string) {
					bindErr = bind(cmd, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
				}}
			child.Flags().StringVar(&addr, "addr", "", "")
			child.Flags().IntVar(&count, "count", 0, "")
			root.AddCommand(child)
			root.SetArgs(append([]string{"child"}, tt.args...))
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if len(tt.wantErr) > 0 {
				if bindErr == nil {
					t.Fatal("no error for bad values")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(bindErr.Error(), w) {
						t.Errorf("error %q lacks %q", bindErr, w)
					}
				}
				return
			}
			if bindErr != nil {
				t.Fatal(bindErr)
			}
			if addr != tt.wantAddr || count != tt.wantCount {
				t.Errorf("addr=%q count=%d, want %q %d", addr, count, tt.wantAddr, tt.wantCount)
			}
			if _, ok := tt.env["KILN_VERBOSE"]; ok && !verbose {
				t.Error("inherited --verbose not set from KILN_VERBOSE")
			}
		})
	}
}
