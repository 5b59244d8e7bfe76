package plugins_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
	"github.com/kiln-dev/kiln/pkg/proxy/store/pgtest"
	"github.com/kiln-dev/kiln/pkg/proxy/store/storetest"
)

const (
	oaSvc2      = "bbbbbbbb-0000-4000-8000-000000000001"
	oaRoute2    = "bbbbbbbb-0000-4000-8000-000000000002"
	oaAnonRoute = "bbbbbbbb-0000-4000-8000-000000000003"
	provision   = "provision-key-0123456789"
	appRedirect = "http://app.example/cb?keep=1"
	// verifier is a 43-character PKCE code verifier.
	verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)

// fakeClock is the gateway's injected clock: tests move it instead of
// sleeping.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type oauthGW struct {
	https, http string
	clk         *fakeClock
	client      *http.Client
	from        *http.Client // replaces client when set
}

// startOAuth2 runs a gateway on TLS and plain loopback listeners with the
// oauth2 plugin globally (service svc with route /r, service 2 with route
// /other; override changes its config) and with anonymous on route /anon;
// tokens go to ts (nil: no database).
func startOAuth2(t *testing.T, ts store.OAuth2Store, override map[string]any) *oauthGW {
	t.Helper()
	up := proxytest.StartEcho(t, "up")
	host, port := proxytest.HostPort(t, up)
	clk := &fakeClock{}
	clk.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	// Connections from 127.0.0.2 come from a trusted peer (a TLS
	// terminating load balancer); the default client's are not.
	trusted, err := server.ParseTrustedIPs([]string{"127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	e := proxytest.NewEngine(t, server.Options{Plugins: plugins.Registry(), OAuth2: ts, Now: clk.Now, TrustedIPs: trusted})
	oauthConf := map[string]any{"scopes": []any{"read", "write"}, "provision_key": provision, "enable_authorization_code": true,
		"enable_implicit_grant": true, "enable_client_credentials": true, "enable_password_grant": true,
		"accept_http_if_already_terminated": true}
	for k, v := range override {
		oauthConf[k] = v
	}
	anonConf := map[string]any{"provision_key": provision, "enable_client_credentials": true, "anonymous": "anonymous"}
	cfg := proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": svcID, "name": "svc", "host": host, "port": port}, {"id": oaSvc2, "name": "svc2", "host": host, "port": port}},
		"routes": {
			{"id": routeID, "name": "r", "paths": []any{"/r"}, "service": fk(svcID)},
			{"id": oaRoute2, "name": "other", "paths": []any{"/other"}, "service": fk(oaSvc2)},
			{"id": oaAnonRoute, "name": "anon", "paths": []any{"/anon"}, "service": fk(svcID)},
		},
		"consumers": {{"id": aliceID, "username": "alice"}, {"id": anonID, "username": "anonymous"}},
		"oauth2_credentials": {
			{"consumer": fk(aliceID), "name": "app", "client_id": "app", "client_secret": "s3cret", "redirect_uris": []any{appRedirect}},
			{"consumer": fk(aliceID), "name": "pub", "client_id": "pub", "client_type": "public", "redirect_uris": []any{"http://pub.example/cb"}},
			{"consumer": fk(aliceID), "name": "hashed", "client_id": "hashed", "client_secret": "h1dden", "hash_secret": true,
				"redirect_uris": []any{"http://hashed.example/cb"}},
		},
		"plugins": {
			{"name": "oauth2", "config": oauthConf},
			{"name": "oauth2", "route": fk(oaAnonRoute), "config": anonConf},
		},
	})
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the gateway's self-signed default certificate
	}}
	t.Cleanup(client.CloseIdleConnections)
	var addrs [2]string
	for i, ssl := range []bool{true, false} {
		addrs[i], _ = proxytest.ServeProxy(t, e, server.ListenSpec{SSL: ssl})
	}
	return &oauthGW{https: "https://" + addrs[0], http: "http://" + addrs[1], clk: clk, client: client}
}

