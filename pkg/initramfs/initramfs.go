// Package initramfs writes Linux initramfs archives: cpio "newc" streams,
// gzip-compressed, byte-for-byte reproducible (entries sorted, parents
// created, fixed owner and timestamps, sequential inode numbers, a gzip
// header without name or time).
package initramfs

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// Entry kinds.
const (
	kindDir = iota
	kindFile
	kindSymlink
	kindCharDev
)

type entry struct {
	kind   int
	mode   fs.FileMode // permission bits
	data   []byte      // file contents or symlink target
	src    string      // file contents read from this path at write time
	size   int64
	major  uint32
	minor  uint32
	explic bool // added explicitly (not an implied parent directory)
}

// Archive collects entries and writes them as one initramfs.
type Archive struct {
	entries map[string]*entry
	// MTime is the modification time recorded for every entry (seconds since
	// the epoch); 0 keeps the archive independent of when it was built.
	MTime int64
}

// New returns an empty archive.
func New() *Archive { return &Archive{entries: map[string]*entry{}} }

func clean(name string) (string, error) {
	n := path.Clean("/" + name)[1:]
	if n == "" || n == "." {
		return "", fmt.Errorf("initramfs: empty path %q", name)
	}
	return n, nil
}

func (a *Archive) add(name string, e *entry) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	if old, ok := a.entries[n]; ok && old.explic && !(old.kind == kindDir && e.kind == kindDir) {
		return fmt.Errorf("initramfs: %s added twice", n)
	}
	e.explic = true
	a.entries[n] = e
	for d := path.Dir(n); d != "." && d != "/"; d = path.Dir(d) {
		if old, ok := a.entries[d]; ok {
			if old.kind != kindDir {
				return fmt.Errorf("initramfs: %s is needed as a directory for %s but is a file", d, n)
			}
			continue
		}
		a.entries[d] = &entry{kind: kindDir, mode: 0o755}
	}
	return nil
}

// Dir adds a directory.
func (a *Archive) Dir(name string, mode fs.FileMode) error {
	return a.add(name, &entry{kind: kindDir, mode: mode.Perm()})
}

// Bytes adds a regular file with the given contents.
func (a *Archive) Bytes(name string, mode fs.FileMode, data []byte) error {
	return a.add(name, &entry{kind: kindFile, mode: mode.Perm(), data: data, size: int64(len(data))})
}

// File adds a regular file copied from src on the host when the archive is
// written; mode 0 keeps src's permission bits.
func (a *Archive) File(name, src string, mode fs.FileMode) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("initramfs: %s is not a regular file", src)
	}
	if mode == 0 {
		mode = st.Mode().Perm()
	}
	return a.add(name, &entry{kind: kindFile, mode: mode.Perm(), src: src, size: st.Size()})
}

// Symlink adds a symbolic link name → target.
func (a *Archive) Symlink(name, target string) error {
	return a.add(name, &entry{kind: kindSymlink, mode: 0o777, data: []byte(target), size: int64(len(target))})
}

// CharDev adds a character device node (e.g. /dev/console 5,1).
func (a *Archive) CharDev(name string, mode fs.FileMode, major, minor uint32) error {
	return a.add(name, &entry{kind: kindCharDev, mode: mode.Perm(), major: major, minor: minor})
}

// Size is the total size of the files' contents in bytes.
func (a *Archive) Size() int64 {
	var n int64
	for _, e := range a.entries {
		n += e.size
	}
	return n
}

// Len is the number of entries.
func (a *Archive) Len() int { return len(a.entries) }

// WriteCPIO writes the uncompressed cpio newc stream.
func (a *Archive) WriteCPIO(w io.Writer) error {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	cw := &cpioWriter{w: w, mtime: a.MTime}
	for _, n := range names {
		if err := cw.write(n, a.entries[n]); err != nil {
			return err
		}
	}
	return cw.trailer()
}

// WriteGzip writes the archive gzip-compressed, as the kernel unpacks it.
func (a *Archive) WriteGzip(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	if err := a.WriteCPIO(zw); err != nil {
		return err
	}
	return zw.Close()
}

type cpioWriter struct {
	w     io.Writer
	ino   uint32
	off   int64
	mtime int64
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeLink = 0o120000
	modeChr  = 0o020000
)

func (c *cpioWriter) header(name string, mode uint32, size int64, nlink, rmaj, rmin uint32) error {
	if size > 0xffffffff {
		return fmt.Errorf("initramfs: %s is larger than the 4 GiB a newc entry can hold", name)
	}
	c.ino++
	h := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, uint32(c.mtime), uint32(size), 0, 0, rmaj, rmin, len(name)+1, 0)
	if err := c.put([]byte(h + name + "\x00")); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) put(b []byte) error {
	n, err := c.w.Write(b)
	c.off += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.off % 4; r != 0 {
		return c.put(make([]byte, 4-r))
	}
	return nil
}

