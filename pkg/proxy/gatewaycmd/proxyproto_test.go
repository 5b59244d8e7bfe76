package gatewaycmd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/exitcode"
)

// TestGatewayRunProxyProtocol: `kiln gateway run` with a proxy_protocol
// proxy listener and --real-ip-header proxy_protocol takes a trusted load
// balancer's client address from the PROXY header, and refuses the flag
// where kiln does not read the PROXY protocol.
func TestGatewayRunProxyProtocol(t *testing.T) {
	var stderr strings.Builder
	code := runProgram(context.Background(), []string{"run", "--database", "off", "--proxy-listen", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0 proxy_protocol", "--status-listen", "off", "--proxy-access-log", "off"}, io.Discard, &stderr)
	if code == exitcode.OK || !strings.Contains(stderr.String(), "proxy_protocol flag is supported on --proxy-listen entries only") {
		t.Errorf("proxy_protocol on --admin-listen: exit %d, stderr %q", code, stderr.String())
	}
	expectUsageError(t, []string{"run", "--database", "off", "--proxy-protocol-timeout", "0s"}, "--proxy-protocol-timeout 0s is not valid")

	up := upstreamEcho(t)
	file := apiConfigFile(t, "http://"+up)
	proxy, admin, _ := startGatewayCLI(t, "--database", "off", "--declarative-config", file,
		"--proxy-listen", "127.0.0.1:0 proxy_protocol", "--trusted-ips", "127.0.0.1", "--real-ip-header", "proxy_protocol",
		"--proxy-protocol-timeout", "300ms")

	var root struct {
		Configuration struct {
			Header    string           `json:"real_ip_header"`
			Listeners []map[string]any `json:"proxy_listeners"`
		} `json:"configuration"`
	}
	resp, err := http.Get(admin + "/")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&root)
	_ = resp.Body.Close()
	if c := root.Configuration; err != nil || c.Header != "proxy_protocol" || len(c.Listeners) != 1 || c.Listeners[0]["proxy_protocol"] != true {
		t.Errorf("GET / configuration %+v (%v), want real_ip_header and the listener's proxy_protocol", c, err)
	}

	c, err := net.DialTimeout("tcp", strings.TrimPrefix(proxy, "http://"), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(c, "PROXY TCP4 198.51.100.20 127.0.0.1 40000 8000\r\nGET /api/x HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var got struct {
		Headers http.Header `json:"headers"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("upstream answer %q: %v", body, err)
	}
	for k, want := range map[string]string{"X-Real-Ip": "198.51.100.20", "X-Forwarded-For": "198.51.100.20"} {
		if got.Headers.Get(k) != want {
			t.Errorf("upstream %s = %q, want %q", k, got.Headers.Get(k), want)
		}
	}

	// A connection that never sends its PROXY header is closed once
	// --proxy-protocol-timeout (300ms here, 60 s by default) has passed.
	silent, err := net.DialTimeout("tcp", strings.TrimPrefix(proxy, "http://"), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = silent.Close() }()
	_ = silent.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := silent.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("a connection without a PROXY header: read %d bytes, %v; want it closed after --proxy-protocol-timeout", n, err)
	}
}