// send sends a request (a form body when form is not nil) and returns the
// response and its body.
func (g *oauthGW) send(t *testing.T, method, url string, hdr map[string]string, form url.Values) (*http.Response, []byte) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := g.client
	if g.from != nil {
		client = g.from
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// fromTrustedPeer returns g sending its requests from 127.0.0.2, which
// the gateway trusts.
func (g *oauthGW) fromTrustedPeer(t *testing.T) *oauthGW {
	c := *g
	c.from = proxytest.ClientFrom(t, "127.0.0.2")
	return &c
}

// call sends a request and decodes a JSON object answer.
func (g *oauthGW) call(t *testing.T, method, url string, hdr map[string]string, form url.Values) (*http.Response, map[string]any) {
	t.Helper()
	resp, b := g.send(t, method, url, hdr, form)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: status %d, body %q is not a JSON object", method, url, resp.StatusCode, b)
	}
	return resp, m
}

// wantOAuthError checks an OAuth 2.0 error answer.
func wantOAuthError(t *testing.T, resp *http.Response, m map[string]any, status int, code, desc string) {
	t.Helper()
	if resp.StatusCode != status || m["error"] != code || m["error_description"] != desc {
		t.Fatalf("got %d %v, want %d error=%s error_description=%q", resp.StatusCode, m, status, code, desc)
	}
}

func (g *oauthGW) token(t *testing.T, form url.Values) map[string]any {
	t.Helper()
	resp, m := g.call(t, "POST", g.https+"/r/oauth2/token", nil, form)
	if resp.StatusCode != 200 {
		t.Fatalf("token request %v: %d %v", form, resp.StatusCode, m)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Pragma") != "no-cache" {
		t.Fatalf("token response headers %v", resp.Header)
	}
	return m
}

