// Package workflow holds kiln's Tinkerbell-compatible workflow model: the
// template format (parsing, rendering with hardware data, validation) and the
// per-action / per-workflow state machine the worker API drives.
package workflow

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// MaxTemplateSize caps both the template source and its rendered output, as
// Tinkerbell caps rendered templates at 256 KiB.
const MaxTemplateSize = 256 << 10

// Template is a parsed Tinkerbell workflow template (spec.data of a
// tinkerbell.org/v1alpha1 Template) after rendering.
type Template struct {
	Version       string `yaml:"version" json:"version"`
	Name          string `yaml:"name" json:"name"`
	GlobalTimeout int64  `yaml:"global_timeout" json:"global_timeout"`
	Tasks         []Task `yaml:"tasks" json:"tasks"`
}

// Task is one task of a template: a worker (agent id) and its actions.
type Task struct {
	Name        string            `yaml:"name" json:"name"`
	Worker      string            `yaml:"worker" json:"worker"`
	Volumes     []string          `yaml:"volumes,omitempty" json:"volumes,omitempty"`
	Environment map[string]string `yaml:"environment,omitempty" json:"environment,omitempty"`
	Actions     []Action          `yaml:"actions" json:"actions"`
}

// Action is one step of a task, keyed by its image name.
type Action struct {
	Name        string            `yaml:"name" json:"name"`
	Image       string            `yaml:"image" json:"image"`
	Timeout     int64             `yaml:"timeout" json:"timeout"`
	Command     []string          `yaml:"command,omitempty" json:"command,omitempty"`
	Environment map[string]string `yaml:"environment,omitempty" json:"environment,omitempty"`
	Volumes     []string          `yaml:"volumes,omitempty" json:"volumes,omitempty"`
	Pid         string            `yaml:"pid,omitempty" json:"pid,omitempty"`
	Namespaces  *Namespaces       `yaml:"namespaces,omitempty" json:"namespaces,omitempty"`
	// OnTimeout and OnFailure are accepted for old tink-worker templates;
	// kiln does not run them.
	OnTimeout []string `yaml:"on-timeout,omitempty" json:"on-timeout,omitempty"`
	OnFailure []string `yaml:"on-failure,omitempty" json:"on-failure,omitempty"`
}

// Namespaces selects host namespaces for an action (Tinkerbell's
// replacement for the deprecated pid field).
type Namespaces struct {
	Network string `yaml:"network,omitempty" json:"network,omitempty"`
	PID     string `yaml:"pid,omitempty" json:"pid,omitempty"`
}

// ValidationError lists every problem found in a template, each naming the
// task and action it belongs to.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "invalid workflow template:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// Parse decodes a rendered template and validates it. Errors from the YAML
// decoder carry the line number; validation errors name task and action.
func Parse(data []byte) (*Template, error) {
	if len(data) > MaxTemplateSize {
		return nil, fmt.Errorf("workflow template is %d bytes; the limit is %d", len(data), MaxTemplateSize)
	}
	var t Template
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&t); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("workflow template is empty")
		}
		return nil, fmt.Errorf("workflow template is not valid YAML: %w", err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// Validate checks the rules Tinkerbell's controller enforces plus kiln's own:
// every action must have a positive timeout.
func (t *Template) Validate() error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	switch {
	case t.Name == "":
		add("name: must be set (1 to 199 characters)")
	case len(t.Name) > 199:
		add("name: %q is %d characters; the limit is 199", t.Name[:20]+"…", len(t.Name))
	}
	if t.GlobalTimeout < 0 {
		add("global_timeout: %d is negative; give seconds for the whole workflow", t.GlobalTimeout)
	}
	if len(t.Tasks) == 0 {
		add("tasks: at least one task is required")
	}
	taskNames := map[string]bool{}
	for i, task := range t.Tasks {
		where := fmt.Sprintf("task %d %q", i+1, task.Name)
		if task.Name == "" {
			add("%s: name must be set", where)
		} else if taskNames[task.Name] {
			add("%s: duplicate task name", where)
		}
		taskNames[task.Name] = true
		if strings.TrimSpace(task.Worker) == "" {
			add("%s: worker must be set (usually \"{{.device_1}}\", the machine's MAC)", where)
		}
		if len(task.Actions) == 0 {
			add("%s: at least one action is required", where)
		}
		actionNames := map[string]bool{}
		for j, a := range task.Actions {
			aw := fmt.Sprintf("%s action %d %q", where, j+1, a.Name)
			if a.Name == "" {
				add("%s: name must be set", aw)
			} else if actionNames[a.Name] {
				add("%s: duplicate action name in this task", aw)
			}
			actionNames[a.Name] = true
			if err := checkImageRef(a.Image); err != nil {
				add("%s: image: %v", aw, err)
			}
			if a.Timeout <= 0 {
				add("%s: timeout must be a positive number of seconds (Tinkerbell agents treat 0 as an immediate TIMEOUT)", aw)
			}
			for _, v := range append(append([]string{}, task.Volumes...), a.Volumes...) {
				if err := checkVolume(v); err != nil {
					add("%s: volume %q: %v", aw, v, err)
				}
			}
		}
	}
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// checkImageRef accepts what a docker reference parser would: an optional
// registry[:port]/ path of lower-case components, then :tag and/or @digest.
func checkImageRef(ref string) error {
	if ref == "" {
		return errors.New("must be set, e.g. quay.io/tinkerbell/actions/image2disk:latest")
	}
	if strings.ContainsAny(ref, " \t\n") {
		return fmt.Errorf("%q contains white space", ref)
	}
	name := ref
	if i := strings.Index(name, "@"); i >= 0 {
		if !strings.Contains(name[i+1:], ":") {
			return fmt.Errorf("%q has a digest without an algorithm (want @sha256:…)", ref)
		}
		name = name[:i]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		if i == len(name)-1 {
			return fmt.Errorf("%q has an empty tag", ref)
		}
		name = name[:i]
	}
	parts := strings.Split(name, "/")
	for k, part := range parts {
		if part == "" {
			return fmt.Errorf("%q has an empty path component", ref)
		}
		if k == 0 && len(parts) > 1 && (strings.ContainsAny(part, ".:") || part == "localhost") {
			continue // registry host
		}
		for _, r := range part {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
				return fmt.Errorf("%q: path component %q must be lower-case letters, digits, '.', '_' or '-'", ref, part)
			}
		}
	}
	return nil
}

// checkVolume accepts "src:dst" or "src:dst:opts".
func checkVolume(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return errors.New("want host-path:container-path[:ro|rw]")
	}
	return nil
}

// ImageName returns the last path component of an image reference without
// tag or digest: quay.io/tinkerbell/actions/image2disk:v1 → image2disk.
func ImageName(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		ref = ref[i+1:]
	}
	if i := strings.Index(ref, ":"); i >= 0 {
		ref = ref[:i]
	}
	return ref
}
