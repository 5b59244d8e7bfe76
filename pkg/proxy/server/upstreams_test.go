package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
	"github.com/kiln-dev/kiln/pkg/proxy/tcptest"
)

const upID = "dddddddd-0000-4000-8000-000000000001"

func TestUpstreamBalancingRetriesAndHealth(t *testing.T) {
	a := proxytest.StartEcho(t, "a")
	b := proxytest.StartEcho(t, "b")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	_ = ln.Close()
	e, gw := proxytest.StartGateway(t, nil)
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"upstreams": {{"id": upID, "name": "backend", "healthchecks": map[string]any{
			"passive": map[string]any{"unhealthy": map[string]any{"tcp_failures": 1}},
		}}},
		"targets": {
			{"upstream": map[string]any{"id": upID}, "target": a, "weight": 100},
			{"upstream": map[string]any{"id": upID}, "target": b, "weight": 300},
			{"upstream": map[string]any{"id": upID}, "target": dead, "weight": 100},
		},
		"services": {{"id": svc, "host": "backend", "port": 80}},
		"routes":   {{"paths": []any{"/"}, "service": map[string]any{"id": svc}}},
	})); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for i := 0; i < 200; i++ {
		resp, body := proxytest.Get(t, gw+"/x", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s (a dead target must be retried on another one)", i, resp.StatusCode, body)
		}
		got := proxytest.DecodeEcho(t, body)
		counts[got.Server]++
		if strings.Contains(got.Host, "backend") {
			t.Fatalf("Host header %q names the upstream, want the target", got.Host)
		}
	}
	// a:b = 1:3 among the live targets (the dead one is retried away and
	// then marked unhealthy by the passive check).
	if counts["a"] < 30 || counts["a"] > 70 || counts["b"] < 130 {
		t.Fatalf("distribution %v, want about a=50 b=150", counts)
	}
	health, overall := e.Balancers().UpstreamHealth(upID)
	if health[dead] != "UNHEALTHY" || health[a] != "HEALTHY" || overall != "HEALTHY" {
		t.Fatalf("health %v %s", health, overall)
	}
}

func TestHTTPSUpstream(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "tls upstream saw "+r.URL.Path)
	}))
	defer up.Close()
	host, port := proxytest.HostPort(t, strings.TrimPrefix(up.URL, "https://"))
	e, gw := proxytest.StartGateway(t, nil)
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": svc, "protocol": "https", "host": host, "port": port, "path": "/base"}},
		"routes":   {{"paths": []any{"/s"}, "service": map[string]any{"id": svc}}},
	})); err != nil {
		t.Fatal(err)
	}
	resp, body := proxytest.Get(t, gw+"/s/x", nil)
	if resp.StatusCode != 200 || string(body) != "tls upstream saw /base/x" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestNoHealthyTarget(t *testing.T) {
	e, gw := proxytest.StartGateway(t, nil)
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"upstreams": {{"id": upID, "name": "empty"}},
		"services":  {{"id": svc, "host": "empty"}},
		"routes":    {{"paths": []any{"/"}, "service": map[string]any{"id": svc}}},
	})); err != nil {
		t.Fatal(err)
	}
	resp, body := proxytest.Get(t, gw+"/", nil)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "failure to get a peer from the ring-balancer") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestReconfigureUnderLoad(t *testing.T) {
	// Requests keep flowing while the configuration is swapped repeatedly:
	// none may fail or see a half-applied configuration.
	up := proxytest.StartEcho(t, "up")
	host, port := proxytest.HostPort(t, up)
	e, gw := proxytest.StartGateway(t, nil)
	cfgFor := func(v uint64) map[string][]map[string]any {
		return map[string][]map[string]any{
			"services": {{"id": svc, "host": host, "port": port, "path": "/v"}},
			"routes": {
				{"id": "dddddddd-0000-4000-8000-00000000000a", "paths": []any{"/stable"}, "service": map[string]any{"id": svc}},
				{"name": "churn", "paths": []any{"/churn" + strings.Repeat("x", int(v%3))}, "service": map[string]any{"id": svc}},
			},
		}
	}
	if err := e.Update(proxytest.BuildConfig(t, 1, cfgFor(1))); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errs := make(chan string, 100)
	done := make(chan struct{})
	var served atomic.Int64
	go func() {
		defer close(done)
		client := &http.Client{}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := client.Get(gw + "/stable/x")
			if err != nil {
				errs <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), `"uri":"/v/x"`) {
				errs <- fmt.Sprintf("request %d: %d %s", i, resp.StatusCode, b)
				return
			}
			served.Add(1)
		}
	}()
	for v := uint64(2); v < 60; v++ {
		if err := e.Update(proxytest.BuildConfig(t, v, cfgFor(v))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-done
	select {
	case msg := <-errs:
		t.Fatal(msg)
	default:
	}
	if served.Load() < 20 {
		t.Fatalf("only %d requests ran during the updates", served.Load())
	}
	if e.Config().Version != 59 {
		t.Fatalf("serving version %d", e.Config().Version)
	}
}

func TestDisabledServiceIsNotRouted(t *testing.T) {
	up := proxytest.StartEcho(t, "up")
	host, port := proxytest.HostPort(t, up)
	e, gw := proxytest.StartGateway(t, nil)
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": svc, "host": host, "port": port, "enabled": false}},
		"routes":   {{"paths": []any{"/"}, "service": map[string]any{"id": svc}}},
	})); err != nil {
		t.Fatal(err)
	}
	if resp, body := proxytest.Get(t, gw+"/x", nil); resp.StatusCode != 404 {
		t.Fatalf("route of a disabled service: %d %s", resp.StatusCode, body)
	}
}