func (c *cpioWriter) write(name string, e *entry) error {
	perm := uint32(e.mode.Perm())
	switch e.kind {
	case kindDir:
		return c.header(name, modeDir|perm, 0, 2, 0, 0)
	case kindCharDev:
		return c.header(name, modeChr|perm, 0, 1, e.major, e.minor)
	case kindSymlink:
		if err := c.header(name, modeLink|0o777, e.size, 1, 0, 0); err != nil {
			return err
		}
		if err := c.put(e.data); err != nil {
			return err
		}
		return c.pad()
	}
	if err := c.header(name, modeFile|perm, e.size, 1, 0, 0); err != nil {
		return err
	}
	if e.src == "" {
		if err := c.put(e.data); err != nil {
			return err
		}
		return c.pad()
	}
	f, err := os.Open(e.src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	n, err := io.Copy(c.w, io.LimitReader(f, e.size))
	c.off += n
	if err != nil {
		return fmt.Errorf("initramfs: copy %s: %w", e.src, err)
	}
	if n != e.size {
		return fmt.Errorf("initramfs: %s changed size while being written (%d of %d bytes)", e.src, n, e.size)
	}
	return c.pad()
}

func (c *cpioWriter) trailer() error {
	if err := c.header("TRAILER!!!", 0, 0, 1, 0, 0); err != nil {
		return err
	}
	// Pad to a 512-byte block like cpio(1) does.
	if r := c.off % 512; r != 0 {
		return c.put(make([]byte, 512-r))
	}
	return nil
}

// Entry is one member of a cpio newc archive, as read by Read.
type Entry struct {
	Name      string
	Mode      uint32 // type and permission bits
	Size      int64
	Data      []byte
	RDevMaj   uint32
	RDevMin   uint32
	IsDir     bool
	IsLink    bool
	IsRegular bool
}

// Read parses an uncompressed cpio newc stream (up to its trailer), keeping
// file contents up to maxData bytes in total. It is used to inspect archives.
func Read(r io.Reader, maxData int64) ([]Entry, error) {
	var out []Entry
	var off int64
	var kept int64
	skipPad := func() error {
		if p := off % 4; p != 0 {
			n, err := io.CopyN(io.Discard, r, 4-p)
			off += n
			return err
		}
		return nil
	}
	for {
		hdr := make([]byte, 110)
		n, err := io.ReadFull(r, hdr)
		off += int64(n)
		if err != nil {
			return out, fmt.Errorf("cpio: truncated header after %d entries: %w", len(out), err)
		}
		if string(hdr[:6]) != "070701" && string(hdr[:6]) != "070702" {
			return out, fmt.Errorf("cpio: bad magic %q at offset %d (not newc)", hdr[:6], off-110)
		}
		var f [13]uint32
		for i := range f {
			var v uint64
			for _, ch := range hdr[6+8*i : 14+8*i] {
				d := strings.IndexByte("0123456789abcdef", byte(ch|0x20))
				if d < 0 {
					return out, fmt.Errorf("cpio: bad hex digit in header at offset %d", off-110)
				}
				v = v<<4 | uint64(d)
			}
			f[i] = uint32(v)
		}
		nameSize := int64(f[11])
		if nameSize < 1 || nameSize > 4096 {
			return out, fmt.Errorf("cpio: name size %d out of range", nameSize)
		}
		name := make([]byte, nameSize)
		n, err = io.ReadFull(r, name)
		off += int64(n)
		if err != nil {
			return out, fmt.Errorf("cpio: truncated name: %w", err)
		}
		if err := skipPad(); err != nil {
			return out, err
		}
		e := Entry{Name: strings.TrimRight(string(name), "\x00"), Mode: f[1], Size: int64(f[6]), RDevMaj: f[9], RDevMin: f[10]}
		if e.Name == "TRAILER!!!" {
			return out, nil
		}
		switch e.Mode & 0o170000 {
		case modeDir:
			e.IsDir = true
		case modeLink:
			e.IsLink = true
		case modeFile:
			e.IsRegular = true
		}
		if kept+e.Size <= maxData {
			e.Data = make([]byte, e.Size)
			n, err := io.ReadFull(r, e.Data)
			off += int64(n)
			if err != nil {
				return out, fmt.Errorf("cpio: %s truncated: %w", e.Name, err)
			}
			kept += e.Size
		} else {
			n, err := io.CopyN(io.Discard, r, e.Size)
			off += n
			if err != nil {
				return out, fmt.Errorf("cpio: %s truncated: %w", e.Name, err)
			}
		}
		if err := skipPad(); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return out, err
		}
		out = append(out, e)
	}
}
