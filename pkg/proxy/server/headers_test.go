package server_test

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/headerconf"
	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
)

// viaUpstream answers with the request headers it received as JSON, its
// own Via and status 203; without a Server header.
func viaUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Via", "1.0 origin")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNonAuthoritativeInfo)
		_ = json.NewEncoder(w).Encode(r.Header)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestHeadersSetting checks Kong's headers and headers_upstream settings on
// proxied responses (with no plugin, the fast path, and with a plugin that
// rewrites the response), on responses kiln produces, and upstream.
func TestHeadersSetting(t *testing.T) {
	up := viaUpstream(t)
	host, port := proxytest.HostPort(t, up)
	svc := map[string]any{"id": "9d7a1c3e-2b4f-4e6a-8c0d-1f3e5a7b9c21"}
	cfg := proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": svc["id"], "name": "origin", "host": host, "port": port}},
		"routes": {
			{"name": "plain", "paths": []any{"/plain"}, "service": svc},
			{"id": "3c5e7a9b-1d2f-4a6c-8e0b-2d4f6a8c0e13", "name": "rewritten", "paths": []any{"/rewritten"}, "service": svc},
			{"id": "7e9a1c3e-5f7b-4d2a-9c4e-6a8c0e2a4c35", "name": "terminated", "paths": []any{"/terminated"}, "service": svc},
		},
		"plugins": {
			{"name": "response-transformer", "route": map[string]any{"id": "3c5e7a9b-1d2f-4a6c-8e0b-2d4f6a8c0e13"},
				"config": map[string]any{"add": map[string]any{"headers": []any{"X-Rewritten:yes"}}}},
			{"name": "request-termination", "route": map[string]any{"id": "7e9a1c3e-5f7b-4d2a-9c4e-6a8c0e2a4c35"},
				"config": map[string]any{"status_code": 418, "message": "short"}},
		},
	})
	kong := "kong/3.10.0"
	tests := []struct {
		name, headers, upstream string
		// proxied and produced are the client response headers wanted on
		// a proxied response and on kiln's own (404, plugin exit): a
		// value, "*" for any, "" for absent.
		proxied, produced map[string]string
		// upstreamRequestID is the X-Kong-Request-Id the upstream gets:
		// "kiln" for kiln's, else the value.
		upstreamRequestID string
	}{
		{
			name:              "kong defaults",
			proxied:           map[string]string{"Via": "1.0 origin, 1.1 " + kong, "Server": kong, "X-Kong-Upstream-Latency": "*", "X-Kong-Proxy-Latency": "*", "X-Kong-Request-Id": "*", "X-Kong-Upstream-Status": ""},
			produced:          map[string]string{"Server": kong, "X-Kong-Response-Latency": "*", "X-Kong-Request-Id": "*", "Via": ""},
			upstreamRequestID: "kiln",
		},
		{
			name: "off", headers: "off", upstream: "off",
			proxied:           map[string]string{"Via": "1.0 origin", "Server": "", "X-Kong-Upstream-Latency": "", "X-Kong-Proxy-Latency": "", "X-Kong-Request-Id": "", "X-Kong-Upstream-Status": ""},
			produced:          map[string]string{"Server": "", "X-Kong-Response-Latency": "", "X-Kong-Request-Id": ""},
			upstreamRequestID: "from-client",
		},
		{
			name: "upstream status and via", headers: "X-Kong-Upstream-Status, via", upstream: "X-Kong-Request-Id",
			proxied:           map[string]string{"Via": "1.0 origin, 1.1 " + kong, "X-Kong-Upstream-Status": "203", "Server": "", "X-Kong-Proxy-Latency": "", "X-Kong-Request-Id": ""},
			produced:          map[string]string{"Server": "", "X-Kong-Response-Latency": "", "X-Kong-Request-Id": ""},
			upstreamRequestID: "kiln",
		},
		{
			name: "latency tokens", headers: "latency_tokens",
			proxied:           map[string]string{"Via": "1.0 origin", "X-Kong-Upstream-Latency": "*", "X-Kong-Proxy-Latency": "*", "Server": "", "X-Kong-Request-Id": ""},
			produced:          map[string]string{"X-Kong-Response-Latency": "*", "Server": "", "X-Kong-Request-Id": ""},
			upstreamRequestID: "kiln",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := server.Options{Plugins: plugins.Registry()}
			var err error
			if tt.headers != "" {
				if opts.Headers, err = headerconf.ParseHeaders(tt.headers); err != nil {
					t.Fatal(err)
				}
			}
			if tt.upstream != "" {
				if opts.HeadersUpstream, err = headerconf.ParseHeadersUpstream(tt.upstream); err != nil {
					t.Fatal(err)
				}
			}
			e, gw := proxytest.StartGatewayOptions(t, opts)
			if err := e.Update(cfg); err != nil {
				t.Fatal(err)
			}
			check := func(what string, h http.Header, want map[string]string) {
				t.Helper()
				for k, v := range want {
					got, set := h[k]
					switch {
					case v == "" && set:
						t.Errorf("%s: %s = %q, want none", what, k, got)
					case v == "*" && !set:
						t.Errorf("%s: no %s", what, k)
					case v != "" && v != "*" && strings.Join(got, ", ") != v:
						t.Errorf("%s: %s = %q, want %q", what, k, got, v)
					}
				}
			}
			for _, path := range []string{"/plain", "/rewritten"} {
				resp, body := proxytest.Get(t, gw+path, map[string]string{"X-Kong-Request-Id": "from-client"})
				if resp.StatusCode != http.StatusNonAuthoritativeInfo {
					t.Fatalf("%s: status %d: %s", path, resp.StatusCode, body)
				}
				check(path, resp.Header, tt.proxied)
				if path == "/rewritten" && resp.Header.Get("X-Rewritten") != "yes" {
					t.Errorf("%s: the response-transformer did not run", path)
				}
				var seen http.Header
				if err := json.Unmarshal(body, &seen); err != nil {
					t.Fatalf("%s: upstream answer %q: %v", path, body, err)
				}
				wantID := tt.upstreamRequestID
				if wantID == "kiln" {
					if id := seen.Get("X-Kong-Request-Id"); len(id) != 32 || len(seen["X-Kong-Request-Id"]) != 1 {
						t.Errorf("%s: upstream X-Kong-Request-Id %q, want kiln's alone", path, seen["X-Kong-Request-Id"])
					}
				} else if got := strings.Join(seen["X-Kong-Request-Id"], ","); got != wantID {
					t.Errorf("%s: upstream X-Kong-Request-Id %q, want %q", path, got, wantID)
				}
				// Kong always adds its Via entry and X-Forwarded-* upstream.
				if seen.Get("Via") != "1.1 "+kong || seen.Get("X-Forwarded-Proto") != "http" {
					t.Errorf("%s: upstream Via %q X-Forwarded-Proto %q", path, seen.Get("Via"), seen.Get("X-Forwarded-Proto"))
				}
			}
			for path, status := range map[string]int{"/nowhere": http.StatusNotFound, "/terminated": http.StatusTeapot} {
				resp, body := proxytest.Get(t, gw+path, nil)
				if resp.StatusCode != status {
					t.Fatalf("%s: status %d, want %d: %s", path, resp.StatusCode, status, body)
				}
				check(path, resp.Header, tt.produced)
				// The request id stays in Kong's error bodies.
				if !strings.Contains(string(body), `"request_id"`) && status == http.StatusNotFound {
					t.Errorf("%s: body %s has no request_id", path, body)
				}
			}
		})
	}
}
