package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
)

func TestProxyBasicsAndKongHeaders(t *testing.T) {
	up := proxytest.StartEcho(t, "a")
	host, port := proxytest.HostPort(t, up)
	e, gw := proxytest.StartGateway(t, nil)
	cfg := proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": "5b1484f2-5209-49d9-b43e-92ba09dd9d52", "name": "httpservice", "host": host, "port": port}},
		"routes": {
			{"name": "httpbinroute", "paths": []any{"/httpbin"}, "service": map[string]any{"id": "5b1484f2-5209-49d9-b43e-92ba09dd9d52"}},
			{"name": "nostrip", "paths": []any{"/keep"}, "strip_path": false, "preserve_host": true, "service": map[string]any{"id": "5b1484f2-5209-49d9-b43e-92ba09dd9d52"}},
			{"name": "noservice", "paths": []any{"/orphan"}},
			{"name": "secure", "paths": []any{"/secure"}, "protocols": []any{"https"}, "service": map[string]any{"id": "5b1484f2-5209-49d9-b43e-92ba09dd9d52"}},
			{"name": "redirect", "paths": []any{"/redir"}, "protocols": []any{"https"}, "https_redirect_status_code": 301, "service": map[string]any{"id": "5b1484f2-5209-49d9-b43e-92ba09dd9d52"}},
			{"name": "grpc", "paths": []any{"/grpc"}, "protocols": []any{"grpc"}, "service": map[string]any{"id": "5b1484f2-5209-49d9-b43e-92ba09dd9d52"}},
		},
	})
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}

	resp, body := proxytest.Get(t, gw+"/httpbin/get?x=1", map[string]string{"X-Forwarded-For": "10.0.0.9", "Proxy": "http://evil.example:8080"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := proxytest.DecodeEcho(t, body)
	if got.URI != "/get?x=1" {
		t.Errorf("upstream uri %q, want /get?x=1", got.URI)
	}
	if got.Host != up {
		t.Errorf("upstream Host %q, want %q", got.Host, up)
	}
	h := http.Header(got.Header)
	for k, want := range map[string]string{
		"X-Forwarded-For":    "10.0.0.9, 127.0.0.1",
		"X-Forwarded-Proto":  "http",
		"X-Forwarded-Host":   "127.0.0.1",
		"X-Forwarded-Path":   "/httpbin/get",
		"X-Forwarded-Prefix": "/httpbin",
		"X-Real-Ip":          "127.0.0.1",
		"Via":                "1.1 kong/3.10.0",
	} {
		if h.Get(k) != want {
			t.Errorf("upstream %s = %q, want %q", k, h.Get(k), want)
		}
	}
	if v, sent := h["Proxy"]; sent {
		t.Errorf("upstream got Proxy: %q (httpoxy)", v)
	}
	if len(h.Get("X-Kong-Request-Id")) != 32 || h.Get("X-Kong-Request-Id") != resp.Header.Get("X-Kong-Request-Id") {
		t.Errorf("request id upstream %q client %q", h.Get("X-Kong-Request-Id"), resp.Header.Get("X-Kong-Request-Id"))
	}
	for _, k := range []string{"X-Kong-Upstream-Latency", "X-Kong-Proxy-Latency"} {
		if resp.Header.Get(k) == "" {
			t.Errorf("client response lacks %s", k)
		}
	}
	if resp.Header.Get("Via") != "1.1 kong/3.10.0" || resp.Header.Get("X-Upstream") != "a" {
		t.Errorf("client headers %v", resp.Header)
	}

	// strip_path=false, preserve_host=true
	_, body = proxytest.Get(t, gw+"/keep/x", map[string]string{"Host": "client.example"})
	got = proxytest.DecodeEcho(t, body)
	if got.URI != "/keep/x" || got.Host != "client.example" {
		t.Errorf("no-strip route: uri %q host %q", got.URI, got.Host)
	}

	// Kong's error bodies.
	resp, body = proxytest.Get(t, gw+"/nothing", nil)
	if resp.StatusCode != 404 || !strings.Contains(string(body), `"message":"no Route matched with those values"`) || !strings.Contains(string(body), `"request_id"`) {
		t.Errorf("404: %d %s", resp.StatusCode, body)
	}
	resp, body = proxytest.Get(t, gw+"/orphan", nil)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "no Service found with those values") {
		t.Errorf("route without service: %d %s", resp.StatusCode, body)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	rresp, err := noFollow.Get(gw + "/redir/x?q=1")
	if err != nil {
		t.Fatal(err)
	}
	rresp.Body.Close()
	if rresp.StatusCode != 301 || !strings.HasPrefix(rresp.Header.Get("Location"), "https://127.0.0.1/redir/x?q=1") {
		t.Errorf("https redirect: %d %q", rresp.StatusCode, rresp.Header.Get("Location"))
	}
	resp, body = proxytest.Get(t, gw+"/grpc", nil)
	if resp.StatusCode != 415 || !strings.Contains(string(body), "Non-gRPC request matched gRPC route") {
		t.Errorf("plain request on a gRPC route: %d %s", resp.StatusCode, body)
	}
	resp, body = proxytest.Get(t, gw+"/grpc", map[string]string{"Content-Type": "application/grpc"})
	if resp.StatusCode != 426 || !strings.Contains(string(body), "Please use HTTP2 protocol") {
		t.Errorf("gRPC over HTTP/1.1: %d %s", resp.StatusCode, body)
	}
	resp, body = proxytest.Get(t, gw+"/secure", nil)
	if resp.StatusCode != 426 || !strings.Contains(string(body), "Please use HTTPS protocol") {
		t.Errorf("https-only route over http: %d %s", resp.StatusCode, body)
	}
}

func TestUpstreamErrors(t *testing.T) {
	// A port nobody listens on: connection refused → 502 after retries.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	_ = ln.Close()
	host, port := proxytest.HostPort(t, dead)
	up := proxytest.StartEcho(t, "slow")
	uh, uport := proxytest.HostPort(t, up)
	e, gw := proxytest.StartGateway(t, nil)
	cfg := proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {
			{"id": "11111111-1111-4111-8111-111111111111", "name": "dead", "host": host, "port": port, "retries": 2},
			{"id": "22222222-2222-4222-8222-222222222222", "name": "slow", "host": uh, "port": uport, "read_timeout": 100},
		},
		"routes": {
			{"paths": []any{"/dead"}, "service": map[string]any{"id": "11111111-1111-4111-8111-111111111111"}},
			{"paths": []any{"/slow"}, "strip_path": false, "service": map[string]any{"id": "22222222-2222-4222-8222-222222222222"}},
		},
	})
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	resp, body := proxytest.Get(t, gw+"/dead", nil)
	if resp.StatusCode != 502 || !strings.HasPrefix(string(body), "An invalid response was received from the upstream server\nrequest_id: ") ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("dead upstream: %d %q %s", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
	resp, body = proxytest.Get(t, gw+"/dead", map[string]string{"Accept": "application/json"})
	if resp.StatusCode != 502 || !strings.Contains(string(body), `"message":"An invalid response was received from the upstream server"`) {
		t.Errorf("dead upstream (json): %d %s", resp.StatusCode, body)
	}
	resp, body = proxytest.Get(t, gw+"/slow", nil)
	if resp.StatusCode != 504 || !strings.Contains(string(body), "The upstream server is timing out") {
		t.Errorf("slow upstream: %d %s", resp.StatusCode, body)
	}
}

