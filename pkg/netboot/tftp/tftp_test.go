package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/netboot/binary"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		in, name, mac string
		ok            bool
	}{
		{"undionly.kpxe", "undionly.kpxe", "", true},
		{"52:54:00:AA:00:01/ipxe.efi", "ipxe.efi", "52:54:00:aa:00:01", true},
		{"52-54-00-aa-00-01/ipxe.efi", "ipxe.efi", "52:54:00:aa:00:01", true},
		{"../etc/passwd", "", "", false},
		{"/etc/passwd", "", "", false},
		{"pxelinux/../../etc/passwd", "", "", false},
		{"sub/ipxe.efi", "", "", false},
		{"52:54:00:aa:00:01/x/ipxe.efi", "", "", false},
		{"./ipxe.efi", "", "", false},
		{"a\\..\\b", "", "", false},
		{"", "", "", false},
		{"ipxe.efi\x00.txt", "", "", false},
		{"52:54:00:aa:00:01/", "", "", false},
	}
	for _, tc := range tests {
		name, mac, err := Resolve(tc.in)
		if (err == nil) != tc.ok || name != tc.name || mac != tc.mac {
			t.Errorf("Resolve(%q) = %q, %q, %v; want %q, %q, ok=%v", tc.in, name, mac, err, tc.name, tc.mac, tc.ok)
		}
	}
}

// FuzzResolve: whatever the request, the result is a bare name (never a
// path), and a name is only returned for inputs without "..".
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"undionly.kpxe", "aa:bb:cc:dd:ee:ff/ipxe.efi", "../x", "/etc/passwd", "a/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, _, err := Resolve(s)
		if err != nil {
			return
		}
		if name == "" || strings.ContainsAny(name, "/\\\x00") || name == ".." || name == "." || strings.Contains(s, "..") && strings.Contains(s, "/..") {
			t.Fatalf("Resolve(%q) = %q", s, name)
		}
	})
}

type counter struct{ n atomic.Int64 }

func (c *counter) TFTPTransfer(_ net.IP, _, _ string, n int64) { c.n.Add(n) }

type testServer struct {
	addr    *net.UDPAddr
	payload []byte
	dir     string
	served  *counter
}

func startServer(t *testing.T, singlePort bool) *testServer {
	t.Helper()
	dir := t.TempDir()
	payload := make([]byte, 1<<20+123)
	_, _ = rand.Read(payload)
	if err := os.WriteFile(filepath.Join(dir, "ipxe.efi"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "undionly.kpxe"), []byte("tiny"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, _, err := binary.Load(dir, []string{"ipxe.efi", "undionly.kpxe"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &counter{}
	s, err := New(Config{Files: set, SinglePort: singlePort, Observer: c, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{addr: conn.LocalAddr().(*net.UDPAddr), payload: payload, dir: dir, served: c}
}

func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt install %s)", name, pkg)
	}
	return p
}

// tftpHPA runs tftp-hpa's client: `tftp -m binary HOST PORT -c CMD...`. Its get
// treats "a:b" as host:file, so tests use the dashed MAC form.
func tftpHPA(t *testing.T, s *testServer, cmd ...string) string {
	t.Helper()
	bin := needTool(t, "tftp", "tftp-hpa")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"-m", "binary", "127.0.0.1", strconv.Itoa(s.addr.Port), "-c"}, cmd...)
	c := exec.CommandContext(ctx, bin, args...)
	c.Dir = t.TempDir()
	out, _ := c.CombinedOutput()
	return string(out)
}

func TestTFTPHPADownloadsByteIdentical(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run("single-port="+strconv.FormatBool(single), func(t *testing.T) {
			s := startServer(t, single)
			out := filepath.Join(t.TempDir(), "got.efi")
			if msg := tftpHPA(t, s, "get", "52-54-00-aa-00-01/ipxe.efi", out); msg != "" {
				t.Logf("tftp said: %s", msg)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("tftp-hpa did not write the file: %v", err)
			}
			if !bytes.Equal(got, s.payload) {
				t.Fatalf("downloaded %d bytes, differ from the %d served", len(got), len(s.payload))
			}
			if waitFor(func() bool { return s.served.n.Load() == int64(len(s.payload)) }) != nil {
				t.Fatalf("observer saw %d bytes", s.served.n.Load())
			}
		})
	}
}

func TestCurlBlksizeAndTsize(t *testing.T) {
	bin := needTool(t, "curl", "curl")
	s := startServer(t, false)
	for _, blk := range []string{"512", "1468", "8192"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		got, err := exec.CommandContext(ctx, bin, "-sS", "--tftp-blksize", blk, "tftp://127.0.0.1:"+strconv.Itoa(s.addr.Port)+"/ipxe.efi").Output()
		cancel()
		if err != nil {
			t.Fatalf("curl blksize %s: %v", blk, err)
		}
		if !bytes.Equal(got, s.payload) {
			t.Fatalf("curl blksize %s: %d bytes, not byte-identical", blk, len(got))
		}
	}
}

func TestRefusals(t *testing.T) {
	s := startServer(t, false)
	secret := filepath.Join(filepath.Dir(s.dir), "secret")
	_ = os.WriteFile(secret, []byte("secret"), 0o600)
	if err := os.Symlink("/etc/passwd", filepath.Join(s.dir, "passwd")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../etc/passwd", "../../../../../../etc/passwd", "/etc/passwd", "../secret", "passwd", "nothere.efi"} {
		t.Run("get "+name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			msg := tftpHPA(t, s, "get", name, out)
			if b, err := os.ReadFile(out); err == nil && len(b) > 0 {
				t.Fatalf("got %d bytes for %q", len(b), name)
			}
			if !strings.Contains(msg, "Error code") {
				t.Fatalf("tftp-hpa printed no TFTP error for %q: %q", name, msg)
			}
		})
	}
	t.Run("put", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "evil.efi")
		_ = os.WriteFile(src, []byte("evil"), 0o644)
		msg := tftpHPA(t, s, "put", src, "ipxe.efi")
		if !strings.Contains(msg, "Error code") {
			t.Fatalf("write not refused: %q", msg)
		}
		if _, err := os.Stat(filepath.Join(s.dir, "evil.efi")); err == nil {
			t.Fatal("file written")
		}
	})
}

func TestNewChecksBlockSize(t *testing.T) {
	set, _, _ := binary.Load(t.TempDir(), nil, nil)
	if _, err := New(Config{Files: set, BlockSize: 70000}); err == nil {
		t.Fatal("block size 70000 accepted")
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("no files accepted")
	}
}

func waitFor(cond func() bool) error {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return context.DeadlineExceeded
}
