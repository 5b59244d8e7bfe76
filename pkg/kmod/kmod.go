// Package kmod resolves Linux kernel modules and their dependencies from a
// kernel's module tree (/lib/modules/<version>), using modules.dep and
// modules.builtin, so that an initramfs can carry exactly the modules a set
// of drivers needs, in an order in which they can be loaded.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Name returns the canonical module name of a module file path or name:
// the base name without ".ko" and compression suffixes, '-' as '_'.
func Name(p string) string {
	b := path.Base(filepath.ToSlash(p))
	for _, s := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, s)
	}
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// ParseDep parses modules.dep: one "path: dep dep …" line per module.
func ParseDep(r io.Reader) (map[string][]string, error) {
	deps := map[string][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		mod, rest, ok := strings.Cut(text, ":")
		mod = strings.TrimSpace(mod)
		if !ok || mod == "" || strings.ContainsAny(mod, " \t") {
			return nil, fmt.Errorf("modules.dep line %d: want \"module.ko: dependency.ko …\", got %q", line, text)
		}
		if _, dup := deps[mod]; dup {
			return nil, fmt.Errorf("modules.dep line %d: %s is listed twice", line, mod)
		}
		deps[mod] = strings.Fields(rest)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return deps, nil
}

// Index is a kernel's module tree.
type Index struct {
	// Dir is the module tree, e.g. /lib/modules/6.1.0-56-amd64.
	Dir     string
	deps    map[string][]string // relative path → dependency paths
	byName  map[string]string   // module name → relative path
	builtin map[string]bool     // module names built into the kernel
}

// Load reads dir/modules.dep and, if present, dir/modules.builtin.
func Load(dir string) (*Index, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kernel modules: %w (is the kernel's module tree installed, e.g. by linux-image-amd64? run depmod if modules.dep is missing)", err)
	}
	defer f.Close()
	deps, err := ParseDep(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	ix := &Index{Dir: dir, deps: deps, byName: map[string]string{}, builtin: map[string]bool{}}
	for p := range deps {
		ix.byName[Name(p)] = p
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			ix.builtin[Name(l)] = true
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("kernel modules: %w", err)
	}
	return ix, nil
}

// Builtin reports whether the named module is built into the kernel.
func (ix *Index) Builtin(name string) bool { return ix.builtin[Name(name)] }

// Resolve returns the module files (paths relative to Dir) that the named
// modules need, dependencies before the modules that use them. Modules built
// into the kernel are skipped; an unknown name is an error naming it.
func (ix *Index) Resolve(names ...string) ([]string, error) {
	var out []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(p string, chain []string) error
	visit = func(p string, chain []string) error {
		switch state[p] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("kernel modules: dependency cycle %s → %s", strings.Join(chain, " → "), Name(p))
		}
		deps, ok := ix.deps[p]
		if !ok {
			return fmt.Errorf("kernel modules: %s needs %s, which is not in modules.dep of %s", chain[len(chain)-1], p, ix.Dir)
		}
		state[p] = 1
		for _, d := range deps {
			if err := visit(d, append(chain, Name(p))); err != nil {
				return err
			}
		}
		state[p] = 2
		out = append(out, p)
		return nil
	}
	var unknown []string
	for _, n := range names {
		name := Name(n)
		p, ok := ix.byName[name]
		if !ok {
			if ix.builtin[name] {
				continue
			}
			unknown = append(unknown, n)
			continue
		}
		if err := visit(p, []string{name}); err != nil {
			return nil, err
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("kernel modules %s are neither modules nor built into the kernel of %s; check the names with `modinfo NAME`", strings.Join(unknown, ", "), ix.Dir)
	}
	return out, nil
}

// DepLines returns modules.dep lines for just the given module paths, so an
// initramfs's modprobe can find them.
func (ix *Index) DepLines(paths []string) string {
	var b strings.Builder
	for _, p := range paths {
		b.WriteString(p + ":")
		for _, d := range ix.deps[p] {
			b.WriteString(" " + d)
		}
		b.WriteString("\n")
	}
	return b.String()
}
