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
	h hash.Hash
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	c.h.Write(p[:n])
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
// fsynced (and its partition table re-read) before success.
func Image2Disk(ctx context.Context, rt *Runtime, env Env, _ []string) (Then, error) {
	const name = "image2disk"
	imgURL, err := env.Required(name, "IMG_URL")
	if err != nil {
		return nil, err
	}
	dest, err := env.Required(name, "DEST_DISK")
	if err != nil {
		return nil, err
	}
	compressed, err := env.Bool(name, "COMPRESSED", false)
	if err != nil {
		return nil, err
	}
	every, err := progressEvery(env)
	if err != nil {
		return nil, err
	}
	wantSum := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(env["IMG_SHA256"]), "sha256:"))

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, imgURL, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: IMG_URL %q: %w", name, imgURL, err)
	}
	resp, err := httpClient(rt, env).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: GET %s: %w", name, imgURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: GET %s: server answered %s", name, imgURL, resp.Status)
	}

	in := &countingReader{r: resp.Body, h: sha256.New()}
	br := bufio.NewReaderSize(in, 1<<20)
	head, _ := br.Peek(6)
	kind := Sniff(head)
	switch {
	case kind == Raw && compressed:
		return nil, fmt.Errorf("%s: COMPRESSED=true but %s starts with no gzip, xz, zstd or bzip2 magic bytes; set COMPRESSED=false for a raw image or check the URL", name, imgURL)
	case kind != Raw && !compressed:
		rt.logf("%s: %s is %s-compressed (by its magic bytes); decompressing although COMPRESSED is not true", name, imgURL, kind)
	}
	src, closeDec, err := decompress(kind, br)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, imgURL, err)
	}
	defer closeDec()

	disk, err := os.OpenFile(dest, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: opening DEST_DISK: %w", name, err)
	}
	defer disk.Close()
	out := &countingWriter{w: disk}

	rt.logf("%s: streaming %s (%s, %s) to %s", name, imgURL, kind, sizeText(resp.ContentLength), dest)
	start := time.Now()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
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
		return nil, fmt.Errorf("%s: stopped after %s of %s: %w", name, mib(got), sizeText(resp.ContentLength), ctx.Err())
	case errors.Is(copyErr, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%s: %s is truncated: the stream ended after %s of %s (%s written to %s); the disk is NOT fully written", name, imgURL, mib(got), sizeText(resp.ContentLength), mib(out.n.Load()), dest)
	case copyErr != nil:
		return nil, fmt.Errorf("%s: after %s read, %s written to %s: %w", name, mib(got), mib(out.n.Load()), dest, copyErr)
	case resp.ContentLength >= 0 && got != resp.ContentLength:
		return nil, fmt.Errorf("%s: %s is truncated: got %d of %d bytes", name, imgURL, got, resp.ContentLength)
	}
	if wantSum != "" {
		if sum := hex.EncodeToString(in.h.Sum(nil)); sum != wantSum {
			return nil, fmt.Errorf("%s: SHA-256 of %s is %s, IMG_SHA256 wants %s; the download is corrupt or the checksum is for another file", name, imgURL, sum, wantSum)
		}
		rt.logf("%s: SHA-256 verified", name)
	}
	if err := disk.Sync(); err != nil {
		return nil, fmt.Errorf("%s: fsync %s: %w", name, dest, err)
	}
	if err := unix.IoctlSetInt(int(disk.Fd()), unix.BLKRRPART, 0); err != nil && !errors.Is(err, unix.ENOTTY) {
		// Partitions in use or a device without a table; the kernel
		// re-reads at next boot. Tinkerbell ignores this too.
		rt.logf("%s: re-reading the partition table of %s failed (%v); continuing", name, dest, err)
	}
	rt.logf("%s: done: %s", name, progress(got, resp.ContentLength, out.n.Load(), time.Since(start)))
	return nil, nil
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
