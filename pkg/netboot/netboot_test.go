package netboot

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/metadata"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeIPXEDir holds stand-in binaries with known content.
func fakeIPXEDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range []string{"undionly.kpxe", "ipxe.efi"} {
		if err := os.WriteFile(filepath.Join(dir, n), bytes.Repeat([]byte(n), 5000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func startLoopback(t *testing.T, mod func(*Config)) *Server {
	t.Helper()
	hook := t.TempDir()
	_ = os.WriteFile(filepath.Join(hook, "vmlinuz-x86_64"), []byte("KERNEL-0123456789"), 0o644)
	_ = os.WriteFile(filepath.Join(hook, "initramfs-x86_64"), []byte("INITRAMFS"), 0o644)
	_ = os.Symlink("/etc/passwd", filepath.Join(hook, "passwd"))
	_ = os.Symlink("vmlinuz-x86_64", filepath.Join(hook, "vmlinuz"))
	cfg := Config{
		BindIP: net.IPv4(127, 0, 0, 1), DHCPMode: DHCPOff, EphemeralPorts: true, IPXEDir: fakeIPXEDir(t), HookDir: hook,
		Machines: &hardware.Inventory{Machines: []hardware.Machine{{Hostname: "cp-1", IPAddress: "127.0.0.1", MAC: "52:54:00:aa:00:01"}}},
		Metadata: metadata.Static{Keys: []string{"ssh-ed25519 AAAA"}},
		Mounts:   []Mount{{Prefix: "GET /phone-home/", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("mounted")) })}},
		Log:      quietLog(),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		if err := s.Wait(); err != nil {
			t.Errorf("services ended with: %v", err)
		}
	})
	return s
}

