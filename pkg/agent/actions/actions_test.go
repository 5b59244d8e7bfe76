package actions_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/agent/actions"
	"github.com/kiln-dev/kiln/pkg/agent/actions/compresstest"
	"github.com/kiln-dev/kiln/pkg/syncbuf"
)

func randomData(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		// Compressible but not trivially: runs of random bytes.
		if i%64 < 48 {
			b[i] = byte(r.IntN(256))
		}
	}
	return b
}

func TestSniff(t *testing.T) {
	data := randomData(4096)
	for _, c := range []actions.Compression{actions.Raw, actions.Gzip, actions.XZ, actions.Zstd, actions.Bzip2} {
		if got := actions.Sniff(compresstest.Compress(t, c, data)); got != c {
			t.Errorf("Sniff(%s data) = %s", c, got)
		}
	}
}

// serve serves body at /img; truncate cuts the body short while still
// announcing the full Content-Length.
func serve(t *testing.T, body []byte, truncate int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/img" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if truncate > 0 {
			_, _ = w.Write(body[:truncate])
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestImage2DiskToFile(t *testing.T) {
	data := randomData(768<<10 + 123)
	sum := sha256.Sum256(data)
	cases := []struct {
		name     string
		c        actions.Compression
		env      map[string]string
		truncate bool
		path     string
		wantErr  string
	}{
		{name: "raw", c: actions.Raw},
		{name: "gzip", c: actions.Gzip, env: map[string]string{"COMPRESSED": "true"}},
		{name: "xz", c: actions.XZ, env: map[string]string{"COMPRESSED": "true"}},
		{name: "zstd", c: actions.Zstd, env: map[string]string{"COMPRESSED": "true"}},
		{name: "bzip2", c: actions.Bzip2, env: map[string]string{"COMPRESSED": "true"}},
		{name: "gzip by magic only", c: actions.Gzip},
		{name: "compressed flag on raw", c: actions.Raw, env: map[string]string{"COMPRESSED": "true"}, wantErr: "no gzip, xz, zstd or bzip2 magic"},
		{name: "truncated gzip", c: actions.Gzip, env: map[string]string{"COMPRESSED": "true"}, truncate: true, wantErr: "truncated"},
		{name: "truncated raw", c: actions.Raw, truncate: true, wantErr: "truncated"},
		{name: "truncated zstd", c: actions.Zstd, truncate: true, wantErr: "truncated"},
		{name: "truncated xz", c: actions.XZ, truncate: true, wantErr: "truncated"},
		{name: "not found", c: actions.Raw, path: "/nope", wantErr: "404"},
		{name: "bad checksum", c: actions.Raw, env: map[string]string{"IMG_SHA256": strings.Repeat("0", 64)}, wantErr: "IMG_SHA256 wants"},
		{name: "good checksum", c: actions.Raw, env: map[string]string{"IMG_SHA256": "sha256:" + hex.EncodeToString(sum[:])}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := compresstest.Compress(t, tc.c, data)
			cut := 0
			if tc.truncate {
				cut = len(body) * 2 / 3
			}
			url := serve(t, body, cut)
			path := tc.path
			if path == "" {
				path = "/img"
			}
			dest := filepath.Join(t.TempDir(), "disk")
			if err := os.WriteFile(dest, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			env := actions.Env{"IMG_URL": url + path, "DEST_DISK": dest}
			for k, v := range tc.env {
				env[k] = v
			}
			var log bytes.Buffer
			_, err := actions.Image2Disk(context.Background(), &actions.Runtime{Log: &log}, env, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("image2disk: %v\n%s", err, log.String())
			}
			got, _ := os.ReadFile(dest)
			if !bytes.Equal(got, data) {
				t.Fatalf("disk holds %d bytes, want the %d image bytes", len(got), len(data))
			}
			if !strings.Contains(log.String(), "done: read") {
				t.Errorf("no final progress line in log:\n%s", log.String())
			}
		})
	}
	if _, err := actions.Image2Disk(context.Background(), &actions.Runtime{}, actions.Env{"IMG_URL": "http://127.0.0.1:1/x"}, nil); err == nil || !strings.Contains(err.Error(), "DEST_DISK is required") {
		t.Errorf("missing DEST_DISK: %v", err)
	}
}

func TestLookup(t *testing.T) {
	for _, img := range []string{"quay.io/tinkerbell/actions/image2disk:latest", "127.0.0.1/embedded/writefile", "cexec", "ghcr.io/x/kexec:v1", "reboot"} {
		if _, err := actions.Lookup(img); err != nil {
			t.Errorf("Lookup(%q): %v", img, err)
		}
	}
	_, err := actions.Lookup("quay.io/tinkerbell/actions/oci2disk:latest")
	if !errors.Is(err, actions.ErrUnknownImage) || !strings.Contains(err.Error(), "oci2disk") || !strings.Contains(err.Error(), "image2disk, kexec, reboot, writefile") {
		t.Errorf("unknown image error = %v", err)
	}
}

func TestEnv(t *testing.T) {
	env := actions.ParseEnv([]string{"MODE=0600", "UID=1000", "BAD_MODE=999", "B=yes", "EMPTY=", "EQ=a=b"})
	if m, err := env.Octal("w", "MODE", 0); err != nil || m != 0o600 {
		t.Errorf("MODE = %o, %v", m, err)
	}
	if _, err := env.Octal("w", "BAD_MODE", 0); err == nil {
		t.Error("mode 999 accepted")
	}
	if _, err := env.Bool("w", "B", false); err == nil {
		t.Error(`"yes" accepted as a bool`)
	}
	if v, err := env.Int("w", "UID", 0); err != nil || v != 1000 {
		t.Errorf("UID = %d, %v", v, err)
	}
	if _, err := env.Required("w", "EMPTY"); err == nil || !strings.Contains(err.Error(), "EMPTY is required") {
		t.Errorf("empty required: %v", err)
	}
	if env["EQ"] != "a=b" {
		t.Errorf("EQ = %q", env["EQ"])
	}
}

func TestParseGrubDefault(t *testing.T) {
	cfg := `set default="0"
menuentry 'Ubuntu' --class ubuntu {
	recordfail
	if [ x$feature_platform_search_hint = xy ]; then
	  search --no-floppy --fs-uuid --set=root abcd
	fi
	linux	/boot/vmlinuz-6.8.0-45-generic root=LABEL=cloudimg-rootfs ro console=tty1 console=ttyS0
	initrd	/boot/initrd.img-6.8.0-45-generic
}
menuentry 'Other' {
	linux /boot/other
}
`
	f := filepath.Join(t.TempDir(), "grub.cfg")
	_ = os.WriteFile(f, []byte(cfg), 0o600)
	fh, _ := os.Open(f)
	defer fh.Close()
	e, err := actions.ParseGrubDefault(fh)
	if err != nil {
		t.Fatal(err)
	}
	want := actions.BootEntry{Kernel: "/boot/vmlinuz-6.8.0-45-generic", Initrd: "/boot/initrd.img-6.8.0-45-generic", Cmdline: "root=LABEL=cloudimg-rootfs ro console=tty1 console=ttyS0"}
	if e != want {
		t.Fatalf("entry = %+v", e)
	}
	if _, err := actions.ParseGrubDefault(strings.NewReader("set x=1\n")); err == nil {
		t.Error("config without entries accepted")
	}
}

func TestRebootDisabled(t *testing.T) {
	var log bytes.Buffer
	then, err := actions.Reboot(context.Background(), &actions.Runtime{Log: &log}, nil, nil)
	if err != nil || then != nil || !strings.Contains(log.String(), "disabled") {
		t.Fatalf("then=%v err=%v log=%q", then != nil, err, log.String())
	}
	var got []int
	then, err = actions.Reboot(context.Background(), &actions.Runtime{Reboot: func(c int) error { got = append(got, c); return nil }}, nil, nil)
	if err != nil || then == nil || len(got) != 0 {
		t.Fatal("reboot must wait until after the SUCCESS report")
	}
	_ = then()
	if len(got) != 1 {
		t.Fatal("reboot not performed")
	}
}

func TestImage2DiskReportsProgress(t *testing.T) {
	chunk := randomData(64 << 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(4*len(chunk)))
		for i := 0; i < 4; i++ {
			_, _ = w.Write(chunk)
			w.(http.Flusher).Flush()
			time.Sleep(400 * time.Millisecond)
		}
	}))
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "disk")
	_ = os.WriteFile(dest, nil, 0o600)
	var log syncbuf.Buffer
	env := actions.Env{"IMG_URL": srv.URL, "DEST_DISK": dest, "PROGRESS_INTERVAL_SECONDS": "1"}
	if _, err := actions.Image2Disk(context.Background(), &actions.Runtime{Log: &log}, env, nil); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	progress := 0
	for _, l := range lines {
		if strings.Contains(l, "% ") || strings.Contains(l, "%)") {
			progress++
		}
	}
	if progress < 2 || !strings.Contains(lines[len(lines)-1], "done: read 0.2 MiB of 0.2 MiB (100%)") {
		t.Fatalf("want periodic progress lines and a final one:\n%s", log.String())
	}
}

