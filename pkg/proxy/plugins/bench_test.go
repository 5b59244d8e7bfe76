package plugins_test

import (
	"net/http"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
)

// BenchmarkKeyAuthRateLimiting measures the access phase of the bench
// configuration (key-auth + rate-limiting) without the network;
// BenchmarkKeyAuthRateLimitingParallel does the same from every CPU at
// once with one consumer, as in the proxy benchmark, where shared state
// (locks, counters) costs cache-line transfers between CPUs.
func BenchmarkKeyAuthRateLimiting(b *testing.B) {
	ch := benchChain(b)
	req := &http.Request{Method: "GET", Header: http.Header{"Apikey": {"alice-key"}}}
	c := &plugin.Context{}
	b.ReportAllocs()
	for b.Loop() {
		runAccess(b, c, req, ch)
	}
}

func BenchmarkKeyAuthRateLimitingParallel(b *testing.B) {
	ch := benchChain(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := &http.Request{Method: "GET", Header: http.Header{"Apikey": {"alice-key"}}}
		c := &plugin.Context{}
		for pb.Next() {
			runAccess(b, c, req, ch)
		}
	})
}

func runAccess(b *testing.B, c *plugin.Context, req *http.Request, ch *plugin.Chain) {
	c.Reset()
	c.Req, c.ClientIP, c.Scheme = req, "127.0.0.1", "http"
	c.RunAccess(ch)
	if c.Exited() != nil {
		b.Error(c.Exited())
	}
}

func benchChain(b *testing.B) *plugin.Chain {
	b.Helper()
	cfg := proxytest.BuildConfig(b, 1, map[string][]map[string]any{
		"services":            {{"id": svcID, "host": "127.0.0.1", "port": 1}},
		"routes":              {{"id": routeID, "paths": []any{"/"}, "service": fk(svcID)}},
		"consumers":           {{"id": aliceID, "username": "alice"}},
		"keyauth_credentials": {{"consumer": fk(aliceID), "key": "alice-key"}},
		"plugins": {
			{"name": "key-auth", "config": map[string]any{}},
			{"name": "rate-limiting", "config": map[string]any{"second": 1e12, "hour": 1e15}},
		},
	})
	env := plugin.NewEnv(cfg, plugin.NewState())
	set, err := plugin.Compile(cfg, plugins.Registry(), env)
	if err != nil {
		b.Fatal(err)
	}
	return set.ForRoute(routeID)
}