func get(t *testing.T, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestStackOverLoopback(t *testing.T) {
	s := startLoopback(t, nil)
	base := "http://" + s.HTTPAddr().String()
	checks := []struct {
		path, want string
		code       int
		hdr        []string
	}{
		{"/healthz", "ok", 200, nil},
		{"/ipxe/52:54:00:aa:00:01/auto.ipxe", "kiln_metadata_url=" + base, 200, nil},
		{"/ipxe/52:54:00:aa:00:01/auto.ipxe", "grpc_authority=127.0.0.1:42113", 200, nil},
		{"/ipxe/52:54:00:aa:00:01/started", "#!ipxe", 200, nil},
		{"/ipxe/binary/52:54:00:aa:00:01/ipxe.efi", "ipxe.efiipxe.efi", 200, nil},
		{"/hook/vmlinuz-x86_64", "KERNEL-0123456789", 200, nil},
		{"/hook/vmlinuz-x86_64", "0123", 206, []string{"Range", "bytes=7-10"}},
		{"/hook/../../etc/passwd", "", 404, nil},
		{"/hook/%2e%2e/%2e%2e/etc/passwd", "", 404, nil},
		{"/hook/passwd", "", 404, nil},                   // symlink leaving the directory
		{"/hook/vmlinuz", "KERNEL-0123456789", 200, nil}, // symlink inside it is fine
		{"/hook/", "", 404, nil},
		{"/2009-04-04/meta-data/hostname", "cp-1", 200, nil},
		{"/2009-04-04/meta-data/public-keys/0/openssh-key", "ssh-ed25519 AAAA", 200, nil},
		{"/phone-home/x", "mounted", 200, nil},
	}
	for _, c := range checks {
		code, body, _ := get(t, base+c.path, c.hdr...)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s = %d %.80q, want %d with %q", c.path, code, body, c.code, c.want)
		}
	}
	_, _, h := get(t, base+"/hook/initramfs-x86_64")
	if code, _, _ := get(t, base+"/hook/initramfs-x86_64", "If-None-Match", h.Get("ETag")); code != http.StatusNotModified || h.Get("ETag") == "" {
		t.Errorf("ETag %q revalidation gave %d", h.Get("ETag"), code)
	}
	resp, err := http.Head(base + "/hook/vmlinuz-x86_64")
	if err != nil || resp.ContentLength != int64(len("KERNEL-0123456789")) {
		t.Errorf("HEAD: %v %v", resp, err)
	}
	_, metrics, _ := get(t, base+"/metrics")
	for _, want := range []string{`kiln_http_requests_total{code="200",route="/ipxe/"}`, `kiln_bytes_served_total{protocol="http"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// TFTP on the same stack, with curl as the client.
	if curl, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command(curl, "-sS", "tftp://127.0.0.1:"+strconv.Itoa(s.TFTPAddr().Port)+"/undionly.kpxe").Output()
		if err != nil || !bytes.Equal(out, bytes.Repeat([]byte("undionly.kpxe"), 5000)) {
			t.Errorf("TFTP via curl: %d bytes, %v", len(out), err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for !s.Journal.Has("52:54:00:aa:00:01", "tftp undionly.kpxe") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	_, journal, _ := get(t, base+"/netboot/machines")
	for _, want := range []string{`"script"`, `"script started"`, `"http /hook/vmlinuz-x86_64"`, `"tftp undionly.kpxe"`} {
		if !strings.Contains(journal, want) {
			t.Errorf("journal lacks %s: %s", want, journal)
		}
	}
}

func TestStartFailsClearly(t *testing.T) {
	inv := &hardware.Inventory{}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"missing binary", Config{BindIP: net.IPv4(127, 0, 0, 1), DHCPMode: DHCPOff, EphemeralPorts: true, IPXEDir: t.TempDir(), Machines: inv}, "install Debian's ipxe package"},
		{"bad mode", Config{BindIP: net.IPv4(127, 0, 0, 1), DHCPMode: "dynamic", Machines: inv}, "--dhcp-mode"},
		{"no bind ip", Config{Machines: inv}, "--bind-ip"},
		{"bad hook dir", Config{BindIP: net.IPv4(127, 0, 0, 1), DHCPMode: DHCPOff, EphemeralPorts: true, IPXEDir: fakeIPXEDir(t), HookDir: "/nonexistent", Machines: inv}, "/hook/"},
		{"mount clash", Config{BindIP: net.IPv4(127, 0, 0, 1), DHCPMode: DHCPOff, EphemeralPorts: true, IPXEDir: fakeIPXEDir(t), Machines: inv,
			Mounts: []Mount{{Prefix: "/ipxe/", Handler: http.NotFoundHandler()}}}, "cannot mount"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Log = quietLog()
			s, err := Start(context.Background(), tc.cfg)
			if err == nil {
				s.Shutdown()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestIndexMatchesInventory(t *testing.T) {
	inv := &hardware.Inventory{Machines: []hardware.Machine{
		{Hostname: "a", MAC: "52:54:00:AA:00:01", IPAddress: "10.0.0.1"},
		{Hostname: "b", MAC: "52:54:00:aa:00:02", IPAddress: "10.0.0.2"},
	}}
	ix := newIndex(inv)
	for _, q := range []string{"52:54:00:aa:00:01", "52-54-00-AA-00-01", "52:54:00:AA:00:02", "52:54:00:aa:00:03", "junk"} {
		m1, ok1 := inv.ByMAC(q)
		m2, ok2 := ix.ByMAC(q)
		if ok1 != ok2 || m1.Hostname != m2.Hostname {
			t.Errorf("ByMAC(%q): inventory %v %q, index %v %q", q, ok1, m1.Hostname, ok2, m2.Hostname)
		}
	}
	for _, q := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "::ffff:10.0.0.1", "x"} {
		m1, ok1 := inv.ByIP(q)
		m2, ok2 := ix.ByIP(q)
		if ok1 != ok2 || m1.Hostname != m2.Hostname {
			t.Errorf("ByIP(%q): inventory %v %q, index %v %q", q, ok1, m1.Hostname, ok2, m2.Hostname)
		}
	}
}

func TestToggle(t *testing.T) {
	tg := NewToggle(true)
	m := hardware.Machine{MAC: "52:54:00:AA:00:01"}
	if !tg.NetbootAllowed(m) {
		t.Fatal("default not applied")
	}
	tg.Set("52-54-00-aa-00-01", false)
	if tg.NetbootAllowed(m) {
		t.Fatal("override by another MAC spelling not applied")
	}
	tg.Set("52:54:00:aa:00:01", true)
	if !tg.NetbootAllowed(m) {
		t.Fatal("re-enable not applied")
	}
}

// TestDisabledMachineGetsExitScript: with the toggle off, the stack serves
// a script that only exits non-zero.
func TestDisabledMachineGetsExitScript(t *testing.T) {
	tg := NewToggle(true)
	tg.Set("52:54:00:aa:00:01", false)
	s := startLoopback(t, func(c *Config) { c.Policy = tg })
	_, body, _ := get(t, "http://"+s.HTTPAddr().String()+"/ipxe/52:54:00:aa:00:01/auto.ipxe")
	if !strings.Contains(body, "exit 1") || strings.Contains(body, "kernel") {
		t.Fatalf("script for a disabled machine: %s", body)
	}
}