// tunnelUpstream starts an upstream that upgrades requests asking for
// websocket and echoes lines through the tunnel; other requests get a
// body in three chunks, the last two only once release is closed.
func tunnelUpstream(t *testing.T, release <-chan struct{}) (host string, port float64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "websocket" {
			hj := w.(http.Hijacker)
			c, brw, _ := hj.Hijack()
			defer c.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			_ = brw.Flush()
			for {
				line, err := brw.ReadString('\n')
				if err != nil {
					return
				}
				_, _ = brw.WriteString("echo " + line)
				_ = brw.Flush()
			}
		}
		// The rest of the body waits until the client has the first chunk
		// (or the safety timer gave up on it), so a proxy that buffers
		// the body cannot deliver chunk 0 before release closes.
		fl := w.(http.Flusher)
		fmt.Fprintf(w, "chunk 0\n")
		fl.Flush()
		<-release
		for i := 1; i < 3; i++ {
			fmt.Fprintf(w, "chunk %d\n", i)
			fl.Flush()
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return proxytest.HostPort(t, ln.Addr().String())
}

// checkTunnel asks for a WebSocket upgrade on c, a connection to a
// gateway routing to tunnelUpstream, and checks that a line comes back
// through the tunnel; it returns the reader of c's tunnel.
func checkTunnel(t *testing.T, c net.Conn) *bufio.Reader {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprintf(c, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo hello\n" {
		t.Fatalf("tunnel echo %q %v", line, err)
	}
	return br
}

func TestWebSocketAndStreaming(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseBody := func() { releaseOnce.Do(func() { close(release) }) }
	defer releaseBody()
	host, port := tunnelUpstream(t, release)
	e, gw := proxytest.StartGateway(t, nil)
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": "33333333-3333-4333-8333-333333333333", "host": host, "port": port}},
		"routes":   {{"paths": []any{"/"}, "service": map[string]any{"id": "33333333-3333-4333-8333-333333333333"}}},
	})); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkTunnel(t, c)

	// Streaming: the first chunk must arrive before the upstream finishes.
	// The safety timer only keeps a buffering proxy from hanging the test.
	safety := time.AfterFunc(30*time.Second, releaseBody)
	defer safety.Stop()
	sresp, err := http.Get(gw + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	first, err := bufio.NewReader(sresp.Body).ReadString('\n')
	if err != nil || first != "chunk 0\n" {
		t.Fatalf("first chunk %q %v", first, err)
	}
	select {
	case <-release:
		t.Error("the first chunk arrived only after the upstream finished: the response was buffered")
	default:
	}
	releaseBody()
	rest, _ := io.ReadAll(sresp.Body)
	if !strings.Contains(string(rest), "chunk 2") {
		t.Errorf("rest %q", rest)
	}
}

