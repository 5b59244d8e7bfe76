package plugins_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"hash"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
)

// hmacHeader signs the named headers (values from hdr; "request-line" is
// built from method and uri) as a client following Kong's docs does.
func hmacHeader(user, secret, alg string, hdr map[string]string, method, uri string, names ...string) string {
	fns := map[string]func() hash.Hash{"hmac-sha1": sha1.New, "hmac-sha256": sha256.New, "hmac-sha384": sha512.New384, "hmac-sha512": sha512.New}
	var lines []string
	for _, n := range names {
		if n == "request-line" {
			lines = append(lines, method+" "+uri+" HTTP/1.1")
			continue
		}
		lines = append(lines, n+": "+hdr[n])
	}
	m := hmac.New(fns[alg], []byte(secret))
	m.Write([]byte(strings.Join(lines, "\n")))
	return fmt.Sprintf(`hmac username="%s", algorithm="%s", headers="%s", signature="%s"`,
		user, alg, strings.Join(names, " "), base64.StdEncoding.EncodeToString(m.Sum(nil)))
}

func TestHMACAuth(t *testing.T) {
	gw := gatewayWith(t, map[string][]map[string]any{"hmacauth_credentials": {
		{"consumer": fk(aliceID), "username": "alice-hmac", "secret": "alice-secret"},
	}},
		map[string]any{"name": "hmac-auth", "route": fk(routeID), "config": map[string]any{
			"enforce_headers": []any{"date"}, "validate_request_body": true, "hide_credentials": true, "realm": "kiln"}},
		map[string]any{"name": "hmac-auth", "route": fk(route2), "config": map[string]any{
			"anonymous": "anonymous", "algorithms": []any{"hmac-sha256"}, "clock_skew": 60}},
	)
	date := time.Now().UTC().Format(http.TimeFormat)
	old := time.Now().Add(-10 * time.Minute).UTC().Format(http.TimeFormat)
	digest := func(body string) string {
		s := sha256.Sum256([]byte(body))
		return "SHA-256=" + base64.StdEncoding.EncodeToString(s[:])
	}
	signed := func(alg, uri, body string, names ...string) map[string]string {
		h := map[string]string{"date": date, "digest": digest(body)}
		h["Authorization"] = hmacHeader("alice-hmac", "alice-secret", alg, h, "POST", uri, names...)
		return h
	}
	with := func(h map[string]string, k, v string) map[string]string {
		out := map[string]string{}
		for a, b := range h {
			out[a] = b
		}
		out[k] = v
		return out
	}
	good := signed("hmac-sha256", "/r/x?a=1", "hello", "date", "request-line", "digest")
	cases := []struct {
		name   string
		url    string
		hdr    map[string]string
		body   string
		status int
		msg    string
	}{
		{"no credentials", "/r/x?a=1", nil, "", 401, "Unauthorized"},
		{"no date", "/r/x?a=1", map[string]string{"Authorization": good["Authorization"]}, "hello", 401, "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"},
		{"date outside clock skew", "/r/x?a=1", with(good, "date", old), "hello", 401, "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"},
		{"not an hmac header", "/r/x?a=1", with(good, "Authorization", "Basic Zm9vOmJhcg=="), "hello", 401, "HMAC signature cannot be verified"},
		{"unknown user", "/r/x?a=1", with(good, "Authorization", strings.Replace(good["Authorization"], "alice-hmac", "mallory", 1)), "hello", 401, "HMAC signature cannot be verified"},
		{"enforced header not signed", "/r/x?a=1", signed("hmac-sha256", "/r/x?a=1", "hello", "request-line", "digest"), "hello", 401, "HMAC signature cannot be verified"},
		{"signature mismatch (other uri)", "/r/y?a=1", good, "hello", 401, "HMAC signature does not match"},
		{"body digest mismatch", "/r/x?a=1", good, "tampered", 401, "HMAC signature does not match"},
		{"valid sha256", "/r/x?a=1", good, "hello", 200, ""},
		{"valid sha1", "/r/x?a=1", signed("hmac-sha1", "/r/x?a=1", "hello", "date", "request-line", "digest"), "hello", 200, ""},
		{"valid sha384", "/r/x?a=1", signed("hmac-sha384", "/r/x?a=1", "hello", "date", "request-line", "digest"), "hello", 200, ""},
		{"valid sha512 in Proxy-Authorization", "/r/x?a=1", func() map[string]string {
			h := signed("hmac-sha512", "/r/x?a=1", "hello", "date", "request-line", "digest")
			h["Proxy-Authorization"], h["Authorization"] = h["Authorization"], ""
			return h
		}(), "hello", 200, ""},
		{"x-date instead of date", "/r/x?a=1", func() map[string]string {
			h := map[string]string{"x-date": date, "date": old, "digest": digest("")}
			h["Authorization"] = hmacHeader("alice-hmac", "alice-secret", "hmac-sha256", map[string]string{"date": old, "x-date": date}, "POST", "/r/x?a=1", "date", "x-date")
			return h
		}(), "", 200, ""},
		{"algorithm not allowed on route", "/other", signed("hmac-sha1", "/other", "", "date"), "", 200, ""}, // anonymous
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, _ := expect(t, "POST", gw+c.url, c.hdr, c.body, c.status, c.msg)
			if c.msg != "" {
				if resp.Header.Get("WWW-Authenticate") != `hmac realm="kiln"` {
					t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	_, body := do(t, "POST", gw+"/r/x?a=1", good, "hello")
	got := proxytest.DecodeEcho(t, []byte(body))
	h := http.Header(got.Header)
	if h.Get("X-Consumer-Username") != "alice" || h.Get("X-Credential-Identifier") != "alice-hmac" || h.Get("Authorization") != "" {
		t.Fatalf("upstream headers %v (hide_credentials must remove Authorization)", h)
	}
	_, body = do(t, "POST", gw+"/other", signed("hmac-sha1", "/other", "", "date"), "")
	if h := http.Header(proxytest.DecodeEcho(t, []byte(body)).Header); h.Get("X-Anonymous-Consumer") != "true" {
		t.Fatalf("sha1 is not allowed on /other: want the anonymous consumer, got %v", h)
	}
}
