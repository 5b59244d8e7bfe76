//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// vm is a QEMU process whose serial console is logged to a file and scanned
// for lines, with the time since start at which each line appeared.
type vm struct {
	t       *testing.T
	cmd     *exec.Cmd
	start   time.Time
	serial  string
	mu      sync.Mutex
	lines   []timedLine
	updated chan struct{}
	done    chan struct{}
}

type timedLine struct {
	at   time.Duration
	text string
}

// startVM runs qemu-system-x86_64 with args plus a serial console on a pipe,
// and kills it when the test ends.
func startVM(t *testing.T, ctx context.Context, name string, args ...string) *vm {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	v := &vm{t: t, serial: filepath.Join(t.TempDir(), name+"-serial.log"), updated: make(chan struct{}), done: make(chan struct{})}
	all := append([]string{"-name", "kn5-" + name, "-accel", "tcg", "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio"}, args...)
	v.cmd = exec.CommandContext(ctx, bin, all...)
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stderr = os.Stderr
	v.start = time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(v.serial)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(v.done)
		defer logf.Close()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			logf.WriteString(line + "\n")
			v.mu.Lock()
			v.lines = append(v.lines, timedLine{time.Since(v.start), line})
			close(v.updated)
			v.updated = make(chan struct{})
			v.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = v.cmd.Process.Kill()
		_ = v.cmd.Wait()
		<-v.done
		if t.Failed() {
			b, _ := os.ReadFile(v.serial)
			t.Logf("serial console of %s:\n%s", name, b)
		}
	})
	return v
}

// waitLine waits for the first line (from index from) that match accepts and
// returns its index and time since the VM started.
func (v *vm) waitLine(ctx context.Context, from int, what string, match func(string) bool) (int, time.Duration) {
	v.t.Helper()
	for {
		v.mu.Lock()
		lines, ch := v.lines, v.updated
		v.mu.Unlock()
		for i := from; i < len(lines); i++ {
			if match(lines[i].text) {
				return i, lines[i].at
			}
		}
		select {
		case <-ch:
		case <-v.done:
			v.t.Fatalf("QEMU ended before %s", what)
		case <-ctx.Done():
			v.t.Fatalf("no %s on the serial console within the deadline", what)
		}
	}
}

func contains(s string) func(string) bool {
	return func(l string) bool { return strings.Contains(l, s) }
}

// repoRoot is the module root (the e2e package's parent directory).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// buildCommand builds the static binary of ./cmd/<name> (kiln, or
// kiln-agent for the in-memory OS's /init) into dir, with the same build
// configuration as `make test` so the build cache is shared, stripped as
// make and the releases strip it.
func buildCommand(t *testing.T, ctx context.Context, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags=-s -w", "-o", out, "./cmd/"+name)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	return out
}

// testContext returns a context that ends after max or one minute before
// the test binary's -timeout, whichever is first, so that a slow run fails
// with its own message and its clean-ups (lab down, namespaces) still run;
// the binary's timeout panics without running them.
func testContext(t *testing.T, max time.Duration) context.Context {
	t.Helper()
	end := time.Now().Add(max)
	if d, ok := t.Deadline(); ok && d.Add(-time.Minute).Before(end) {
		end = d.Add(-time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), end)
	t.Cleanup(cancel)
	return ctx
}