// blackHole returns the address of a listener that completes no more
// handshakes: its accept queue (backlog 0) is full and never drained, so
// new connections wait for a SYN-ACK that does not come.
func blackHole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			return addr // the queue is full
		}
		t.Cleanup(func() { _ = c.Close() })
		if i == 8 {
			t.Fatalf("%s keeps completing handshakes", addr)
		}
	}
}

// TestUpstreamConnectTimeout: a connect that does not complete within the
// service's connect_timeout is Kong's 504, reported quickly.
func TestUpstreamConnectTimeout(t *testing.T) {
	host, port := proxytest.HostPort(t, blackHole(t))
	e, gw := proxytest.StartGateway(t, nil)
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": "33333333-3333-4333-8333-333333333333", "host": host, "port": port, "connect_timeout": 200, "retries": 1}},
		"routes":   {{"paths": []any{"/hole"}, "service": map[string]any{"id": "33333333-3333-4333-8333-333333333333"}}},
	})); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, body := proxytest.Get(t, gw+"/hole", nil)
	took := time.Since(start)
	if resp.StatusCode != 504 || !strings.Contains(string(body), "The upstream server is timing out") {
		t.Fatalf("connect timeout: %d %s", resp.StatusCode, body)
	}
	if took < 350*time.Millisecond || took > 3*time.Second {
		t.Fatalf("two connects of 200 ms took %v", took)
	}
}

// TestConnectionNamedFieldsNotForwarded: the fields a client's Connection
// header names (in any case, in one or several values) are hop-by-hop and
// do not reach the upstream, nor do Connection and Keep-Alive themselves;
// other fields do.
func TestConnectionNamedFieldsNotForwarded(t *testing.T) {
	_, gw, _ := echoGateway(t)
	out := raw(t, strings.TrimPrefix(gw, "http://"), "GET /hop HTTP/1.1\r\nHost: x\r\nConnection: x-secret, close\r\nConnection: X-Other\r\n"+
		"Keep-Alive: timeout=5\r\nX-Secret: s\r\nX-Other: o\r\nX-Kept: k\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	h := http.Header(proxytest.DecodeEcho(t, body).Header)
	for _, k := range []string{"X-Secret", "X-Other", "Keep-Alive", "Connection"} {
		if v := h.Get(k); v != "" {
			t.Errorf("upstream got %s: %q, a hop-by-hop field", k, v)
		}
	}
	if h.Get("X-Kept") != "k" {
		t.Errorf("upstream X-Kept = %q, want k", h.Get("X-Kept"))
	}
}