// echoed calls the upstream through the gateway and returns what it saw.
func (g *oauthGW) echoed(t *testing.T, path string, hdr map[string]string) proxytest.Echoed {
	t.Helper()
	resp, b := g.send(t, "GET", g.https+path, hdr, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return proxytest.DecodeEcho(t, b)
}

func header(e proxytest.Echoed, name string) string {
	if v := e.Header[name]; len(v) > 0 {
		return v[0]
	}
	for k, v := range e.Header {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func bearer(tok any) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok.(string)}
}

func wantInvalidToken(t *testing.T, g *oauthGW, path string, hdr map[string]string) {
	t.Helper()
	resp, m := g.call(t, "GET", g.https+path, hdr, nil)
	wantOAuthError(t, resp, m, 401, "invalid_token", "The access token is invalid or has expired")
	if w := resp.Header.Get("WWW-Authenticate"); w != `Bearer realm="service" error="invalid_token" error_description="The access token is invalid or has expired"` {
		t.Fatalf("WWW-Authenticate %q", w)
	}
}

func TestOAuth2SQLite(t *testing.T) { runOAuth2(t, storetest.OpenSQLite(t)) }

func TestOAuth2Postgres(t *testing.T) {
	pg := pgtest.StartT(t)
	s, _ := storetest.OpenPostgres(t, pg, 0)
	runOAuth2(t, s)
}

// runOAuth2 drives every flow through a real loopback gateway on one store.
func runOAuth2(t *testing.T, st interface {
	store.Store
	store.OAuth2Store
}) {
	g := startOAuth2(t, st, nil)
	ctx := context.Background()
	version, err := st.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	changed := st.Changed()
	cc := url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"s3cret"}, "scope": {"read"}}

	t.Run("client credentials", func(t *testing.T) {
		m := g.token(t, cc)
		if m["token_type"] != "bearer" || m["expires_in"] != 7200.0 || m["refresh_token"] != nil || m["access_token"] == "" {
			t.Fatalf("token %v", m)
		}
		e := g.echoed(t, "/r/x", bearer(m["access_token"]))
		if header(e, "X-Consumer-Username") != "alice" || header(e, "X-Credential-Identifier") != "app" ||
			header(e, "X-Authenticated-Scope") != "read" || header(e, "X-Authenticated-Userid") != "" {
			t.Fatalf("upstream headers %v", e.Header)
		}
		// The token also works from the query string.
		e = g.echoed(t, "/r/x?access_token="+m["access_token"].(string), nil)
		if header(e, "X-Consumer-Id") != aliceID {
			t.Fatalf("upstream headers %v", e.Header)
		}
		// A token is bound to its service.
		wantInvalidToken(t, g, "/other/x", bearer(m["access_token"]))
	})

	t.Run("client authentication", func(t *testing.T) {
		basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("app:wrong"))
		resp, m := g.call(t, "POST", g.https+"/r/oauth2/token", map[string]string{"Authorization": basic},
			url.Values{"grant_type": {"client_credentials"}})
		wantOAuthError(t, resp, m, 401, "invalid_client", "Invalid client authentication")
		if resp.Header.Get("WWW-Authenticate") != `Basic realm="OAuth2.0"` {
			t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
		}
		basic = "Basic " + base64.StdEncoding.EncodeToString([]byte("hashed:h1dden"))
		resp, m = g.call(t, "POST", g.https+"/r/oauth2/token", map[string]string{"Authorization": basic},
			url.Values{"grant_type": {"client_credentials"}})
		if resp.StatusCode != 200 || m["access_token"] == nil {
			t.Fatalf("hashed secret: %d %v", resp.StatusCode, m)
		}
		resp, m = g.call(t, "POST", g.https+"/r/oauth2/token", nil, url.Values{"grant_type": {"client_credentials"},
			"client_id": {"app"}, "client_secret": {"wrong"}})
		wantOAuthError(t, resp, m, 400, "invalid_client", "Invalid client authentication")
		resp, m = g.call(t, "POST", g.https+"/r/oauth2/token", nil, url.Values{"grant_type": {"client_credentials"},
			"client_id": {"pub"}, "client_secret": {"x"}})
		wantOAuthError(t, resp, m, 400, "invalid_request", "client_secret is disallowed for public clients")
		resp, m = g.call(t, "POST", g.https+"/r/oauth2/token", nil, url.Values{"grant_type": {"implicit"}})
		wantOAuthError(t, resp, m, 400, "invalid_client", "Invalid client authentication")
		resp, m = g.call(t, "POST", g.https+"/r/oauth2/token", nil, url.Values{"grant_type": {"bogus"},
			"client_id": {"app"}, "client_secret": {"s3cret"}})
		wantOAuthError(t, resp, m, 400, "unsupported_grant_type", "Invalid grant_type")
	})

	t.Run("https required", func(t *testing.T) {
		// accept_http_if_already_terminated is on, but no client is
		// trusted (Kong's default trusted_ips), so X-Forwarded-Proto is
		// not believed.
		resp, m := g.call(t, "POST", g.http+"/r/oauth2/token", map[string]string{"X-Forwarded-Proto": "https"}, cc)
		wantOAuthError(t, resp, m, 400, "access_denied", "You must use HTTPS")
		resp, m = g.call(t, "GET", g.https+"/r/oauth2/token", nil, nil)
		wantOAuthError(t, resp, m, 405, "invalid_method", "The HTTP method GET is invalid for the token endpoint")
	})

	t.Run("https terminated by a trusted peer", func(t *testing.T) {
		// From a peer in trusted_ips, accept_http_if_already_terminated
		// believes X-Forwarded-Proto: https (and only that).
		tg := g.fromTrustedPeer(t)
		resp, m := tg.call(t, "POST", g.http+"/r/oauth2/token", map[string]string{"X-Forwarded-Proto": "HTTPS"}, cc)
		if resp.StatusCode != 200 || m["access_token"] == nil {
			t.Fatalf("token over terminated https: %d %v", resp.StatusCode, m)
		}
		for _, proto := range []string{"http", "https, http"} {
			resp, m = tg.call(t, "POST", g.http+"/r/oauth2/token", map[string]string{"X-Forwarded-Proto": proto}, cc)
			wantOAuthError(t, resp, m, 400, "access_denied", "You must use HTTPS")
		}
		resp, m = tg.call(t, "POST", g.http+"/r/oauth2/token", nil, cc)
		wantOAuthError(t, resp, m, 400, "access_denied", "You must use HTTPS")
	})

	t.Run("scopes", func(t *testing.T) {
		bad := url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"}, "client_secret": {"s3cret"}, "scope": {"read admin"}}
		resp, m := g.call(t, "POST", g.https+"/r/oauth2/token", nil, bad)
		wantOAuthError(t, resp, m, 400, "invalid_scope", `"admin" is an invalid scope`)
	})

	t.Run("password and refresh", func(t *testing.T) {
		pw := url.Values{"grant_type": {"password"}, "client_id": {"app"}, "client_secret": {"s3cret"},
			"provision_key": {"wrong"}, "authenticated_userid": {"u-42"}, "scope": {"read write"}}
		resp, m := g.call(t, "POST", g.https+"/r/oauth2/token", nil, pw)
		wantOAuthError(t, resp, m, 400, "invalid_provision_key", "Invalid provision_key")
		pw.Set("provision_key", provision)
		pw.Set("state", "s1")
		m = g.token(t, pw)
		if m["refresh_token"] == nil || m["state"] != "s1" {
			t.Fatalf("password grant %v", m)
		}
		e := g.echoed(t, "/r/x", bearer(m["access_token"]))
		if header(e, "X-Authenticated-Userid") != "u-42" || header(e, "X-Authenticated-Scope") != "read write" {
			t.Fatalf("upstream headers %v", e.Header)
		}
		ref := url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"}, "client_secret": {"s3cret"},
			"refresh_token": {m["refresh_token"].(string)}}
		m2 := g.token(t, ref)
		if m2["access_token"] == m["access_token"] || m2["refresh_token"] == m["refresh_token"] {
			t.Fatalf("refresh returned the old tokens: %v", m2)
		}
		wantInvalidToken(t, g, "/r/x", bearer(m["access_token"]))
		resp, m3 := g.call(t, "POST", g.https+"/r/oauth2/token", nil, ref)
		wantOAuthError(t, resp, m3, 400, "invalid_request", "Invalid refresh_token")
		e = g.echoed(t, "/r/x", bearer(m2["access_token"]))
		if header(e, "X-Authenticated-Userid") != "u-42" {
			t.Fatalf("refreshed token lost its user: %v", e.Header)
		}
		// Expiry: the clock passes token_expiration (7200 s).
		g.clk.Advance(7201 * time.Second)
		wantInvalidToken(t, g, "/r/x", bearer(m2["access_token"]))
		// The refresh token outlives the access token.
		ref.Set("refresh_token", m2["refresh_token"].(string))
		m4 := g.token(t, ref)
		g.echoed(t, "/r/x", bearer(m4["access_token"]))
	})

	t.Run("authorization code with PKCE", func(t *testing.T) {
		auth := url.Values{"response_type": {"code"}, "client_id": {"pub"}, "provision_key": {provision},
			"authenticated_userid": {"u-7"}, "scope": {"read"}, "state": {"xyz"}}
		resp, m := g.call(t, "POST", g.https+"/r/oauth2/authorize", nil, auth)
		if resp.StatusCode != 400 || !strings.Contains(m["redirect_uri"].(string), "error=invalid_request") {
			t.Fatalf("public client without challenge: %d %v", resp.StatusCode, m)
		}
		sum := sha256.Sum256([]byte(verifier))
		auth.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
		auth.Set("code_challenge_method", "S256")
		resp, m = g.call(t, "POST", g.https+"/r/oauth2/authorize", nil, auth)
		if resp.StatusCode != 200 {
			t.Fatalf("authorize: %d %v", resp.StatusCode, m)
		}
		u, err := url.Parse(m["redirect_uri"].(string))
		if err != nil || u.Host != "pub.example" || u.Query().Get("state") != "xyz" || u.Query().Get("code") == "" {
			t.Fatalf("redirect_uri %v", m["redirect_uri"])
		}
		code := u.Query().Get("code")
		tok := url.Values{"grant_type": {"authorization_code"}, "client_id": {"pub"}, "code": {code},
			"code_verifier": {strings.Repeat("x", 43)}}
		resp, m = g.call(t, "POST", g.https+"/r/oauth2/token", nil, tok)
		wantOAuthError(t, resp, m, 400, "invalid_grant", "Invalid code")
		tok.Set("code_verifier", verifier)
		m = g.token(t, tok)
		e := g.echoed(t, "/r/x", bearer(m["access_token"]))
		if header(e, "X-Authenticated-Userid") != "u-7" || header(e, "X-Credential-Identifier") != "pub" {
			t.Fatalf("upstream headers %v", e.Header)
		}
		resp, m = g.call(t, "POST", g.https+"/r/oauth2/token", nil, tok)
		wantOAuthError(t, resp, m, 400, "invalid_request", "Invalid code")
	})

	t.Run("authorization code expires", func(t *testing.T) {
		auth := url.Values{"response_type": {"code"}, "client_id": {"app"}, "provision_key": {provision},
			"authenticated_userid": {"u-8"}}
		resp, m := g.call(t, "POST", g.https+"/r/oauth2/authorize", nil, auth)
		if resp.StatusCode != 200 {
			t.Fatalf("authorize: %d %v", resp.StatusCode, m)
		}
		u, _ := url.Parse(m["redirect_uri"].(string))
		if u.Query().Get("keep") != "1" {
			t.Fatalf("redirect_uri lost its query: %v", u)
		}
		g.clk.Advance(301 * time.Second)
		resp, m = g.call(t, "POST", g.https+"/r/oauth2/token", nil, url.Values{"grant_type": {"authorization_code"},
			"client_id": {"app"}, "client_secret": {"s3cret"}, "code": {u.Query().Get("code")}})
		wantOAuthError(t, resp, m, 400, "invalid_request", "Invalid code")
		auth.Set("provision_key", "nope")
		resp, m = g.call(t, "POST", g.https+"/r/oauth2/authorize", nil, auth)
		wantOAuthError(t, resp, m, 400, "invalid_provision_key", "Invalid provision_key")
	})

	t.Run("a code is spent once under concurrent requests", func(t *testing.T) {
		resp, m := g.call(t, "POST", g.https+"/r/oauth2/authorize", nil, url.Values{"response_type": {"code"},
			"client_id": {"app"}, "provision_key": {provision}, "authenticated_userid": {"u-c"}})
		if resp.StatusCode != 200 {
			t.Fatalf("authorize: %d %v", resp.StatusCode, m)
		}
		u, _ := url.Parse(m["redirect_uri"].(string))
		form := url.Values{"grant_type": {"authorization_code"}, "client_id": {"app"}, "client_secret": {"s3cret"},
			"code": {u.Query().Get("code")}}
		const n = 6
		statuses := make(chan int, n)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := g.client.PostForm(g.https+"/r/oauth2/token", form)
				if err != nil {
					t.Error(err)
					statuses <- 0
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses <- resp.StatusCode
			}()
		}
		wg.Wait()
		close(statuses)
		ok := 0
		for s := range statuses {
			if s == 200 {
				ok++
			} else if s != 400 {
				t.Errorf("status %d", s)
			}
		}
		if ok != 1 {
			t.Fatalf("%d of %d concurrent requests got a token for one code", ok, n)
		}
	})

	t.Run("implicit grant", func(t *testing.T) {
		resp, m := g.call(t, "POST", g.https+"/r/oauth2/authorize", nil, url.Values{"response_type": {"token"},
			"client_id": {"app"}, "provision_key": {provision}, "authenticated_userid": {"u-9"}, "state": {"st"}})
		if resp.StatusCode != 200 {
			t.Fatalf("authorize: %d %v", resp.StatusCode, m)
		}
		u, _ := url.Parse(m["redirect_uri"].(string))
		frag, _ := url.ParseQuery(u.Fragment)
		if frag.Get("token_type") != "bearer" || frag.Get("refresh_token") != "" || frag.Get("state") != "st" {
			t.Fatalf("redirect_uri %v", u)
		}
		e := g.echoed(t, "/r/x", bearer(frag.Get("access_token")))
		if header(e, "X-Authenticated-Userid") != "u-9" {
			t.Fatalf("upstream headers %v", e.Header)
		}
	})

	t.Run("missing and unknown tokens, anonymous", func(t *testing.T) {
		resp, m := g.call(t, "GET", g.https+"/r/x", nil, nil)
		wantOAuthError(t, resp, m, 401, "invalid_request", "The access token is missing")
		if resp.Header.Get("WWW-Authenticate") != `Bearer realm="service"` {
			t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
		}
		wantInvalidToken(t, g, "/r/x", map[string]string{"Authorization": "Bearer nope"})
		e := g.echoed(t, "/anon/x", map[string]string{"X-Authenticated-Userid": "forged"})
		if header(e, "X-Anonymous-Consumer") != "true" || header(e, "X-Consumer-Username") != "anonymous" ||
			header(e, "X-Authenticated-Userid") != "" {
			t.Fatalf("anonymous upstream headers %v", e.Header)
		}
	})

	// Tokens and codes are runtime rows: none of the writes above changed
	// the configuration or woke the data plane's recompile.
	if v, err := st.Version(ctx); err != nil || v != version {
		t.Fatalf("configuration version %d after token writes, want %d (%v)", v, version, err)
	}
	select {
	case <-changed:
		t.Fatal("token writes notified a configuration change")
	default:
	}
}

