package server_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
)

// BenchmarkProxy measures one proxied GET (1 KiB response) over loopback
// keep-alive connections, with and without key-auth + rate-limiting. Use
// -cpuprofile to find hot spots; the wrk comparison lives in make
// bench-proxy. The gateway runs one event loop, not one per CPU: here its
// client and upstream are goroutines of the same process, and a loop
// waiting for their next request keeps its P for up to a millisecond
// (see eventLoop.wait), so with a loop on every P they would wait for one
// (about 950 µs per request instead of 60 on the development VM).
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
			e, gw := proxytest.StartGatewayOptions(b, server.Options{Plugins: plugins.Registry(), EventLoops: 1})
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
