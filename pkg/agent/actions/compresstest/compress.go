// Package compresstest produces compressed test images in every format
// image2disk recognises, for the actions and agent tests.
package compresstest

import (
	"bytes"
	"compress/gzip"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/kiln-dev/kiln/pkg/agent/actions"
)

// Compress returns data compressed as c. xz uses the xz program when present
// (the Go encoder is slow on a shared CPU); bzip2 needs the bzip2 program
// (Go has no bzip2 encoder) and skips the test without it.
func Compress(tb testing.TB, c actions.Compression, data []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	switch c {
	case actions.Gzip:
		w := gzip.NewWriter(&buf)
		_, _ = w.Write(data)
		_ = w.Close()
	case actions.Zstd:
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			tb.Fatal(err)
		}
		_, _ = w.Write(data)
		_ = w.Close()
	case actions.XZ:
		if _, err := exec.LookPath("xz"); err == nil {
			return run(tb, data, "xz", "-c", "-1", "-T1")
		}
		w, err := xz.NewWriter(&buf)
		if err != nil {
			tb.Fatal(err)
		}
		_, _ = w.Write(data)
		_ = w.Close()
	case actions.Bzip2:
		if _, err := exec.LookPath("bzip2"); err != nil {
			tb.Skipf("bzip2 program not available (apt install bzip2): %v", err)
		}
		return run(tb, data, "bzip2", "-c")
	default:
		return data
	}
	return buf.Bytes()
}

func run(tb testing.TB, data []byte, name string, args ...string) []byte {
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return out
}
