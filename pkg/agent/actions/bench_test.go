package actions_test

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/kiln-dev/kiln/pkg/agent/actions"
	"github.com/kiln-dev/kiln/pkg/agent/actions/compresstest"
)

// BenchmarkImage2Disk compares kiln's image2disk (magic sniffing, counting,
// SHA-256, progress, fsync) with a bare peer pipeline (HTTP body → the same
// decoder → io.Copy → fsync) on the same 64 MiB image served over loopback.
// `make bench-image2disk` prints the kiln/peer ratio per format.
func BenchmarkImage2Disk(b *testing.B) {
	data := randomData(64 << 20)
	for _, c := range []actions.Compression{actions.Raw, actions.Gzip, actions.Zstd} {
		body := compresstest.Compress(b, c, data)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
		// A "disk" of the image's size, written once so neither side pays
		// for block allocation.
		dest := filepath.Join(b.TempDir(), "disk")
		if err := os.WriteFile(dest, data, 0o600); err != nil {
			b.Fatal(err)
		}
		b.Run("kiln/"+string(c), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			env := actions.Env{"IMG_URL": srv.URL, "DEST_DISK": dest, "IMG_SHA256": ""}
			for i := 0; i < b.N; i++ {
				if _, err := actions.Image2Disk(context.Background(), &actions.Runtime{Log: io.Discard}, env, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("peer/"+string(c), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				if err := peerCopy(srv.URL, dest, c); err != nil {
					b.Fatal(err)
				}
			}
		})
		srv.Close()
	}
}

func peerCopy(url, dest string, c actions.Compression) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	switch c {
	case actions.Gzip:
		z, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		r = z
	case actions.Zstd:
		z, err := zstd.NewReader(r)
		if err != nil {
			return err
		}
		defer z.Close()
		r = z
	}
	f, err := os.OpenFile(dest, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	return f.Sync()
}
