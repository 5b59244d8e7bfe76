package server_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/pki"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
)

const svc = "cccccccc-0000-4000-8000-000000000001"

func echoGateway(t *testing.T) (*server.Engine, string, string) {
	t.Helper()
	return echoGatewayOptions(t, server.Options{})
}

// echoGatewayOptions is echoGateway with the engine's options.
func echoGatewayOptions(t *testing.T, opts server.Options) (*server.Engine, string, string) {
	t.Helper()
	up := proxytest.StartEcho(t, "up")
	e, gw := proxytest.StartGatewayOptions(t, opts)
	routeAllTo(t, e, up)
	return e, gw, up
}

// routeAllTo configures e to proxy every path, unchanged, to the upstream
// at addr.
func routeAllTo(t testing.TB, e *server.Engine, addr string) {
	t.Helper()
	host, port := proxytest.HostPort(t, addr)
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": svc, "host": host, "port": port}},
		"routes":   {{"paths": []any{"/"}, "strip_path": false, "service": map[string]any{"id": svc}}},
	})); err != nil {
		t.Fatal(err)
	}
}

// raw sends bytes on a fresh connection and returns everything read until
// the server closes or the deadline passes.
func raw(t *testing.T, addr, data string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, data); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestHTTP1FastPath(t *testing.T) {
	_, gw, _ := echoGateway(t)
	addr := strings.TrimPrefix(gw, "http://")
	cases := []struct {
		name, req string
		want      []string
	}{
		{"pipelined requests answered in order",
			"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{`"uri":"/a"`, `"uri":"/b"`}},
		{"HTTP/1.0 closes by default", "GET /ten HTTP/1.0\r\n\r\n", []string{"HTTP/1.0 200 OK", `"uri":"/ten"`}},
		{"chunked request body", "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
			[]string{`"body":"hello world"`}},
		{"expect 100-continue", "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nok",
			[]string{"HTTP/1.1 100 Continue", `"body":"ok"`}},
		{"HEAD has no body", "HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", []string{"HTTP/1.1 200 OK"}},
		{"malformed request line", "NOT A REQUEST\r\n\r\n", []string{"HTTP/1.1 400 Bad Request"}},
		{"missing Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", []string{"HTTP/1.1 400 Bad Request"}},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", []string{"HTTP/1.1 494 ", "Request header or cookie too large"}},
		{"many headers too large together", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Big: "+strings.Repeat("a", 6<<10)+"\r\n", 12) + "\r\n", []string{"HTTP/1.1 494 "}},
		{"request line too long", "GET /" + strings.Repeat("a", 70<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 414 Request URI Too Long", "URI too long"}},
		{"header line folding rejected", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"control character in the target", "GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n", []string{"HTTP/1.1 400"}},
		{"unsupported HTTP version", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", []string{"505"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := raw(t, addr, c.req)
			last := 0
			for _, w := range c.want {
				i := strings.Index(out[last:], w)
				if i < 0 {
					t.Fatalf("answer lacks %q (in order):\n%s", w, out)
				}
				last += i
			}
			if c.name == "HEAD has no body" && strings.Contains(out, `"uri"`) {
				t.Fatalf("HEAD answer has a body:\n%s", out)
			}
		})
	}
}

func TestH2CPriorKnowledge(t *testing.T) {
	e, gw, _ := echoGateway(t)
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	resp, err := client.Get(gw + "/h2c")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || !strings.Contains(string(body), `"uri":"/h2c"`) {
		t.Fatalf("proto %s body %s", resp.Proto, body)
	}
	got := proxytest.DecodeEcho(t, body)
	if v := http.Header(got.Header).Get("Via"); v != "2 kong/3.10.0" {
		t.Fatalf("Via for an HTTP/2 request: %q", v)
	}
	// Handed from the HTTP/1.x server to net/http's, the connection
	// counts once as accepted, and as active until it closes.
	m := e.Metrics()
	if a, n := m.ConnsAccepted.Load(), m.ConnsActive.Load(); a != 1 || n != 1 {
		t.Errorf("an open h2c connection counts %d accepted, %d active; want 1, 1", a, n)
	}
	// A host nginx refuses is refused over HTTP/2 too.
	req, err := http.NewRequest(http.MethodGet, gw+"/h2c", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "a..b"
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("HTTP/2 request for host a..b: %s %d, want 400", resp.Proto, resp.StatusCode)
	}
	// CONNECT is refused, not routed, over HTTP/2 as over HTTP/1.1.
	req, err = http.NewRequest(http.MethodConnect, gw, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "a.example:443"
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("HTTP/2 CONNECT: %s %d, want 405", resp.Proto, resp.StatusCode)
	}
	tr.CloseIdleConnections()
	proxytest.WaitFor(t, "the closed h2c connection to stop counting as active", func() bool { return m.ConnsActive.Load() == 0 })
}

func selfSignedPEM(t *testing.T, names ...string) (certPEM, keyPEM string) {
	t.Helper()
	c, k, err := pki.SelfSignedPEM(pki.Options{CommonName: names[0], Hosts: names, Usage: pki.ServerAuth, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return string(c), string(k)
}

func TestTLSTerminationSNIAndHTTP2(t *testing.T) {
	up := proxytest.StartEcho(t, "up")
	host, port := proxytest.HostPort(t, up)
	e := proxytest.NewEngine(t, server.Options{})
	certPEM, keyPEM := selfSignedPEM(t, "api.example.test")
	wildPEM, wildKey := selfSignedPEM(t, "*.wild.test")
	const certID, wildID = "cccccccc-0000-4000-8000-0000000000c1", "cccccccc-0000-4000-8000-0000000000c2"
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"certificates": {{"id": certID, "cert": certPEM, "key": keyPEM}, {"id": wildID, "cert": wildPEM, "key": wildKey}},
		"snis":         {{"name": "api.example.test", "certificate": map[string]any{"id": certID}}, {"name": "*.wild.test", "certificate": map[string]any{"id": wildID}}},
		"services":     {{"id": svc, "host": host, "port": port}},
		"routes": {
			{"name": "secure", "paths": []any{"/"}, "protocols": []any{"https"}, "snis": []any{"api.example.test"}, "service": map[string]any{"id": svc}},
		},
	})); err != nil {
		t.Fatal(err)
	}
	addr, _ := proxytest.ServeProxy(t, e, server.ListenSpec{SSL: true, HTTP2: true})

	for _, c := range []struct {
		sni, wantCN string
	}{{"api.example.test", "api.example.test"}, {"x.wild.test", "*.wild.test"}, {"other.test", "localhost"}} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: c.sni, InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // test inspects the served certificate
		if err != nil {
			t.Fatal(err)
		}
		st := conn.ConnectionState()
		conn.Close()
		if cn := st.PeerCertificates[0].Subject.CommonName; cn != c.wantCN {
			t.Errorf("SNI %s: served %q, want %q", c.sni, cn, c.wantCN)
		}
		if st.NegotiatedProtocol != "h2" {
			t.Errorf("ALPN %q, want h2", st.NegotiatedProtocol)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(certPEM))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "api.example.test"}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	resp, err := client.Get(fmt.Sprintf("https://%s/tls", addr))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got := proxytest.DecodeEcho(t, body)
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || http.Header(got.Header).Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("https request: %d %s %v", resp.StatusCode, resp.Proto, got.Header)
	}
}

