// Package proxytest has helpers for data-plane tests: validated
// configurations built from JSON-shaped records, a loopback echo upstream
// and a gateway engine serving on loopback.
package proxytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
)

// BuildConfig builds a validated configuration from JSON-shaped records,
// the way the store would hand it over.
func BuildConfig(t testing.TB, version uint64, in map[string][]map[string]any) *entity.Config {
	t.Helper()
	out := entity.Records{}
	now := time.Now().Unix()
	for kind, list := range in {
		k := entity.KindByName(kind)
		if k == nil {
			t.Fatalf("unknown kind %s", kind)
		}
		for i, r := range list {
			if r["id"] == nil {
				r["id"] = entity.NewID()
			}
			if r["created_at"] == nil {
				r["created_at"] = float64(now + int64(i))
			}
			r, _ = entity.Transform(k, r)
			v, errs := entity.Validate(k, r)
			if len(errs) > 0 {
				t.Fatalf("%s %v: %v", kind, r, errs)
			}
			out[kind] = append(out[kind], v)
		}
	}
	cfg, err := entity.NewConfig(version, out)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Echoed is what the echo upstream answers: the request it received.
type Echoed struct {
	Method string              `json:"method"`
	URI    string              `json:"uri"`
	Host   string              `json:"host"`
	Header map[string][]string `json:"headers"`
	Body   string              `json:"body"`
	Server string              `json:"server"`
}

// StartEcho starts a loopback upstream that answers every request with
// an Echoed JSON document (and /status/N with status N); it returns its
// address.
func StartEcho(t testing.TB, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/status/") {
			var code int
			_, _ = fmt.Sscan(strings.TrimPrefix(r.URL.Path, "/status/"), &code)
			w.WriteHeader(code)
			return
		}
		if r.URL.Path == "/slow" {
			time.Sleep(500 * time.Millisecond)
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", name)
		_ = json.NewEncoder(w).Encode(Echoed{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header, Body: string(b), Server: name})
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// StartGateway serves an engine on a loopback listener and returns it with
// its base URL.
func StartGateway(t testing.TB, reg plugin.Registry) (*server.Engine, string) {
	t.Helper()
	return StartGatewayOptions(t, server.Options{Plugins: reg})
}

// StartGatewayOptions is StartGateway with engine options (see NewEngine).
func StartGatewayOptions(t testing.TB, opts server.Options) (*server.Engine, string) {
	t.Helper()
	e := NewEngine(t, opts)
	addr, _ := ServeProxy(t, e, server.ListenSpec{})
	return e, "http://" + addr
}

// NewEngine makes an engine closed when the test ends (after the proxy
// listeners ServeProxy started stopped). Options that leave EventLoops at
// its default take it from KILN_TEST_EVENT_LOOPS when set (make test runs
// the proxy tests again with -1: no event loops).
func NewEngine(t testing.TB, opts server.Options) *server.Engine {
	t.Helper()
	if v := os.Getenv("KILN_TEST_EVENT_LOOPS"); v != "" && opts.EventLoops == 0 {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("KILN_TEST_EVENT_LOOPS=%q is not a number", v)
		}
		opts.EventLoops = n
	}
	e, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close) // after the proxy stopped (cleanups run last first)
	return e
}

// ServeProxy serves e's proxy on a new loopback listener with spec (its
// Addr set to the listener's) and returns that address and stop, which
// ends serving and waits for it to end. stop may be called more than once;
// it also runs when the test ends, so register e.Close before calling
// ServeProxy (cleanups run in reverse order).
func ServeProxy(t testing.TB, e *server.Engine, spec server.ListenSpec) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	spec.Addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.ServeProxy(ctx, ln, spec); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return spec.Addr, stop
}

// ClientFrom returns an HTTP client whose connections leave from the
// loopback address src (e.g. "127.0.0.2"), so a test can be a peer the
// gateway trusts or not.
func ClientFrom(t testing.TB, src string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 30 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// HostPort splits addr into the host and a JSON-number port.
func HostPort(t testing.TB, addr string) (string, float64) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	_, _ = fmt.Sscan(p, &n)
	return h, float64(n)
}

// Get sends a GET with headers ("Host" sets the Host) and returns the
// response and its body.
func Get(t testing.TB, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	h := http.Header{}
	for k, v := range hdr {
		h.Set(k, v)
	}
	return GetWith(t, http.DefaultClient, url, h)
}

// GetWith sends a GET through client with the header field lines in hdr
// ("Host" sets the Host) and returns the response and its body.
func GetWith(t testing.TB, client *http.Client, url string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		if k == "Host" {
			req.Host = vs[0]
			continue
		}
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// DecodeEcho parses an echo upstream answer.
func DecodeEcho(t testing.TB, b []byte) Echoed {
	t.Helper()
	var e Echoed
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("upstream answer %q: %v", b, err)
	}
	return e
}

// WaitFor polls cond until it holds, failing the test after a generous
// deadline (CI machines are loaded: never assert tight timings).
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
