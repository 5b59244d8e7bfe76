package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLabAndBuildCommandErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nolab")
	for _, tc := range []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{"status of no lab", []string{"lab", "status", "--dir", missing}, ExitInvalidInput, "kiln lab up"},
		{"console of no lab", []string{"lab", "console", "x", "--dir", missing}, ExitInvalidInput, "no lab"},
		{"console needs a name", []string{"lab", "console", "--dir", missing}, ExitUsage, ""},
		{"down of no lab is fine", []string{"lab", "down", "--dir", missing}, ExitOK, ""},
		{"uefi and firmware", []string{"lab", "up", "--uefi", "--firmware", "bios", "--dir", missing}, ExitUsage, "not both"},
		{"bad firmware", []string{"lab", "up", "--firmware", "coreboot", "--dir", missing}, ExitUsage, "coreboot"},
		{"bad BMC kind", []string{"lab", "up", "--bmc", "amt", "--dir", missing}, ExitUsage, "--bmc"},
		{"status yaml", []string{"lab", "status", "-o", "yaml", "--dir", missing}, ExitUsage, ""},
		{"hook with a dynamic binary", []string{"build", "hook", "--agent-binary", "/etc/hostname", "--output-dir", t.TempDir()}, ExitInvalidInput, "ELF"},
		{"hook with a missing kernel", []string{"build", "hook", "--agent-binary", "/bin/busybox", "--kernel", missing, "--output-dir", t.TempDir()}, ExitInvalidInput, ""},
		{"deprecated --kiln-binary still read", []string{"build", "hook", "--kiln-binary", "/etc/hostname", "--output-dir", t.TempDir()}, ExitInvalidInput, "ELF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != tc.want {
				t.Fatalf("exit %d; want %d\nstdout: %s\nstderr: %s", code, tc.want, out, errOut)
			}
			if tc.msg != "" && !strings.Contains(out+errOut, tc.msg) {
				t.Fatalf("output does not mention %q:\n%s%s", tc.msg, out, errOut)
			}
		})
	}
}

// TestBuildHookJSON builds the in-memory OS from the installed Debian kernel
// with a static busybox standing in for kiln and reads the -o json report.
func TestBuildHookJSON(t *testing.T) {
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(kernels) == 0 {
		t.Skip("no kernel installed (apt-get install linux-image-amd64)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no static busybox (apt-get install busybox-static)")
	}
	out := t.TempDir()
	code, stdout, stderr := run(t, "build", "hook", "--agent-binary", "/bin/busybox", "--modules", "virtio_net,ext4", "--output-dir", out, "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct {
		Kernel, Initramfs string
		Modules           []string
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if res.Kernel != filepath.Join(out, "vmlinuz-x86_64") || res.Initramfs != filepath.Join(out, "initramfs-x86_64") || res.Modules[len(res.Modules)-1] != "ext4" {
		t.Fatalf("result = %+v", res)
	}
	if !strings.Contains(stderr, "✓ build in-memory OS") {
		t.Fatalf("no progress line on stderr: %q", stderr)
	}
}

func TestFindAgentBinary(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "kiln-agent")
	if err := os.WriteFile(agent, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
		fallback         bool
	}{
		{"on PATH", dir, agent, false},
		{"nowhere: this binary", t.TempDir(), exe, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PATH", tc.path)
			got, fallback, err := findAgentBinary()
			if err != nil || got != tc.want || fallback != tc.fallback {
				t.Fatalf("findAgentBinary() = %q, %v, %v; want %q, %v", got, fallback, err, tc.want, tc.fallback)
			}
		})
	}
}
