// Package binary loads the iPXE binaries kiln hands to netbooting machines
// (Debian's ipxe package by default) into memory once at start-up, so TFTP
// and HTTP serve exactly that fixed set and a request can never reach any
// other file on the host.
package binary

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DefaultDir is where Debian's ipxe package installs the binaries.
const DefaultDir = "/usr/lib/ipxe"

// File is one loaded binary.
type File struct {
	Name    string
	Data    []byte
	ModTime time.Time
	ETag    string // strong ETag: quoted SHA-256 prefix
}

// Reader returns a fresh seekable reader over the file.
func (f *File) Reader() *bytes.Reader { return bytes.NewReader(f.Data) }

// Set is the immutable set of binaries kiln serves.
type Set struct {
	dir   string
	files map[string]*File
}

// Load reads required and optional binaries (base names) from dir. A
// missing required binary is an error that names it and says how to fix
// it; a missing optional one is reported in missing.
func Load(dir string, required, optional []string) (s *Set, missing []string, err error) {
	s = &Set{dir: dir, files: map[string]*File{}}
	var errs []error
	load := func(name string, req bool) {
		if name == "" || filepath.Base(name) != name || strings.HasPrefix(name, ".") {
			errs = append(errs, fmt.Errorf("iPXE binary name %q must be a plain file name", name))
			return
		}
		if _, ok := s.files[name]; ok {
			return
		}
		p := filepath.Join(dir, name)
		data, err := os.ReadFile(p) // the operator's directory: symlinks there are trusted
		if err != nil {
			if req {
				errs = append(errs, fmt.Errorf("iPXE binary %s: %w (install Debian's ipxe package or point --ipxe-dir at a directory that has it)", p, err))
			} else {
				missing = append(missing, name)
			}
			return
		}
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, err)
			return
		}
		sum := sha256.Sum256(data)
		s.files[name] = &File{Name: name, Data: data, ModTime: st.ModTime(), ETag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	}
	for _, n := range required {
		load(n, true)
	}
	for _, n := range optional {
		load(n, false)
	}
	if len(errs) > 0 {
		return nil, missing, errors.Join(errs...)
	}
	return s, missing, nil
}

// Dir is the directory the binaries were read from.
func (s *Set) Dir() string { return s.dir }

// Get returns the binary with the given base name.
func (s *Set) Get(name string) (*File, bool) {
	f, ok := s.files[name]
	return f, ok
}

// Names lists the loaded binaries, sorted.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.files))
	for n := range s.files {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
