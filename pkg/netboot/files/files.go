// Package files serves a directory over HTTP for netbooting machines (the
// in-memory OS artifacts, OS images) with HEAD, Range and ETag support.
// Files are opened through os.Root, so neither "..", absolute paths nor
// symlinks can reach outside the directory; directories are not listed.
package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
)

// Observer is told how many bytes each request sent; nil is allowed.
type Observer interface {
	BytesServed(protocol string, n int64)
}

// Dir serves files below one directory.
type Dir struct {
	root     *os.Root
	prefix   string
	observer Observer
	log      *slog.Logger
}

// Open prepares to serve dir under the URL prefix (e.g. "/hook/").
func Open(dir, prefix string, observer Observer, log *slog.Logger) (*Dir, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("directory to serve: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Dir{root: root, prefix: prefix, observer: observer, log: log.With("component", "http", "dir", dir)}, nil
}

// Close releases the directory.
func (d *Dir) Close() error { return d.root.Close() }

// Has reports whether name exists as a regular file in the directory.
func (d *Dir) Has(name string) bool {
	st, err := d.root.Stat(name)
	return err == nil && st.Mode().IsRegular()
}

// ServeHTTP serves GET and HEAD with Range and ETag.
func (d *Dir) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, d.prefix)
	if name == "" || strings.HasSuffix(name, "/") {
		http.NotFound(w, r)
		return
	}
	f, err := d.root.Open(name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("refused file request", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		} else {
			d.log.Warn("file not found", "path", r.URL.Path, "remote", r.RemoteAddr)
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, st.Size(), st.ModTime().UnixNano()))
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, st.Name(), st.ModTime(), f)
	d.log.Info("served file", "path", r.URL.Path, "remote", r.RemoteAddr, "bytes", cw.n, "range", r.Header.Get("Range"))
	if d.observer != nil {
		d.observer.BytesServed("http", cw.n)
	}
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// ReadFrom keeps sendfile(2) for large files while counting.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.n += n
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	c.n += n
	return n, err
}
