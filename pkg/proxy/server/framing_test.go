package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
	"github.com/kiln-dev/kiln/pkg/syncbuf"
)

// TestRefusedRequests sends requests nginx, and so Kong, refuses, foremost
// those whose length two HTTP parsers could read differently (the ground
// of request smuggling): kiln refuses them too, before anything reaches
// the upstream.
func TestRefusedRequests(t *testing.T) {
	var reached atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(up.Close)
	accessLog := &syncbuf.Buffer{}
	e, gw := proxytest.StartGatewayOptions(t, server.Options{AccessLog: accessLog})
	routeAllTo(t, e, strings.TrimPrefix(up.URL, "http://"))
	addr := strings.TrimPrefix(gw, "http://")
	const head = "POST /x HTTP/1.1\r\nHost: a\r\n"
	cases := []struct{ name, req, status string }{
		{"Content-Length with a sign", head + "Content-Length: +3\r\n\r\nabc", "400"},
		{"Content-Length minus zero", head + "Content-Length: -0\r\n\r\n", "400"},
		{"Content-Length as a list", head + "Content-Length: 3, 3\r\n\r\nabc", "400"},
		{"Content-Length in hex", head + "Content-Length: 0x3\r\n\r\nabc", "400"},
		{"Content-Length too long", head + "Content-Length: 0000000000000000003\r\n\r\nabc", "400"},
		{"two Content-Lengths", head + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "400"},
		{"Content-Length and chunked", head + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"chunked after a vertical tab", head + "Transfer-Encoding:\vchunked\r\n\r\n0\r\n\r\n", "501"},
		{"chunked twice", head + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", "501"},
		{"two Transfer-Encodings", head + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "501"},
		{"chunked in HTTP/1.0", "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "501"},
		{"space before the colon", head + "Content-Length : 3\r\n\r\nabc", "400"},
		// Hosts nginx refuses: they would reach routing, the logs,
		// X-Forwarded-Host and, with preserve_host, the upstream.
		{"host with dot dot", "GET /x HTTP/1.1\r\nHost: ..\r\n\r\n", "400"},
		{"host with a slash", "GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n", "400"},
		{"host with a space", "GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", "400"},
		{"empty host", "GET /x HTTP/1.1\r\nHost: \r\n\r\n", "400"},
		{"absolute target with a bad host", "GET http://a..b/x HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
		// Paths that climb above the root, targets that are not paths.
		{"path above the root", "GET /a/../../x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "400"},
		{"encoded dots above the root", "GET /%2e%2E/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "400"},
		{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", "405"},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			before := reached.Load()
			out := raw(t, addr, tt.req)
			if !strings.HasPrefix(out, "HTTP/1.1 "+tt.status+" ") {
				t.Fatalf("answer %q, want %s", firstLine(out), tt.status)
			}
			if n := strings.Count(out, "HTTP/1.1 "); n != 1 {
				t.Fatalf("%d answers on the connection, want 1 and the connection closed:\n%s", n, out)
			}
			if reached.Load() != before {
				t.Fatal("the request reached the upstream")
			}
		})
	}
	// Every refusal is in the access log, as nginx logs its 400s, with
	// what could be read of the request line.
	var logged []string
	for _, line := range strings.Split(strings.TrimSpace(accessLog.String()), "\n") {
		var ent struct {
			Method, URI string
			Status      int
		}
		if err := json.Unmarshal([]byte(line), &ent); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		if ent.Method == "" || ent.URI == "" {
			t.Errorf("access log line without the request line: %s", line)
		}
		logged = append(logged, strconv.Itoa(ent.Status))
	}
	var want []string
	for _, tt := range cases {
		want = append(want, tt.status)
	}
	slices.Sort(logged)
	slices.Sort(want)
	if !slices.Equal(logged, want) {
		t.Errorf("access log statuses %v, want %v", logged, want)
	}
	// And counted, as nginx counts them (/status total_requests).
	if n := e.Metrics().TotalRequests.Load(); n != int64(len(cases)) {
		t.Errorf("total_requests %d after %d refused requests", n, len(cases))
	}

	// The same framings that are well-formed pass.
	out := raw(t, addr, head+"Content-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
	if !strings.HasPrefix(out, "HTTP/1.1 200 ") {
		t.Fatalf("two equal Content-Lengths: %q", firstLine(out))
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// TestClientBodyErrors checks that a request body the client breaks off
// or malforms is answered 400 and the connection closed, not counted
// against the upstream: neither retried nor a passive health check
// failure (a client must not be able to mark targets unhealthy).
func TestClientBodyErrors(t *testing.T) {
	up := proxytest.StartEcho(t, "a")
	e, gw := proxytest.StartGateway(t, nil)
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"upstreams": {{"id": upID, "name": "backend", "healthchecks": map[string]any{
			"passive": map[string]any{"unhealthy": map[string]any{"tcp_failures": 1, "http_failures": 1, "timeouts": 1}},
		}}},
		"targets":  {{"upstream": map[string]any{"id": upID}, "target": up}},
		"services": {{"id": svc, "host": "backend", "port": 80}},
		"routes":   {{"paths": []any{"/"}, "service": map[string]any{"id": svc}}},
	})); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(gw, "http://")
	const head = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tt := range []struct{ name, body string }{
		{"chunk size with a sign", "+3\r\nabc\r\n0\r\n\r\n"},
		{"chunk size that overflows", "ffffffffffffffffff\r\nabc\r\n0\r\n\r\n"},
		{"chunk not followed by CRLF", "3\r\nabcdef\r\n0\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := raw(t, addr, head+tt.body)
			if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "Bad request") {
				t.Fatalf("answer %q, want Kong's 400:\n%s", firstLine(out), out)
			}
			if !strings.Contains(out, "\r\nConnection: close\r\n") || strings.Count(out, "HTTP/1.1 ") != 1 {
				t.Fatalf("the connection was not closed after the answer:\n%s", out)
			}
		})
	}
	// A client that goes away in the middle of its body.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\npartial")
	_ = c.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("a body cut short: %d, want 400 (or no answer)", resp.StatusCode)
		}
	}
	_ = c.Close()

	health, _ := e.Balancers().UpstreamHealth(upID)
	if health[up] != "HEALTHY" {
		t.Fatalf("target health %v after client body errors: the upstream was blamed", health)
	}
	if resp, body := proxytest.Get(t, gw+"/after", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("a good request afterwards: %d %s", resp.StatusCode, body)
	}
}

// TestUpstreamResponseWithBothFramings checks that a response carrying both
// Content-Length and chunked is read as chunked (Content-Length dropped)
// and that its connection, which may be out of step with the upstream, is
// not used again.
func TestUpstreamResponseWithBothFramings(t *testing.T) {
	var conns atomic.Int64
	gw := rawUpstreamGateway(t, func(c net.Conn) {
		defer c.Close()
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"); err != nil {
				return
			}
		}
	})
	for i := 0; i < 3; i++ {
		resp, body := proxytest.Get(t, gw+"/x", nil)
		if resp.StatusCode != http.StatusOK || string(body) != "abc" || resp.ContentLength == 50 {
			t.Fatalf("request %d: %d %q (Content-Length %d)", i, resp.StatusCode, body, resp.ContentLength)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d upstream connections for 3 requests, want 3: a connection was reused after a response with both framings", n)
	}
}