// TestOAuth2ReuseGlobalHide covers reuse_refresh_token, global_credentials
// and hide_credentials.
func TestOAuth2ReuseGlobalHide(t *testing.T) {
	g := startOAuth2(t, storetest.OpenSQLite(t), map[string]any{"reuse_refresh_token": true, "global_credentials": true,
		"hide_credentials": true})
	m := g.token(t, url.Values{"grant_type": {"password"}, "client_id": {"app"}, "client_secret": {"s3cret"},
		"provision_key": {provision}, "authenticated_userid": {"u-1"}})
	ref := url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"}, "client_secret": {"s3cret"},
		"refresh_token": {m["refresh_token"].(string)}}
	m2 := g.token(t, ref)
	if m2["refresh_token"] != m["refresh_token"] || m2["access_token"] == m["access_token"] {
		t.Fatalf("reuse_refresh_token: %v after %v", m2, m)
	}
	wantInvalidToken(t, g, "/r/x", bearer(m["access_token"]))
	m3 := g.token(t, ref)
	if m3["refresh_token"] != m["refresh_token"] {
		t.Fatalf("second refresh: %v", m3)
	}
	// A global token works on every service with a global oauth2 plugin,
	// and the upstream never sees it.
	for _, path := range []string{"/r/x", "/other/x"} {
		e := g.echoed(t, path, bearer(m3["access_token"]))
		if header(e, "Authorization") != "" || header(e, "X-Authenticated-Userid") != "u-1" {
			t.Fatalf("%s upstream headers %v", path, e.Header)
		}
	}
}

