package actions

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/net/http/httpproxy"
	"golang.org/x/sys/unix"
)

// Compression is a stream format recognised by its magic bytes.
type Compression string

// Recognised formats.
const (
	Raw   Compression = "raw"
	Gzip  Compression = "gzip"
	XZ    Compression = "xz"
	Zstd  Compression = "zstd"
	Bzip2 Compression = "bzip2"
)

// Sniff names the compression of a stream from its first bytes.
func Sniff(head []byte) Compression {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return XZ
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	case len(head) >= 4 && bytes.HasPrefix(head, []byte("BZh")) && head[3] >= '1' && head[3] <= '9':
		return Bzip2
	}
	return Raw
}

// decompress wraps r according to c. The returned closer releases decoder
// resources.
func decompress(c Compression, r io.Reader) (io.Reader, func(), error) {
	switch c {
	case Gzip:
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip header: %w", err)
		}
		return z, func() { _ = z.Close() }, nil
	case XZ:
		z, err := xz.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("xz header: %w", err)
		}
		return z, func() {}, nil
	case Zstd:
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd header: %w", err)
		}
		return z, z.Close, nil
	case Bzip2:
		return bzip2.NewReader(r), func() {}, nil
	}
	return r, func() {}, nil
}

// countingReader counts and hashes what the server sent.
type countingReader struct {
	r io.Reader
	n atomic.Int64
	h hash.Hash // nil unless a checksum was asked for
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if c.h != nil {
		c.h.Write(p[:n])
	}
	return n, err
}

// countingWriter counts what went to the disk.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Image2Disk streams IMG_URL to DEST_DISK. The compression is detected from
// the stream's magic bytes (gzip, xz, zstd, bzip2 or raw), a short or
// truncated download fails, IMG_SHA256 (kiln extension) verifies the bytes as
// served, progress is logged every PROGRESS_INTERVAL_SECONDS, and the disk is
// fsynced (and its partition table re-read) before success. With
// RETRY_ENABLED=true, failed downloads (network errors, truncation, HTTP 5xx)
// start over until RETRY_DURATION_MINUTES (default 10) have passed.
func Image2Disk(ctx context.Context, rt *Runtime, env Env, _ []string) (Then, error) {
	const name = "image2disk"
	var c i2dConfig
	var err error
	if c.url, err = env.Required(name, "IMG_URL"); err != nil {
		return nil, err
	}
	if c.dest, err = env.Required(name, "DEST_DISK"); err != nil {
		return nil, err
	}
	if c.compressed, err = env.Bool(name, "COMPRESSED", false); err != nil {
		return nil, err
	}
	if c.every, err = progressEvery(env); err != nil {
		return nil, err
	}
	retry, err := env.Bool(name, "RETRY_ENABLED", false)
	if err != nil {
		return nil, err
	}
	minutes, err := env.Int(name, "RETRY_DURATION_MINUTES", 10)
	if err != nil {
		return nil, err
	}
	c.sum = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(env["IMG_SHA256"]), "sha256:"))
	client := httpClient(rt, env)
	deadline := time.Now().Add(time.Duration(minutes) * time.Minute)
	wait := time.Second
	for attempt := 1; ; attempt++ {
		err := c.once(ctx, rt, client)
		var perm permanentError
		if err == nil || !retry || errors.As(err, &perm) || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			if errors.As(err, &perm) {
				err = perm.err
			}
			if err != nil && retry && attempt > 1 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return nil, err
		}
		rt.logf("%s: attempt %d failed: %v; retrying in %s (RETRY_ENABLED, until %s)", name, attempt, err, wait, deadline.Format(time.TimeOnly))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w; stopped while waiting to retry: %w", err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// permanentError marks a failure a retry cannot fix (HTTP 4xx, bad
// settings, a checksum mismatch, an unusable DEST_DISK).
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }

type i2dConfig struct {
	url, dest, sum string
	compressed     bool
	every          time.Duration
}

