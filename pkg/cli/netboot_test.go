package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/syncbuf"
)

func TestServeNetbootUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve", "netboot", "--bind-ip", "127.0.0.1"}, ExitUsage, "--hardware-csv is required"},
		{[]string{"serve", "netboot", "--hardware-csv", "x.csv", "--bind-ip", "::1"}, ExitUsage, "--bind-ip"},
		{[]string{"serve", "netboot", "--hardware-csv", "x.csv", "--bind-ip", "127.0.0.1", "--dhcp-mode", "dynamic"}, ExitUsage, "--dhcp-mode"},
		{[]string{"serve", "netboot", "--hardware-csv", "/nonexistent/Hardware.csv", "--bind-ip", "127.0.0.1"}, ExitInvalidInput, "Hardware.csv"},
	}
	for _, tc := range tests {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), tc.args, strings.NewReader(""), &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("kiln %v = %d %q, want %d with %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}

func TestServeNetbootRunsAndStops(t *testing.T) {
	dir := t.TempDir()
	csv := "hostname,bmc_ip,bmc_username,bmc_password,mac,ip_address,netmask,gateway,nameservers,labels,disk\n" +
		"cp01,,,,52:54:00:aa:00:01,127.0.0.1,255.0.0.0,127.0.0.254,127.0.0.53,type=cp,/dev/sda\n"
	if err := os.WriteFile(filepath.Join(dir, "Hardware.csv"), []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	ipxeDir := t.TempDir()
	for _, n := range []string{"undionly.kpxe", "ipxe.efi"} {
		_ = os.WriteFile(filepath.Join(ipxeDir, n), []byte(n), 0o644)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"serve", "netboot", "--hardware-csv", filepath.Join(dir, "Hardware.csv"), "--bind-ip", "127.0.0.1",
			"--dhcp-mode", "off", "--ipxe-dir", ipxeDir, "--http-port", "0", "--tftp-port", "0", "--syslog-port", "0"}, strings.NewReader(""), &out, &errOut)
	}()
	re := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("no HTTP address printed; out=%q err=%q", out.String(), errOut.String())
	}
	resp, err := http.Get("http://" + addr + "/ipxe/52:54:00:aa:00:01/auto.ipxe")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "worker_id=52:54:00:aa:00:01") {
		t.Fatalf("script: %s", body)
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kiln serve netboot did not stop")
	}
	for _, want := range []string{"✓ read", "✓ start netboot for 1 machines (dhcp off)", "✓ stop netboot"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress lacks %q: %s", want, out.String())
		}
	}
}