// TestOAuth2WithoutDatabase: in DB-less mode (no token store) the plugin
// refuses to run with Kong's error and requests in its scope fail closed.
func TestOAuth2WithoutDatabase(t *testing.T) {
	cfg := proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"plugins": {{"name": "oauth2", "config": map[string]any{"enable_client_credentials": true}}},
	})
	_, err := plugins.Registry()["oauth2"].New(cfg.Plugins[0], plugin.NewEnv(cfg, plugin.NewState()))
	if err == nil || err.Error() != "[off] cannot create 'oauth2_tokens' entities when not using a database" {
		t.Fatalf("error %v", err)
	}
	g := startOAuth2(t, nil, nil)
	resp, body := do(t, "GET", g.http+"/r/x", nil, "")
	if resp.StatusCode != 500 || message(t, body) != "An unexpected error occurred" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestOAuth2Schema(t *testing.T) {
	k := entity.KindByName("plugins")
	_, errs := entity.Validate(k, map[string]any{"id": entity.NewID(), "name": "oauth2", "config": map[string]any{}})
	if errs == nil || !strings.Contains(errs.Flatten()[0], "at least one of these fields must be true") {
		t.Fatalf("no grant flow: %v", errs)
	}
	out, errs := entity.Validate(k, map[string]any{"id": entity.NewID(), "name": "oauth2",
		"config": map[string]any{"enable_password_grant": true}})
	if errs != nil {
		t.Fatal(errs)
	}
	c := out["config"].(map[string]any)
	if pk, _ := c["provision_key"].(string); len(pk) != 32 || c["token_expiration"] != 7200.0 || c["pkce"] != "lax" ||
		c["refresh_token_ttl"] != 1209600.0 || c["auth_header_name"] != "authorization" {
		t.Fatalf("defaults %v", c)
	}
	if _, errs := entity.Validate(k, map[string]any{"id": entity.NewID(), "name": "oauth2",
		"config": map[string]any{"enable_password_grant": true, "persistent_refresh_token": true}}); errs == nil ||
		!strings.Contains(strings.Join(errs.Flatten(), ";"), "persistent_refresh_token: unknown field") {
		t.Fatalf("persistent_refresh_token: %v", errs)
	}
	cred := entity.KindByName("oauth2_credentials")
	out, errs = entity.Validate(cred, map[string]any{"id": entity.NewID(), "name": "x", "consumer": fk(aliceID),
		"client_secret": "s", "hash_secret": true})
	if errs != nil {
		t.Fatal(errs)
	}
	h := out["client_secret"].(string)
	if !entity.VerifyOAuth2Secret("s", h) || entity.VerifyOAuth2Secret("t", h) || out["client_id"] == "" || out["client_type"] != "confidential" {
		t.Fatalf("credential %v", out)
	}
	if _, errs = entity.Validate(cred, map[string]any{"id": entity.NewID(), "name": "x", "consumer": fk(aliceID),
		"redirect_uris": []any{"http://a.example/#frag"}}); errs == nil {
		t.Fatal("a redirect URI with a fragment was accepted")
	}
}