// TestTLSHTTP1: HTTP/1.1 over TLS goes through kiln's own HTTP/1.x server
// (on the event loops unless they are off), as cleartext does: keep-alive
// requests on one connection, routing by SNI and protocol, request bodies,
// a WebSocket tunnel (which takes its connection out of the loop), and
// clients that do not speak TLS, which must not stop the listener.
func TestTLSHTTP1(t *testing.T) {
	echoHost, echoPort := proxytest.HostPort(t, proxytest.StartEcho(t, "up"))
	released := make(chan struct{})
	close(released)
	tunHost, tunPort := tunnelUpstream(t, released)
	bulkHost, bulkPort := bulkUpstream(t)
	e := proxytest.NewEngine(t, server.Options{})
	certPEM, keyPEM := selfSignedPEM(t, "api.example.test")
	const certID, tunSvc, bulkSvc = "cccccccc-0000-4000-8000-0000000000c1", "33333333-3333-4333-8333-333333333333", "44444444-4444-4444-8444-444444444444"
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"certificates": {{"id": certID, "cert": certPEM, "key": keyPEM}},
		"snis":         {{"name": "api.example.test", "certificate": map[string]any{"id": certID}}},
		"services": {{"id": svc, "host": echoHost, "port": echoPort}, {"id": tunSvc, "host": tunHost, "port": tunPort},
			{"id": bulkSvc, "host": bulkHost, "port": bulkPort}},
		"routes": {
			{"name": "secure", "paths": []any{"/"}, "protocols": []any{"https"}, "snis": []any{"api.example.test"}, "strip_path": false, "service": map[string]any{"id": svc}},
			{"name": "ws", "paths": []any{"/ws"}, "protocols": []any{"https"}, "snis": []any{"api.example.test"}, "strip_path": false, "service": map[string]any{"id": tunSvc}},
			{"name": "bulk", "paths": []any{"/bulk"}, "protocols": []any{"https"}, "snis": []any{"api.example.test"}, "strip_path": false, "service": map[string]any{"id": bulkSvc}},
		},
	})); err != nil {
		t.Fatal(err)
	}
	addr, _ := proxytest.ServeProxy(t, e, server.ListenSpec{SSL: true, HTTP2: true})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(certPEM))
	dial := func(t *testing.T, sni string) *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, RootCAs: pool, NextProtos: []string{"http/1.1"}, InsecureSkipVerify: sni != "api.example.test"}) //nolint:gosec // the other names test routing, not the certificate
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Fatalf("ALPN %q, want http/1.1", p)
		}
		return c
	}

	t.Run("keep-alive requests, SNI and body", func(t *testing.T) {
		c := dial(t, "api.example.test")
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for i, req := range []string{
			"GET /one HTTP/1.1\r\nHost: api.example.test\r\n\r\n",
			"POST /two HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 5\r\n\r\nhello",
			"GET /three HTTP/1.1\r\nHost: api.example.test\r\n\r\n",
		} {
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatalf("request %d on the same connection: %v", i, err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d on the same connection: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got := proxytest.DecodeEcho(t, body)
			if resp.StatusCode != 200 || http.Header(got.Header).Get("X-Forwarded-Proto") != "https" || resp.Header.Get("Via") != "1.1 kong/3.10.0" {
				t.Fatalf("request %d: %d, upstream saw %v, answer headers %v", i, resp.StatusCode, got.Header, resp.Header)
			}
			if i == 1 && (got.Method != "POST" || got.Body != "hello") {
				t.Fatalf("body request reached the upstream as %s %q", got.Method, got.Body)
			}
		}
	})

	t.Run("a route for another SNI does not match", func(t *testing.T) {
		c := dial(t, "other.test")
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /one HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("request with SNI other.test: %d, want 404", resp.StatusCode)
		}
	})

	t.Run("WebSocket tunnel", func(t *testing.T) {
		checkTunnel(t, dial(t, "api.example.test"))
	})

	t.Run("large bodies both ways, with a client that stalls", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "api.example.test"}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: time.Minute}
		const size = 16 << 20 // more than loopback socket buffers hold
		want := sha256.Sum256(bulkBytes(size))
		for _, chunked := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(bulkBytes(size))
			if chunked {
				body = io.MultiReader(body) // length unknown: sent chunked
			}
			resp, err := client.Post("https://"+addr+"/bulk", "application/octet-stream", body)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != hex.EncodeToString(want[:]) {
				t.Fatalf("upload (chunked %v) reached the upstream as sha256 %s, want %x", chunked, got, want)
			}
		}
		resp, err := client.Get(fmt.Sprintf("https://%s/bulk?n=%d", addr, size))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		first := make([]byte, 1)
		if _, err := io.ReadFull(resp.Body, first); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // the proxy's writes to this client fill its socket and wait
		h := sha256.New()
		h.Write(first)
		if n, err := io.Copy(h, resp.Body); err != nil || n != size-1 || !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("download: %d bytes, %v, sha256 %x, want %d bytes, %x", n+1, err, h.Sum(nil), size, want)
		}
	})

	t.Run("a client that does not speak TLS", func(t *testing.T) {
		out := raw(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if strings.Contains(out, "HTTP/1.1 200") {
			t.Fatalf("a cleartext request on the TLS listener was answered: %q", out)
		}
		c := dial(t, "api.example.test") // still serving
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /after HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("TLS request after a cleartext one: %v %v", resp, err)
		}
		resp.Body.Close()
	})
}

