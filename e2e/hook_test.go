//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/hook"
)

// TestHookBoots builds the in-memory OS and boots it with QEMU's -kernel and
// -initrd, measuring the time until the kernel starts /init and until
// kiln-agent (as /init) prints its first line on the serial console.
func TestHookBoots(t *testing.T) {
	t.Parallel() // one single-CPU VM each; they overlap with each other, not with the provisioning test
	ctx := testContext(t, 4*time.Minute)
	dir := t.TempDir()
	agent := buildCommand(t, ctx, dir, "kiln-agent")
	start := time.Now()
	res, err := hook.Build(ctx, hook.Options{Init: agent, OutputDir: dir, SkipMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	buildTime := time.Since(start)

	v := startVM(t, ctx, "hook", "-machine", "q35", "-m", "1024", "-kernel", res.Kernel, "-initrd", res.Initramfs,
		"-append", "console=ttyS0,115200 panic=-1 no_timer_check")
	i, initAt := v.waitLine(ctx, 0, "the kernel starting /init", contains("Run /init as init process"))
	// the agent's first output: the first line after that which is not a kernel message.
	_, firstAt := v.waitLine(ctx, i+1, "the agent's first output line", func(l string) bool {
		l = strings.TrimSpace(l)
		return l != "" && !strings.HasPrefix(l, "[")
	})
	t.Logf("in-memory OS: kernel %s %.1f MiB, initramfs %.1f MiB (%.1f MiB unpacked, %d modules), built in %s",
		res.KernelVersion, float64(res.KernelBytes)/(1<<20), float64(res.InitramfsBytes)/(1<<20), float64(res.UncompressedBytes)/(1<<20), len(res.Modules), buildTime.Round(100*time.Millisecond))
	t.Logf("boot (QEMU TCG, 1 GiB): /init started at %s, the agent's first line at %s", initAt.Round(100*time.Millisecond), firstAt.Round(100*time.Millisecond))
}