// heldTokens is a token store whose lookup of heldToken waits for release
// (a slow or unreachable database).
type heldTokens struct {
	store.OAuth2Store
	held    chan struct{} // closed when the held lookup started
	release chan struct{}
}

const heldToken = "held-token"

func (h *heldTokens) OAuth2TokenByAccess(ctx context.Context, access string, now time.Time) (store.OAuth2Token, error) {
	if access == heldToken {
		close(h.held)
		<-h.release
	}
	return h.OAuth2Store.OAuth2TokenByAccess(ctx, access, now)
}

// TestOAuth2StoreWaitsOffTheLoop: while a token lookup waits on the
// database, the gateway's event loops go on serving their other
// connections (each loop serves many; the lookup runs off it).
func TestOAuth2StoreWaitsOffTheLoop(t *testing.T) {
	ts := &heldTokens{OAuth2Store: storetest.OpenSQLite(t), held: make(chan struct{}), release: make(chan struct{})}
	g := startOAuth2(t, ts, nil)
	released := false
	defer func() {
		if !released {
			close(ts.release)
		}
	}()
	done := make(chan int, 1)
	go func() {
		client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
		req, _ := http.NewRequest("GET", g.http+"/r", nil)
		req.Header.Set("Authorization", "Bearer "+heldToken)
		resp, err := client.Do(req)
		if err != nil {
			done <- 0
			return
		}
		_ = resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-ts.held
	// New connections go to the loop serving the fewest: with several
	// open at once, some share the held request's loop.
	addr := strings.TrimPrefix(g.http, "http://")
	conns := make([]net.Conn, 4*runtime.GOMAXPROCS(0))
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for i, c := range conns {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /r HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d, while a token lookup waits: %v", i, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("connection %d, no token: %d, want 401", i, resp.StatusCode)
		}
	}
	close(ts.release)
	released = true
	if code := <-done; code != http.StatusUnauthorized {
		t.Fatalf("the held request (an unknown token): %d, want 401", code)
	}
}
