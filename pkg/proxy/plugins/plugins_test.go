package plugins_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
)

const (
	svcID   = "aaaaaaaa-0000-4000-8000-000000000001"
	routeID = "aaaaaaaa-0000-4000-8000-000000000002"
	aliceID = "aaaaaaaa-0000-4000-8000-000000000003"
	bobID   = "aaaaaaaa-0000-4000-8000-000000000004"
	anonID  = "aaaaaaaa-0000-4000-8000-000000000005"
	route2  = "aaaaaaaa-0000-4000-8000-000000000006"
)

func fk(id string) map[string]any { return map[string]any{"id": id} }

// gateway starts an echo upstream and a gateway configured with one service,
// routes /r (route 1) and /other (route 2), consumers alice/bob/anonymous
// with key-auth, basic-auth and acl credentials, plus the given plugins.
func gateway(t *testing.T, pl ...map[string]any) string {
	t.Helper()
	return gatewayWith(t, nil, pl...)
}

// gatewayWith is gateway with extra records (credentials of other kinds).
func gatewayWith(t *testing.T, extra map[string][]map[string]any, pl ...map[string]any) string {
	t.Helper()
	up := proxytest.StartEcho(t, "up")
	host, port := proxytest.HostPort(t, up)
	e, gw := proxytest.StartGateway(t, plugins.Registry())
	recs := map[string][]map[string]any{
		"services": {{"id": svcID, "name": "svc", "host": host, "port": port}},
		"routes": {
			{"id": routeID, "name": "r", "paths": []any{"/r"}, "service": fk(svcID)},
			{"id": route2, "name": "other", "paths": []any{"/other"}, "service": fk(svcID)},
		},
		"consumers": {
			{"id": aliceID, "username": "alice", "custom_id": "a-1"},
			{"id": bobID, "username": "bob"},
			{"id": anonID, "username": "anonymous"},
		},
		"keyauth_credentials": {
			{"consumer": fk(aliceID), "key": "alice-key"},
			{"consumer": fk(bobID), "key": "bob-key"},
		},
		"basicauth_credentials": {
			{"consumer": fk(aliceID), "username": "alice", "password": entity.HashBasicAuthPassword("s3cret", aliceID)},
		},
		"acls": {
			{"consumer": fk(aliceID), "group": "admins"},
			{"consumer": fk(bobID), "group": "users"},
		},
		"plugins": pl,
	}
	for k, v := range extra {
		recs[k] = append(recs[k], v...)
	}
	cfg := proxytest.BuildConfig(t, 1, recs)
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	return gw
}