// once makes one download attempt.
func (c *i2dConfig) once(ctx context.Context, rt *Runtime, client *http.Client) error {
	const name = "image2disk"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return permanentError{fmt.Errorf("%s: IMG_URL %q: %w", name, c.url, err)}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: GET %s: %w", name, c.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("%s: GET %s: server answered %s", name, c.url, resp.Status)
		if resp.StatusCode < 500 {
			return permanentError{err}
		}
		return err
	}

	in := &countingReader{r: resp.Body}
	if c.sum != "" {
		in.h = sha256.New()
	}
	br := bufio.NewReaderSize(in, 1<<20)
	head, _ := br.Peek(6)
	kind := Sniff(head)
	switch {
	case kind == Raw && c.compressed:
		return permanentError{fmt.Errorf("%s: COMPRESSED=true but %s starts with no gzip, xz, zstd or bzip2 magic bytes; set COMPRESSED=false for a raw image or check the URL", name, c.url)}
	case kind != Raw && !c.compressed:
		rt.logf("%s: %s is %s-compressed (by its magic bytes); decompressing although COMPRESSED is not true", name, c.url, kind)
	}
	src, closeDec, err := decompress(kind, br)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", name, c.url, err)
	}
	defer closeDec()

	disk, err := os.OpenFile(c.dest, os.O_WRONLY, 0)
	if err != nil {
		return permanentError{fmt.Errorf("%s: opening DEST_DISK: %w", name, err)}
	}
	defer disk.Close()
	out := &countingWriter{w: disk}

	rt.logf("%s: streaming %s (%s, %s) to %s", name, c.url, kind, sizeText(resp.ContentLength), c.dest)
	start := time.Now()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(c.every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				rt.logf("%s: %s", name, progress(in.n.Load(), resp.ContentLength, out.n.Load(), time.Since(start)))
			}
		}
	}()
	_, copyErr := io.CopyBuffer(out, ctxReader{ctx, src}, make([]byte, 4<<20))
	if copyErr == nil {
		// The decompressor may stop at the end of its stream before the
		// body is exhausted: drain it so truncation and trailing data show.
		_, copyErr = io.Copy(io.Discard, ctxReader{ctx, br})
	}
	close(stop)
	<-done
	got := in.n.Load()
	switch {
	case copyErr != nil && ctx.Err() != nil:
		return fmt.Errorf("%s: stopped after %s of %s: %w", name, mib(got), sizeText(resp.ContentLength), ctx.Err())
	case errors.Is(copyErr, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: %s is truncated: the stream ended after %s of %s (%s written to %s); the disk is NOT fully written", name, c.url, mib(got), sizeText(resp.ContentLength), mib(out.n.Load()), c.dest)
	case copyErr != nil:
		return fmt.Errorf("%s: after %s read, %s written to %s: %w", name, mib(got), mib(out.n.Load()), c.dest, copyErr)
	case resp.ContentLength >= 0 && got != resp.ContentLength:
		return fmt.Errorf("%s: %s is truncated: got %d of %d bytes", name, c.url, got, resp.ContentLength)
	}
	if c.sum != "" {
		if sum := hex.EncodeToString(in.h.Sum(nil)); sum != c.sum {
			return permanentError{fmt.Errorf("%s: SHA-256 of %s is %s, IMG_SHA256 wants %s; the download is corrupt or the checksum is for another file", name, c.url, sum, c.sum)}
		}
		rt.logf("%s: SHA-256 verified", name)
	}
	if err := disk.Sync(); err != nil {
		return permanentError{fmt.Errorf("%s: fsync %s: %w", name, c.dest, err)}
	}
	if err := unix.IoctlSetInt(int(disk.Fd()), unix.BLKRRPART, 0); err != nil && !errors.Is(err, unix.ENOTTY) {
		// Partitions in use or a device without a table; the kernel
		// re-reads at next boot. Tinkerbell ignores this too.
		rt.logf("%s: re-reading the partition table of %s failed (%v); continuing", name, c.dest, err)
	}
	rt.logf("%s: done: %s", name, progress(got, resp.ContentLength, out.n.Load(), time.Since(start)))
	return nil
}

func httpClient(rt *Runtime, env Env) *http.Client {
	if rt.HTTP != nil {
		return rt.HTTP
	}
	cfg := httpproxy.Config{HTTPProxy: env["HTTP_PROXY"], HTTPSProxy: env["HTTPS_PROXY"], NoProxy: env["NO_PROXY"]}
	proxy := cfg.ProxyFunc()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = func(r *http.Request) (*url.URL, error) { return proxy(r.URL) }
	return &http.Client{Transport: tr}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func sizeText(n int64) string {
	if n < 0 {
		return "unknown size"
	}
	return mib(n)
}

func progress(read, total, written int64, d time.Duration) string {
	rate := 0.0
	if s := d.Seconds(); s > 0 {
		rate = float64(written) / 1e6 / s
	}
	pct := ""
	if total > 0 {
		pct = fmt.Sprintf(" (%.0f%%)", 100*float64(read)/float64(total))
	}
	return fmt.Sprintf("read %s of %s%s, wrote %s to disk at %.1f MB/s in %s", mib(read), sizeText(total), pct, mib(written), rate, d.Round(time.Millisecond))
}
