package server_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
)

// BenchmarkProxy measures one proxied GET (1 KiB response) over loopback
// keep-alive connections, with and without key-auth + rate-limiting. Use
// -cpuprofile to find hot spots; the wrk comparison lives in make
// bench-proxy.
func BenchmarkProxy(b *testing.B) {
	body := strings.Repeat("x", 1024)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, body)
	})}
	go func() { _ = up.Serve(ln) }()
	defer up.Close()
	host, port := proxytest.HostPort(b, ln.Addr().String())
	for _, withPlugins := range []bool{false, true} {
		name := "plain"
		recs := map[string][]map[string]any{
			"services": {{"id": "bbbbbbbb-0000-4000-8000-000000000001", "host": host, "port": port}},
			"routes":   {{"paths": []any{"/"}, "service": map[string]any{"id": "bbbbbbbb-0000-4000-8000-000000000001"}}},
		}
		if withPlugins {
			name = "key-auth+rate-limiting"
			recs["consumers"] = []map[string]any{{"id": "bbbbbbbb-0000-4000-8000-000000000002", "username": "u"}}
			recs["keyauth_credentials"] = []map[string]any{{"consumer": map[string]any{"id": "bbbbbbbb-0000-4000-8000-000000000002"}, "key": "k"}}
			recs["plugins"] = []map[string]any{
				{"name": "key-auth", "config": map[string]any{}},
				{"name": "rate-limiting", "config": map[string]any{"second": 1e9, "hour": 1e12}},
			}
		}
		b.Run(name, func(b *testing.B) {
			e, gw := proxytest.StartGateway(b, plugins.Registry())
			if err := e.Update(proxytest.BuildConfig(b, 1, recs)); err != nil {
				b.Fatal(err)
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest(http.MethodGet, gw+"/bench", nil)
				req.Header.Set("apikey", "k")
				for pb.Next() {
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
			})
		})
	}
}
