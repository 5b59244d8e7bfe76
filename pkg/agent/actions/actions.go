// Package actions implements kiln's built-in provisioning actions, keyed by
// the standard Tinkerbell action image names (image2disk, writefile, cexec,
// kexec, reboot) so existing templates run without a container runtime. Each
// action reads the same environment variables as its Tinkerbell image.
package actions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/pkg/workflow"
)

// Env is an action's environment: task environment merged with the
// action's, as the worker API sends it.
type Env map[string]string

// ParseEnv turns "K=V" strings into an Env.
func ParseEnv(kv []string) Env {
	env := Env{}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		env[k] = v
	}
	return env
}

// Required returns the value of key or an error naming it.
func (e Env) Required(action, key string) (string, error) {
	v := strings.TrimSpace(e[key])
	if v == "" {
		return "", fmt.Errorf("%s: environment variable %s is required", action, key)
	}
	return v, nil
}

// Bool reads a true/false variable (default def).
func (e Env) Bool(action, key string, def bool) (bool, error) {
	v := strings.TrimSpace(e[key])
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: %s=%q is not true or false", action, key, v)
	}
	return b, nil
}

// Octal reads a file mode such as 0644 (default def).
func (e Env) Octal(action, key string, def os.FileMode) (os.FileMode, error) {
	v := strings.TrimSpace(e[key])
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("%s: %s=%q is not an octal file mode like 0644", action, key, v)
	}
	return os.FileMode(n), nil
}

// Int reads an integer (default def).
func (e Env) Int(action, key string, def int) (int, error) {
	v := strings.TrimSpace(e[key])
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %s=%q is not an integer", action, key, v)
	}
	return n, nil
}

// Runtime is what actions may use from the agent.
type Runtime struct {
	// Log receives the action's output; the agent forwards each line to the
	// server and to syslog.
	Log io.Writer
	// HTTP fetches images; nil means a client honouring the action's
	// HTTP_PROXY / HTTPS_PROXY / NO_PROXY.
	HTTP *http.Client
	// Reboot performs reboot(2) with a LINUX_REBOOT_CMD_* command. Nil
	// disables rebooting: reboot/kexec actions then only log that they would.
	Reboot func(cmd int) error
	// KexecLoad loads a kernel for kexec; nil uses kexec_file_load(2).
	KexecLoad func(kernel, initrd *os.File, cmdline string) error
	// TempDir holds mount points; default os.TempDir().
	TempDir string
}

func (rt *Runtime) logf(format string, args ...any) {
	if rt.Log != nil {
		fmt.Fprintf(rt.Log, format+"\n", args...)
	}
}

func (rt *Runtime) tempDir() string {
	if rt.TempDir != "" {
		return rt.TempDir
	}
	return os.TempDir()
}

// Then runs after the agent has reported the action SUCCESS: actions that
// reboot or kexec the machine return one so the report is not lost in a
// reboot race.
type Then func() error

// Func is a built-in action.
type Func func(ctx context.Context, rt *Runtime, env Env, args []string) (Then, error)

// ErrUnknownImage is returned for an image kiln has no built-in for.
var ErrUnknownImage = errors.New("not a built-in action")

// Lookup returns the built-in action for an image reference, matching on the
// image's last path component (quay.io/tinkerbell/actions/image2disk:latest,
// 127.0.0.1/embedded/image2disk, … → image2disk).
func Lookup(image string) (Func, error) {
	name := workflow.ImageName(image)
	if f, ok := builtins()[name]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("image %q: %w; kiln runs actions without a container runtime and implements %s — use one of those images or provision this step another way",
		image, ErrUnknownImage, strings.Join(Names(), ", "))
}

// Names lists the built-in action names.
func Names() []string {
	var out []string
	for n := range builtins() {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func builtins() map[string]Func {
	return map[string]Func{
		"image2disk": Image2Disk,
		"writefile":  WriteFile,
		"cexec":      Cexec,
		"kexec":      Kexec,
		"reboot":     Reboot,
	}
}

// progressEvery reads PROGRESS_INTERVAL_SECONDS (default 3 s).
func progressEvery(env Env) (time.Duration, error) {
	n, err := env.Int("image2disk", "PROGRESS_INTERVAL_SECONDS", 3)
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		n = 3
	}
	return time.Duration(n) * time.Second, nil
}
