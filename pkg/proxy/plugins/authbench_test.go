package plugins_test

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
)

// benchChain compiles one route with the given plugins and credentials.
func benchChain(b *testing.B, extra map[string][]map[string]any, pl ...map[string]any) *plugin.Chain {
	b.Helper()
	recs := map[string][]map[string]any{
		"services":  {{"id": svcID, "host": "127.0.0.1", "port": 1}},
		"routes":    {{"id": routeID, "paths": []any{"/"}, "service": fk(svcID)}},
		"consumers": {{"id": aliceID, "username": "alice"}},
		"plugins":   pl,
	}
	for k, v := range extra {
		recs[k] = v
	}
	cfg := proxytest.BuildConfig(b, 1, recs)
	env := plugin.NewEnv(cfg, plugin.NewState())
	set, err := plugin.Compile(cfg, plugins.Registry(), env)
	if err != nil {
		b.Fatal(err)
	}
	return set.ForRoute(routeID)
}

// runAccess runs the access phase of ch for req in a loop, then after (if
// not nil) for the later phases.
func runAccess(b *testing.B, ch *plugin.Chain, req *http.Request, after func(c *plugin.Context)) {
	c := &plugin.Context{}
	b.ReportAllocs()
	for b.Loop() {
		c.Reset()
		c.Req, c.ClientIP, c.Scheme, c.Start = req, "127.0.0.1", "http", time.Now()
		c.RunAccess(ch)
		if c.Exited() != nil {
			b.Fatal(c.Exited())
		}
		if after != nil {
			after(c)
		}
	}
}

// BenchmarkJWT measures the jwt access phase (token parse, signature and
// claim checks) per algorithm family.
func BenchmarkJWT(b *testing.B) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		alg  string
		key  any
		cred map[string]any
	}{
		{"HS256", []byte("s3cret"), map[string]any{"secret": "s3cret"}},
		{"RS256", rsaKey, map[string]any{"rsa_public_key": pubPEM(b, &rsaKey.PublicKey)}},
	} {
		b.Run(tc.alg, func(b *testing.B) {
			cred := map[string]any{"consumer": fk(aliceID), "key": "iss-1", "algorithm": tc.alg}
			for k, v := range tc.cred {
				cred[k] = v
			}
			ch := benchChain(b, map[string][]map[string]any{"jwt_secrets": {cred}},
				map[string]any{"name": "jwt", "config": map[string]any{"claims_to_verify": []any{"exp"}}})
			tok := signJWT(b, tc.alg, tc.key, map[string]any{"iss": "iss-1", "exp": time.Now().Add(time.Hour).Unix()})
			req := &http.Request{Method: "GET", URL: &url.URL{Path: "/"}, Header: http.Header{"Authorization": {"Bearer " + tok}}}
			runAccess(b, ch, req, nil)
		})
	}
}

// BenchmarkHTTPLog measures what http-log adds to a request: building the
// log entry and queueing it (delivery runs in the background to a loopback
// collector).
func BenchmarkHTTPLog(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	ch := benchChain(b, nil, map[string]any{"name": "http-log", "config": map[string]any{"http_endpoint": srv.URL,
		"queue": map[string]any{"max_batch_size": 100, "max_entries": 100000}}})
	req := &http.Request{Method: "GET", Host: "example.com", URL: &url.URL{Path: "/x", RawQuery: "a=1"},
		Header: http.Header{"User-Agent": {"bench"}, "Accept": {"*/*"}}}
	runAccess(b, ch, req, func(c *plugin.Context) {
		c.Status, c.ResponseHeader, c.Proxied = 200, http.Header{"Content-Type": {"text/plain"}}, true
		c.RunHeaderFilter()
		c.RunLog()
	})
}