// TestClosedPooledConnectionRetried: an upstream that answers one request
// per connection and then closes it (without Connection: close) leaves
// kiln's pool with connections that are dead by the time they are reused;
// each reuse must fail over to a fresh connection, not reach the client.
func TestClosedPooledConnectionRetried(t *testing.T) {
	var served atomic.Int64
	gw := rawUpstreamGateway(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_ = req.Body.Close()
		n := served.Add(1)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d", len(strconv.FormatInt(n, 10)), n)
	})
	for i := 0; i < 5; i++ {
		// From the second request on, the pooled connection kiln picks
		// was closed by the upstream (retries: 0, so only the stale
		// connection fail-over can save the request).
		resp, body := proxytest.Get(t, gw+"/x", nil)
		if resp.StatusCode != 200 || string(body) != strconv.FormatInt(served.Load(), 10) {
			t.Fatalf("request %d: %d %q (upstream served %d)", i, resp.StatusCode, body, served.Load())
		}
	}
}

// TestStalePoolAfterBurst: after a burst, the pool holds many idle
// connections; when the upstream's keep-alive timeout closes them all, the
// next requests must not fail on them one after another (nginx, too, retries
// a failed cached connection without counting it as a try).
func TestStalePoolAfterBurst(t *testing.T) {
	var mu sync.Mutex
	var conns []net.Conn
	release := make(chan struct{})
	gw := rawUpstreamGateway(t, func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_ = req.Body.Close()
			if req.URL.Path == "/burst" {
				<-release // hold every burst request so each gets its own connection
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	// A burst of 20 concurrent requests leaves 20 idle connections.
	const burst = 20
	var wg sync.WaitGroup
	for i := 0; i < burst; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(gw + "/burst")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}()
	}
	proxytest.WaitFor(t, "the burst to reach the upstream", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(conns) >= burst
	})
	close(release)
	wg.Wait()
	// The upstream's keep-alive timeout passes: it closes every connection.
	mu.Lock()
	for _, c := range conns {
		_ = c.Close()
	}
	mu.Unlock()
	for i := 0; i < 5; i++ {
		resp, body := proxytest.Get(t, gw+"/after", nil)
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("request %d after the upstream closed its idle connections: %d %q", i, resp.StatusCode, body)
		}
	}
}

// TestIdleClosedConnectionNotReused: a pooled connection the upstream closed
// while it sat idle (its keep-alive timeout) is found closed before reuse,
// so even a POST, which kiln never sends twice once its body went out, gets
// through; and an idempotent PUT whose body went out on a connection found
// closed only by the failed attempt is sent again with its body.
func TestIdleClosedConnectionNotReused(t *testing.T) {
	var closed atomic.Int64
	gw := rawUpstreamGateway(t, func(c net.Conn) {
		defer closed.Add(1)
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		// Keep-alive in the headers, but the connection closes right
		// after this response: one request per connection.
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s %s", len(req.Method)+1+len(body), req.Method, body)
	})
	send := func(method, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, gw+"/x", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != method+" "+body {
			t.Fatalf("%s after the upstream closed the pooled connection: %d %q", method, resp.StatusCode, got)
		}
	}
	for i := 0; i < 3; i++ {
		before := closed.Load()
		send("PUT", strings.Repeat("p", 5000)) // replayed if it meets a closed connection
		proxytest.WaitFor(t, "the upstream to close the connection", func() bool { return closed.Load() > before })
		time.Sleep(2 * server.PoolPeekAfterForTest)
		send("POST", "form=1") // the pooled connection is idle and closed: found by the peek
	}
}

// rawUpstreamGateway starts a TCP upstream whose every accepted connection
// is handed to serve (in its own goroutine), and a gateway proxying / to it
// with retries: 0, so only the stale-connection fail-over can save a
// request. It returns the gateway's URL.
func rawUpstreamGateway(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	upstream := tcptest.Serve(t, serve)
	host, port := proxytest.HostPort(t, upstream)
	e, gw := proxytest.StartGateway(t, nil)
	cfg := proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": "33333333-3333-4333-8333-333333333333", "host": host, "port": port, "retries": 0}},
		"routes":   {{"paths": []any{"/"}, "service": map[string]any{"id": "33333333-3333-4333-8333-333333333333"}}},
	})
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	return gw
}