// bulkBytes returns n bytes of a fixed pattern that does not repeat at
// any short period.
func bulkBytes(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// bulkUpstream starts an upstream that answers POST with the sha256 (hex)
// of the request body and GET /bulk?n=N with bulkBytes(N) (with
// pause=D, half of it, then the rest after D).
func bulkUpstream(t *testing.T) (host string, port float64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			h := sha256.New()
			_, _ = io.Copy(h, r.Body)
			_, _ = io.WriteString(w, hex.EncodeToString(h.Sum(nil)))
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		body := bulkBytes(n)
		if pause, _ := time.ParseDuration(r.URL.Query().Get("pause")); pause > 0 {
			// Half the body, then a pause (a slow upstream).
			w.Header().Set("Content-Length", strconv.Itoa(n))
			_, _ = w.Write(body[:n/2])
			http.NewResponseController(w).Flush()
			time.Sleep(pause)
			body = body[n/2:]
		}
		_, _ = w.Write(body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return proxytest.HostPort(t, ln.Addr().String())
}

func TestStreamingRequestBody(t *testing.T) {
	// The upstream must see the first part of an upload before the client
	// has sent the rest: request bodies are streamed, not buffered.
	got := make(chan string, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		line, _ := bufio.NewReader(r.Body).ReadString('\n')
		got <- line
		_, _ = io.Copy(io.Discard, r.Body)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	e, gw := proxytest.StartGateway(t, nil)
	routeAllTo(t, e, ln.Addr().String())
	pr, pw := io.Pipe()
	streamed := make(chan bool, 1)
	go func() {
		_, _ = io.WriteString(pw, "first line\n")
		select {
		case line := <-got:
			streamed <- line == "first line\n"
		case <-time.After(3 * time.Second):
			streamed <- false
		}
		_, _ = io.WriteString(pw, "rest")
		_ = pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, gw+"/upload", pr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !<-streamed {
		t.Fatal("the upstream did not see the first part before the upload finished")
	}
}

// TestManyShortConnections: many clients, each request on a new
// connection (Connection: close), in parallel. With event loops the
// coroutines that served finished connections serve the next ones; every
// answer must be its own request's.
func TestManyShortConnections(t *testing.T) {
	_, gw, _ := echoGateway(t)
	addr := strings.TrimPrefix(gw, "http://")
	const workers, each = 16, 40
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				uri := fmt.Sprintf("/w%d/r%d", w, i)
				c, err := net.Dial("tcp", addr)
				if err != nil {
					errs <- err
					return
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = io.WriteString(c, "GET "+uri+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				var b []byte
				if err == nil {
					b, err = io.ReadAll(c)
				}
				_ = c.Close()
				switch {
				case err != nil:
					errs <- fmt.Errorf("%s: %w", uri, err)
					return
				case !strings.HasPrefix(string(b), "HTTP/1.1 200 ") || !strings.Contains(string(b), `"uri":"`+uri+`"`):
					errs <- fmt.Errorf("%s answered with:\n%s", uri, b)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestIdleConnectionsShed: keep-alive connections that wait for their next
// request give their coroutines (and buffers) back to the event loop, so
// many idle connections do not hold a goroutine each; one that has sent
// part of a request head keeps them (and the bytes). All still serve
// their next request, and shutting down closes them at once. Over TLS too.
func TestIdleConnectionsShed(t *testing.T) {
	for _, ssl := range []bool{false, true} {
		t.Run(map[bool]string{false: "cleartext", true: "tls"}[ssl], func(t *testing.T) { testIdleConnectionsShed(t, ssl) })
	}
}

// dialProxy connects to a proxy listener (over TLS, trusting any
// certificate, when ssl).
func dialProxy(addr string, ssl bool) (net.Conn, error) {
	if ssl {
		return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the gateway's self-signed default certificate
	}
	return net.Dial("tcp", addr)
}

func testIdleConnectionsShed(t *testing.T, ssl bool) {
	up := proxytest.StartEcho(t, "up")
	e, err := server.New(server.Options{EventLoops: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	routeAllTo(t, e, up)
	addr, stop := proxytest.ServeProxy(t, e, server.ListenSpec{SSL: ssl})
	defer stop() // before e.Close

	type conn struct {
		net.Conn
		br *bufio.Reader
	}
	send := func(c conn, data string) error {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := io.WriteString(c, data)
		return err
	}
	response := func(c conn, uri string) error {
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: status %d", uri, resp.StatusCode)
		}
		return nil
	}
	before := runtime.NumGoroutine()
	const n = 400 // more than a loop keeps idle coroutines for (256)
	conns := make([]conn, n)
	for i := range conns {
		nc, err := dialProxy(addr, ssl)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		conns[i] = conn{nc, bufio.NewReader(nc)}
		if err := send(conns[i], fmt.Sprintf("GET /first/%d HTTP/1.1\r\nHost: x\r\n", i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // several times shedAfter
	if held := runtime.NumGoroutine() - before; held < n-32 {
		// Each connection with part of a head buffered keeps its
		// coroutine, which is a goroutine (the margin: goroutines of
		// earlier tests that may end meanwhile).
		t.Fatalf("%d connections in the middle of a request head hold %d goroutines, want about %d", n, held, n)
	}
	for i, c := range conns {
		if err := send(c, "\r\n"); err != nil {
			t.Fatal(err)
		}
		if err := response(c, fmt.Sprintf("/first/%d", i)); err != nil {
			t.Fatalf("connection %d, head completed after a pause: %v", i, err)
		}
	}
	proxytest.WaitFor(t, "idle connections to give their coroutines back", func() bool {
		return runtime.NumGoroutine()-before <= 256+16
	})
	for i, c := range conns {
		uri := fmt.Sprintf("/again/%d", i)
		if err := send(c, "GET "+uri+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if err := response(c, uri); err != nil {
			t.Fatalf("connection %d after it was shed: %v", i, err)
		}
	}
	proxytest.WaitFor(t, "idle connections to be shed again", func() bool {
		return runtime.NumGoroutine()-before <= 256+16
	})
	start := time.Now()
	served := make(chan struct{})
	go func() { stop(); close(served) }()
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy did not stop")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stopping took %v with shed connections open: they were not closed at once", d)
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if b, err := c.br.ReadByte(); err != io.EOF {
			t.Fatalf("connection %d after shutdown: read %q, %v; want EOF", i, b, err)
		}
	}
}

// TestShedChurn: connections whose pauses straddle the shedding threshold,
// some pausing in the middle of a request head, are shed and woken over
// and over; every request gets its own response. Over TLS too.
func TestShedChurn(t *testing.T) {
	for _, ssl := range []bool{false, true} {
		t.Run(map[bool]string{false: "cleartext", true: "tls"}[ssl], func(t *testing.T) { testShedChurn(t, ssl) })
	}
}

func testShedChurn(t *testing.T, ssl bool) {
	e, gw, _ := echoGatewayOptions(t, server.Options{EventLoops: 1})
	addr := strings.TrimPrefix(gw, "http://")
	if ssl {
		addr, _ = proxytest.ServeProxy(t, e, server.ListenSpec{SSL: true})
	}
	const conns = 40
	end := time.Now().Add(1500 * time.Millisecond)
	errs := make(chan error, conns)
	for i := range conns {
		go func() {
			c, err := dialProxy(addr, ssl)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for j := 0; time.Now().Before(end); j++ {
				time.Sleep(time.Duration(60+(i*7+j*13)%90) * time.Millisecond) // 60-149 ms
				uri := fmt.Sprintf("/c%d/r%d", i, j)
				req := "GET " + uri + " HTTP/1.1\r\nHost: x\r\n\r\n"
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if (i+j)%4 == 0 { // pause in the middle of the head
					if _, err := io.WriteString(c, req[:9]); err != nil {
						errs <- err
						return
					}
					time.Sleep(time.Duration(20+(i*11+j)%130) * time.Millisecond)
					req = req[9:]
				}
				if _, err := io.WriteString(c, req); err != nil {
					errs <- fmt.Errorf("%s: %w", uri, err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", uri, err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"uri":"`+uri+`"`) {
					errs <- fmt.Errorf("%s answered %d (%v): %s", uri, resp.StatusCode, err, b)
					return
				}
			}
			errs <- nil
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