func do(t *testing.T, method, url string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// expect sends a request and checks its status and, when msg is not empty,
// the message of its Kong error body.
func expect(t *testing.T, method, url string, hdr map[string]string, reqBody string, status int, msg string) (*http.Response, string) {
	t.Helper()
	resp, body := do(t, method, url, hdr, reqBody)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	if msg != "" {
		if got := message(t, body); got != msg {
			t.Fatalf("message %q, want %q", got, msg)
		}
	}
	return resp, body
}

func message(t *testing.T, body string) string {
	t.Helper()
	var m struct {
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("body %q is not a Kong error: %v", body, err)
	}
	return m.Message
}

func TestKeyAuthAndACL(t *testing.T) {
	gw := gateway(t,
		map[string]any{"name": "key-auth", "route": fk(routeID), "config": map[string]any{"hide_credentials": true}},
		map[string]any{"name": "acl", "route": fk(routeID), "config": map[string]any{"allow": []any{"admins"}}},
		map[string]any{"name": "key-auth", "route": fk(route2), "config": map[string]any{"anonymous": "anonymous"}},
	)
	cases := []struct {
		name   string
		url    string
		hdr    map[string]string
		status int
		msg    string
	}{
		{"no key", "/r", nil, 401, "No API key found in request"},
		{"bad key", "/r", map[string]string{"apikey": "nope"}, 401, "Unauthorized"},
		{"key in query, acl denies bob", "/r?apikey=bob-key", nil, 403, "You cannot consume this service"},
		{"alice allowed", "/r", map[string]string{"apikey": "alice-key"}, 200, ""},
		{"anonymous fallback", "/other", nil, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, _ := expect(t, "GET", gw+c.url, c.hdr, "", c.status, c.msg)
			if c.msg != "" {
				if c.status == 401 && resp.Header.Get("WWW-Authenticate") != "Key" {
					t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	resp, body := do(t, "GET", gw+"/r/x?apikey=alice-key&keep=1", nil, "")
	got := proxytest.DecodeEcho(t, []byte(body))
	h := http.Header(got.Header)
	if resp.StatusCode != 200 || h.Get("X-Consumer-Username") != "alice" || h.Get("X-Consumer-Id") != aliceID ||
		h.Get("X-Consumer-Custom-Id") != "a-1" || h.Get("X-Consumer-Groups") != "admins" || h.Get("X-Credential-Identifier") == "" {
		t.Fatalf("upstream headers %v", h)
	}
	if got.URI != "/x?keep=1" {
		t.Fatalf("hide_credentials left the key in %q", got.URI)
	}
	_, body = do(t, "GET", gw+"/other", nil, "")
	if h := http.Header(proxytest.DecodeEcho(t, []byte(body)).Header); h.Get("X-Anonymous-Consumer") != "true" || h.Get("X-Consumer-Username") != "anonymous" {
		t.Fatalf("anonymous headers %v", h)
	}
}

func TestBasicAuth(t *testing.T) {
	gw := gateway(t, map[string]any{"name": "basic-auth", "config": map[string]any{}})
	basic := func(u, p string) map[string]string {
		return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))}
	}
	resp, body := do(t, "GET", gw+"/r", nil, "")
	if resp.StatusCode != 401 || message(t, body) != "Unauthorized" || resp.Header.Get("WWW-Authenticate") != `Basic realm="service"` {
		t.Fatalf("no credentials: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	if resp, _ = do(t, "GET", gw+"/r", basic("alice", "wrong"), ""); resp.StatusCode != 401 {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	resp, body = do(t, "GET", gw+"/r", basic("alice", "s3cret"), "")
	if resp.StatusCode != 200 || http.Header(proxytest.DecodeEcho(t, []byte(body)).Header).Get("X-Credential-Identifier") != "alice" {
		t.Fatalf("good password: %d %s", resp.StatusCode, body)
	}
}

func TestRateLimiting(t *testing.T) {
	gw := gateway(t, map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 3, "hour": 10, "limit_by": "ip"}})
	// The four requests must fall in one minute window (and one hour):
	// wait out the last seconds of a minute instead of racing its end.
	if now := time.Now(); now.Second() >= 50 {
		time.Sleep(time.Duration(61-now.Second()) * time.Second)
	}
	for i := 1; i <= 3; i++ {
		resp, _ := do(t, "GET", gw+"/r", nil, "")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		if got, want := resp.Header.Get("X-RateLimit-Remaining-Minute"), string(rune('0'+3-i)); got != want {
			t.Fatalf("request %d: remaining-minute %q want %q", i, got, want)
		}
		if resp.Header.Get("X-RateLimit-Limit-Hour") != "10" || resp.Header.Get("RateLimit-Limit") != "3" {
			t.Fatalf("headers %v", resp.Header)
		}
	}
	resp, body := do(t, "GET", gw+"/r", nil, "")
	if resp.StatusCode != 429 || message(t, body) != "API rate limit exceeded" {
		t.Fatalf("4th request: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Retry-After") == "" || resp.Header.Get("RateLimit-Remaining") != "0" || resp.Header.Get("X-RateLimit-Remaining-Minute") != "0" {
		t.Fatalf("429 headers %v", resp.Header)
	}
}

func TestScopingPrecedence(t *testing.T) {
	// Kong's precedence: route+consumer > consumer > route > global, with
	// the consumer known once key-auth (higher priority) has run.
	gw := gateway(t,
		map[string]any{"name": "key-auth", "config": map[string]any{}},
		map[string]any{"name": "request-termination", "config": map[string]any{"status_code": 418, "message": "global"}},
		map[string]any{"name": "request-termination", "route": fk(routeID), "config": map[string]any{"status_code": 418, "message": "route"}},
		map[string]any{"name": "request-termination", "consumer": fk(bobID), "config": map[string]any{"status_code": 418, "message": "consumer"}},
		map[string]any{"name": "request-termination", "route": fk(routeID), "consumer": fk(aliceID), "config": map[string]any{"status_code": 418, "message": "route+consumer"}},
	)
	for _, c := range []struct{ url, key, want string }{
		{"/other", "alice-key", "global"},
		{"/r", "bob-key", "consumer"}, // consumer-only outranks route-only in Kong
		{"/other", "bob-key", "consumer"},
		{"/r", "alice-key", "route+consumer"},
	} {
		_, body := do(t, "GET", gw+c.url, map[string]string{"apikey": c.key}, "")
		want := c.want
		var m map[string]string
		_ = json.Unmarshal([]byte(body), &m)
		if m["message"] != want {
			t.Errorf("%s as %s: %q, want %q", c.url, c.key, m["message"], want)
		}
	}
}

func TestCORS(t *testing.T) {
	gw := gateway(t, map[string]any{"name": "cors", "config": map[string]any{
		"origins": []any{"https://app.example.com"}, "methods": []any{"GET", "POST"}, "max_age": 600, "credentials": true,
		"exposed_headers": []any{"X-Upstream"},
	}})
	resp, _ := do(t, "OPTIONS", gw+"/r", map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "X-Custom"}, "")
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		resp.Header.Get("Access-Control-Allow-Methods") != "GET,POST" || resp.Header.Get("Access-Control-Max-Age") != "600" ||
		resp.Header.Get("Access-Control-Allow-Headers") != "X-Custom" || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = do(t, "GET", gw+"/r", map[string]string{"Origin": "https://app.example.com"}, "")
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || resp.Header.Get("Access-Control-Expose-Headers") != "X-Upstream" {
		t.Fatalf("simple request: %v", resp.Header)
	}
	resp, _ = do(t, "GET", gw+"/r", map[string]string{"Origin": "https://evil.example.com"}, "")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin allowed: %v", resp.Header)
	}
}

func TestIPRestriction(t *testing.T) {
	gw := gateway(t,
		map[string]any{"name": "ip-restriction", "route": fk(routeID), "config": map[string]any{"deny": []any{"127.0.0.0/8"}}},
		map[string]any{"name": "ip-restriction", "route": fk(route2), "config": map[string]any{"allow": []any{"127.0.0.1"}}},
	)
	resp, body := do(t, "GET", gw+"/r", nil, "")
	if resp.StatusCode != 403 || message(t, body) != "IP address not allowed: 127.0.0.1" {
		t.Fatalf("denied: %d %s", resp.StatusCode, body)
	}
	if resp, _ = do(t, "GET", gw+"/other", nil, ""); resp.StatusCode != 200 {
		t.Fatalf("allowed: %d", resp.StatusCode)
	}
}

func TestTransformers(t *testing.T) {
	gw := gateway(t,
		map[string]any{"name": "request-transformer", "config": map[string]any{
			"remove":  map[string]any{"headers": []any{"X-Drop"}, "querystring": []any{"drop"}},
			"rename":  map[string]any{"headers": []any{"X-Old:X-New"}},
			"replace": map[string]any{"headers": []any{"X-Rep:replaced"}, "body": []any{"a:2"}},
			"add":     map[string]any{"headers": []any{"X-Added:$(headers.x-src)"}, "querystring": []any{"q:1"}, "body": []any{"b:true"}},
			"append":  map[string]any{"headers": []any{"X-App:two"}},
		}},
		map[string]any{"name": "response-transformer", "config": map[string]any{
			"remove": map[string]any{"headers": []any{"X-Upstream"}, "json": []any{"server"}},
			"add":    map[string]any{"headers": []any{"X-Resp:yes"}, "json": []any{"extra:1"}, "json_types": []any{"number"}},
		}},
	)
	resp, body := do(t, "POST", gw+"/r/t?drop=1&keep=2", map[string]string{
		"X-Drop": "1", "X-Old": "o", "X-Rep": "r", "X-Src": "copied", "X-App": "one", "Content-Type": "application/json",
	}, `{"a":1}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Upstream") != "" || resp.Header.Get("X-Resp") != "yes" {
		t.Errorf("response headers %v", resp.Header)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["server"]; ok || raw["extra"] != float64(1) {
		t.Errorf("response json %v", raw)
	}
	got := proxytest.DecodeEcho(t, []byte(body))
	h := http.Header(got.Header)
	if h.Get("X-Drop") != "" || h.Get("X-Old") != "" || h.Get("X-New") != "o" || h.Get("X-Rep") != "replaced" ||
		h.Get("X-Added") != "copied" || strings.Join(h.Values("X-App"), ",") != "one,two" {
		t.Errorf("upstream headers %v", h)
	}
	if got.URI != "/t?keep=2&q=1" {
		t.Errorf("upstream uri %q", got.URI)
	}
	var b map[string]any
	if err := json.Unmarshal([]byte(got.Body), &b); err != nil || b["a"] != float64(2) || b["b"] != true {
		t.Errorf("upstream body %q", got.Body)
	}
}

func TestCorrelationIDAndTermination(t *testing.T) {
	gw := gateway(t,
		map[string]any{"name": "correlation-id", "config": map[string]any{"echo_downstream": true}},
		map[string]any{"name": "request-termination", "route": fk(route2), "config": map[string]any{"status_code": 403, "body": "<b>no</b>", "content_type": "text/html"}},
	)
	resp, body := do(t, "GET", gw+"/r", nil, "")
	id := resp.Header.Get("Kong-Request-ID")
	if id == "" || http.Header(proxytest.DecodeEcho(t, []byte(body)).Header).Get("Kong-Request-Id") != id || !strings.Contains(id, "#") {
		t.Fatalf("correlation id %q, body %s", id, body)
	}
	resp, body = do(t, "GET", gw+"/other", nil, "")
	if resp.StatusCode != 403 || body != "<b>no</b>" || resp.Header.Get("Content-Type") != "text/html" {
		t.Fatalf("termination: %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

func TestPrometheus(t *testing.T) {
	up := proxytest.StartEcho(t, "up")
	host, port := proxytest.HostPort(t, up)
	e, gw := proxytest.StartGateway(t, plugins.Registry())
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": svcID, "name": "svc", "host": host, "port": port}},
		"routes":   {{"id": routeID, "name": "r", "paths": []any{"/r"}, "service": fk(svcID)}},
		"plugins":  {{"name": "prometheus", "config": map[string]any{"status_code_metrics": true, "latency_metrics": true}}},
	})); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		do(t, "GET", gw+"/r", nil, "")
	}
	var buf bytes.Buffer
	if err := e.Metrics().WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		`kong_http_requests_total{service="svc",route="r",code="200",source="service",workspace="default",consumer=""} 3`,
		`kong_upstream_latency_ms_count{service="svc",route="r",workspace="default"} 3`,
		`kong_nginx_requests_total`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
}
