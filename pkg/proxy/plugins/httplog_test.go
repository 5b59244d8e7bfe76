package plugins_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
)

// collector is a loopback log endpoint recording every entry it receives.
type collector struct {
	mu      sync.Mutex
	entries []map[string]any
	batches int
	ctype   string
	auth    string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches++
	c.ctype, c.auth = r.Header.Get("Content-Type"), r.Header.Get("X-Log-Token")
	var many []map[string]any
	if err := json.Unmarshal(b, &many); err == nil {
		c.entries = append(c.entries, many...)
		return
	}
	var one map[string]any
	if err := json.Unmarshal(b, &one); err == nil {
		c.entries = append(c.entries, one)
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func TestHTTPLog(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	t.Cleanup(srv.Close)
	gw := gateway(t,
		map[string]any{"name": "key-auth", "route": fk(routeID), "config": map[string]any{}},
		map[string]any{"name": "http-log", "config": map[string]any{"http_endpoint": srv.URL + "/log",
			"headers": map[string]any{"X-Log-Token": "t0k"}, "content_type": "application/json; charset=utf-8",
			"queue": map[string]any{"max_batch_size": 5, "max_coalescing_delay": 0.05}}},
	)
	const n = 12
	for i := 0; i < n; i++ {
		resp, body := do(t, "GET", gw+"/r/item?x=1&flag", map[string]string{"apikey": "alice-key", "Authorization": "Bearer secret"}, "")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if resp, _ := do(t, "GET", gw+"/r", nil, ""); resp.StatusCode != 401 {
		t.Fatalf("key-auth did not reject: %d", resp.StatusCode)
	}
	proxytest.WaitFor(t, "13 log entries", func() bool { return col.count() >= n+1 })

	col.mu.Lock()
	defer col.mu.Unlock()
	if col.ctype != "application/json; charset=utf-8" || col.auth != "t0k" {
		t.Fatalf("collector saw Content-Type %q, X-Log-Token %q", col.ctype, col.auth)
	}
	if col.batches >= len(col.entries) {
		t.Logf("no batching happened (%d batches for %d entries); allowed, but unusual", col.batches, len(col.entries))
	}
	var proxied, rejected map[string]any
	for _, e := range col.entries {
		resp, _ := e["response"].(map[string]any)
		if resp["status"] == 200.0 && proxied == nil {
			proxied = e
		}
		if resp["status"] == 401.0 {
			rejected = e
		}
	}
	if proxied == nil || rejected == nil {
		t.Fatalf("entries %v", col.entries)
	}
	req := proxied["request"].(map[string]any)
	hdr := req["headers"].(map[string]any)
	q := req["querystring"].(map[string]any)
	if req["method"] != "GET" || req["uri"] != "/r/item?x=1&flag" || !strings.HasSuffix(req["url"].(string), "/r/item?x=1&flag") ||
		hdr["authorization"] != "REDACTED" || hdr["apikey"] != "alice-key" || q["x"] != "1" || q["flag"] != true {
		t.Fatalf("request %v", req)
	}
	if proxied["upstream_uri"] != "/item?x=1&flag" || proxied["client_ip"] != "127.0.0.1" || proxied["started_at"] == nil {
		t.Fatalf("entry %v", proxied)
	}
	if r := proxied["route"].(map[string]any); r["id"] != routeID {
		t.Fatalf("route %v", r)
	}
	if s := proxied["service"].(map[string]any); s["id"] != svcID {
		t.Fatalf("service %v", s)
	}
	if c := proxied["consumer"].(map[string]any); c["username"] != "alice" {
		t.Fatalf("consumer %v", c)
	}
	lat := proxied["latencies"].(map[string]any)
	if lat["request"] == nil || lat["proxy"].(float64) < 0 || lat["kong"] == nil {
		t.Fatalf("latencies %v", lat)
	}
	if h := proxied["response"].(map[string]any)["headers"].(map[string]any); h["via"] == nil && h["content-type"] == nil {
		t.Fatalf("response headers %v", h)
	}
	if rejected["source"] != "kong" || rejected["consumer"] != nil {
		t.Fatalf("rejected entry %v", rejected)
	}
}

// A dead log endpoint must not slow down or fail requests: entries are
// retried in the background, then dropped.
func TestHTTPLogDeadEndpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/log"
	ln.Close()
	gw := gateway(t, map[string]any{"name": "http-log", "config": map[string]any{"http_endpoint": dead, "timeout": 500,
		"queue": map[string]any{"max_entries": 5, "max_retry_time": 0.5, "initial_retry_delay": 0.01, "max_retry_delay": 0.1}}})
	for i := 0; i < 30; i++ {
		if resp, body := do(t, "GET", gw+"/r", nil, ""); resp.StatusCode != 200 {
			t.Fatalf("request %d with a dead log endpoint: %d %s", i, resp.StatusCode, body)
		}
	}
}

func TestHTTPLogSchema(t *testing.T) {
	plugins := entity.KindByName("plugins")
	cases := []struct {
		name   string
		config map[string]any
		ok     bool
	}{
		{"minimal", map[string]any{"http_endpoint": "http://127.0.0.1:9/x"}, true},
		{"no endpoint", map[string]any{}, false},
		{"not a url", map[string]any{"http_endpoint": "nope"}, false},
		{"bad method", map[string]any{"http_endpoint": "http://127.0.0.1:9/x", "method": "GET"}, false},
		{"host header", map[string]any{"http_endpoint": "http://127.0.0.1:9/x", "headers": map[string]any{"Host": "x"}}, false},
		{"userinfo and authorization", map[string]any{"http_endpoint": "http://u:p@127.0.0.1:9/x", "headers": map[string]any{"Authorization": "x"}}, false},
		{"lua code is refused", map[string]any{"http_endpoint": "http://127.0.0.1:9/x", "custom_fields_by_lua": map[string]any{"a": "return 1"}}, false},
		{"empty lua map", map[string]any{"http_endpoint": "http://127.0.0.1:9/x", "custom_fields_by_lua": map[string]any{}}, true},
	}
	for _, c := range cases {
		out, errs := entity.Validate(plugins, map[string]any{"name": "http-log", "config": c.config})
		if (errs == nil) != c.ok {
			t.Errorf("%s: errors %v, want ok=%v", c.name, errs, c.ok)
			continue
		}
		if c.ok {
			cfg := out["config"].(map[string]any)
			q := cfg["queue"].(map[string]any)
			if cfg["method"] != "POST" || cfg["timeout"] != 10000.0 || cfg["keepalive"] != 60000.0 || q["max_batch_size"] != 1.0 || q["max_entries"] != 10000.0 {
				t.Errorf("%s: defaults %v", c.name, cfg)
			}
		}
	}
}
