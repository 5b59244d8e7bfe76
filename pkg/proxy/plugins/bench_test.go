package plugins_test

import (
	"net/http"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
)

// keyAuthRateLimitingChain is the proxy benchmark's plugin configuration:
// key-auth with one consumer and rate-limiting that never triggers.
func keyAuthRateLimitingChain(b *testing.B) *plugin.Chain {
	return benchChain(b, map[string][]map[string]any{
		"keyauth_credentials": {{"consumer": fk(aliceID), "key": "alice-key"}},
	},
		map[string]any{"name": "key-auth", "config": map[string]any{}},
		map[string]any{"name": "rate-limiting", "config": map[string]any{"second": 1e12, "hour": 1e15}},
	)
}

// BenchmarkKeyAuthRateLimiting measures the access phase of the bench
// configuration (key-auth + rate-limiting) without the network.
func BenchmarkKeyAuthRateLimiting(b *testing.B) {
	runAccess(b, keyAuthRateLimitingChain(b), &http.Request{Method: "GET", Header: http.Header{"Apikey": {"alice-key"}}}, nil)
}

// BenchmarkKeyAuthRateLimitingParallel runs the same from every CPU at
// once with one consumer, as in the proxy benchmark, where shared state
// (locks, counters) costs cache-line transfers between CPUs.
func BenchmarkKeyAuthRateLimitingParallel(b *testing.B) {
	ch := keyAuthRateLimitingChain(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := &http.Request{Method: "GET", Header: http.Header{"Apikey": {"alice-key"}}}
		c := &plugin.Context{}
		for pb.Next() {
			c.Reset()
			c.Req, c.ClientIP, c.Scheme = req, "127.0.0.1", "http"
			c.RunAccess(ch)
			if c.Exited() != nil {
				b.Error(c.Exited())
			}
		}
	})
}