func TestImage2DiskRetry(t *testing.T) {
	data := randomData(256 << 10)
	body := compresstest.Compress(t, actions.Gzip, data)
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		switch {
		case r.URL.Path == "/missing":
			http.NotFound(w, r)
		case n == 1: // cut the first download short
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body[:len(body)/2])
		default:
			_, _ = w.Write(body)
		}
	}))
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "disk")
	_ = os.WriteFile(dest, nil, 0o600)
	var log syncbuf.Buffer
	env := actions.Env{"IMG_URL": srv.URL + "/img", "DEST_DISK": dest, "RETRY_ENABLED": "true", "RETRY_DURATION_MINUTES": "1"}
	if _, err := actions.Image2Disk(context.Background(), &actions.Runtime{Log: &log}, env, nil); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) || !strings.Contains(log.String(), "attempt 1 failed") || calls != 2 {
		t.Fatalf("calls %d, log:\n%s", calls, log.String())
	}
	// A 404 is not retried.
	env["IMG_URL"] = srv.URL + "/missing"
	_, err := actions.Image2Disk(context.Background(), &actions.Runtime{Log: io.Discard}, env, nil)
	if err == nil || !strings.Contains(err.Error(), "404") || calls != 3 {
		t.Fatalf("404: %v after %d calls", err, calls)
	}
	// Without RETRY_ENABLED the first failure is final.
	mu.Lock()
	calls = 0
	mu.Unlock()
	env = actions.Env{"IMG_URL": srv.URL + "/img", "DEST_DISK": dest}
	if _, err := actions.Image2Disk(context.Background(), &actions.Runtime{Log: io.Discard}, env, nil); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("no retry: %v", err)
	}
}
