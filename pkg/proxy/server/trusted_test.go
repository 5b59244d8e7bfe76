package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
)

// trustedGateway serves the test configuration with trusted_ips
// 127.0.0.2, 10.0.0.0/8 and 192.168.1.1: clients dialing from 127.0.0.1
// are untrusted peers, from 127.0.0.2 trusted ones.
func trustedGateway(t *testing.T, header string, recursive bool, up string) (gw, accessLog string) {
	t.Helper()
	trusted, err := server.ParseTrustedIPs(strings.Split("127.0.0.2, 10.0.0.0/8,192.168.1.1", ","))
	if err != nil {
		t.Fatal(err)
	}
	accessLog = filepath.Join(t.TempDir(), "access.log")
	log, err := os.Create(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close() })
	e, gw := proxytest.StartGatewayOptions(t, server.Options{Plugins: plugins.Registry(), AccessLog: log,
		TrustedIPs: trusted, RealIPHeader: header, RealIPRecursive: recursive})
	host, port := proxytest.HostPort(t, up)
	svc := map[string]any{"id": "6f0ac1a8-1c5d-4a0e-9d43-0d2b5a7c9e11"}
	cfg := proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": svc["id"], "name": "echo", "host": host, "port": port}},
		"routes": {
			{"name": "fwd", "paths": []any{"/fwd"}, "service": svc},
			{"name": "secure", "paths": []any{"/secure"}, "protocols": []any{"https"}, "service": svc},
			{"name": "redirect", "paths": []any{"/redir"}, "protocols": []any{"https"}, "https_redirect_status_code": 301, "service": svc},
			{"id": "0d1f3a7e-5b2c-4c8e-a9f1-2e3d4c5b6a71", "name": "deny", "paths": []any{"/deny"}, "service": svc},
			{"id": "4a6b8c0d-2e4f-4a1b-9c3d-5e7f9a1b3c52", "name": "limited", "paths": []any{"/limited"}, "service": svc},
		},
		"plugins": {
			{"name": "ip-restriction", "route": map[string]any{"id": "0d1f3a7e-5b2c-4c8e-a9f1-2e3d4c5b6a71"},
				"config": map[string]any{"deny": []any{"203.0.113.7"}}},
			{"name": "rate-limiting", "route": map[string]any{"id": "4a6b8c0d-2e4f-4a1b-9c3d-5e7f9a1b3c52"},
				"config": map[string]any{"year": 100, "limit_by": "ip"}},
		},
	})
	if err := e.Update(cfg); err != nil {
		t.Fatal(err)
	}
	return gw, accessLog
}

// send makes a GET from client with header field lines.
func send(t *testing.T, client *http.Client, url string, hdr map[string][]string) (*http.Response, []byte) {
	t.Helper()
	return proxytest.GetWith(t, client, url, http.Header(hdr))
}

func TestTrustedIPsForwardedHeaders(t *testing.T) {
	up := proxytest.StartEcho(t, "a")
	gws := map[string]string{}
	for name, mode := range map[string]struct {
		header    string
		recursive bool
	}{"x-real-ip": {"", false}, "xff": {"X-Forwarded-For", false}, "xff-recursive": {"x-forwarded-for", true}} {
		gws[name], _ = trustedGateway(t, mode.header, mode.recursive, up)
	}
	untrusted, trusted := proxytest.ClientFrom(t, "127.0.0.1"), proxytest.ClientFrom(t, "127.0.0.2")
	spoof := map[string][]string{
		"X-Real-Ip": {"203.0.113.7"}, "X-Forwarded-For": {"198.51.100.1"}, "X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host": {"lb.example"}, "X-Forwarded-Port": {"443"}, "X-Forwarded-Path": {"/outer/fwd/x"},
		"X-Forwarded-Prefix": {"/outer"},
	}
	// kiln's own values for a request to /fwd/x.
	own := func(gw string) map[string]string {
		_, port, _ := strings.Cut(strings.TrimPrefix(gw, "http://"), ":")
		return map[string]string{"X-Forwarded-Proto": "http", "X-Forwarded-Host": "127.0.0.1", "X-Forwarded-Port": port,
			"X-Forwarded-Path": "/fwd/x", "X-Forwarded-Prefix": "/fwd"}
	}
	passed := map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "lb.example", "X-Forwarded-Port": "443",
		"X-Forwarded-Path": "/outer/fwd/x", "X-Forwarded-Prefix": "/outer"}
	for _, tc := range []struct {
		name      string
		gw        string
		client    *http.Client
		hdr       map[string][]string
		forwarded map[string]string // nil: kiln's own values
		realIP    string
		xff       string
	}{
		{"untrusted peer: everything overwritten", "x-real-ip", untrusted, spoof, nil, "127.0.0.1", "198.51.100.1, 127.0.0.1"},
		{"trusted peer: its headers pass", "x-real-ip", trusted, spoof, passed, "203.0.113.7", "198.51.100.1, 127.0.0.2"},
		{"trusted peer sending nothing", "x-real-ip", trusted, nil, nil, "127.0.0.2", "127.0.0.2"},
		{"trusted peer: X-Real-IP without X-Forwarded-For", "x-real-ip", trusted,
			map[string][]string{"X-Real-Ip": {"203.0.113.8"}}, nil, "203.0.113.8", "203.0.113.8"},
		{"trusted peer: some headers only", "x-real-ip", trusted,
			map[string][]string{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Prefix": {"/p"}}, nil, "127.0.0.2", "127.0.0.2"},
		{"malformed X-Real-IP", "x-real-ip", trusted, map[string][]string{"X-Real-Ip": {"not-an-ip"}}, nil, "127.0.0.2", "127.0.0.2"},
		{"X-Real-IP with a port", "x-real-ip", trusted, map[string][]string{"X-Real-Ip": {"[2001:DB8::1]:443"}}, nil, "2001:db8::1", "2001:db8::1"},
		{"xff: untrusted peer", "xff", untrusted, map[string][]string{"X-Forwarded-For": {"203.0.113.9, 10.1.1.1"}}, nil,
			"127.0.0.1", "203.0.113.9, 10.1.1.1, 127.0.0.1"},
		{"xff: last address", "xff", trusted, map[string][]string{"X-Forwarded-For": {"203.0.113.9, 10.1.1.1"}}, nil,
			"10.1.1.1", "203.0.113.9, 10.1.1.1, 127.0.0.2"},
		{"xff: X-Real-IP ignored", "xff", trusted, map[string][]string{"X-Real-Ip": {"203.0.113.7"}}, nil, "127.0.0.2", "127.0.0.2"},
		{"xff: malformed last entry", "xff", trusted, map[string][]string{"X-Forwarded-For": {"203.0.113.9, unknown"}}, nil,
			"127.0.0.2", "203.0.113.9, unknown, 127.0.0.2"},
		{"recursive: last untrusted", "xff-recursive", trusted,
			map[string][]string{"X-Forwarded-For": {"198.51.100.1, 203.0.113.9,10.1.1.1 , 192.168.1.1"}}, nil,
			"203.0.113.9", "198.51.100.1, 203.0.113.9,10.1.1.1 , 192.168.1.1, 127.0.0.2"},
		{"recursive: all trusted", "xff-recursive", trusted, map[string][]string{"X-Forwarded-For": {"10.0.0.1, 10.0.0.2"}}, nil,
			"10.0.0.1", "10.0.0.1, 10.0.0.2, 127.0.0.2"},
		{"recursive: stops at a malformed entry", "xff-recursive", trusted,
			map[string][]string{"X-Forwarded-For": {"203.0.113.9, junk, 10.1.1.1"}}, nil, "10.1.1.1", "203.0.113.9, junk, 10.1.1.1, 127.0.0.2"},
		{"recursive: several field lines", "xff-recursive", trusted,
			map[string][]string{"X-Forwarded-For": {"203.0.113.9", "10.1.1.1:8080"}}, nil, "203.0.113.9", "203.0.113.9, 10.1.1.1:8080, 127.0.0.2"},
		{"recursive: untrusted peer", "xff-recursive", untrusted, map[string][]string{"X-Forwarded-For": {"203.0.113.9, 10.1.1.1"}}, nil,
			"127.0.0.1", "203.0.113.9, 10.1.1.1, 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw := gws[tc.gw]
			resp, body := send(t, tc.client, gw+"/fwd/x", tc.hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			h := http.Header(proxytest.DecodeEcho(t, body).Header)
			want := own(gw)
			if tc.forwarded != nil {
				want = tc.forwarded
			} else if tc.client == trusted {
				// A trusted peer's headers replace kiln's one by one.
				for k := range want {
					if vs := tc.hdr[k]; len(vs) > 0 {
						want[k] = vs[0]
					}
				}
			}
			want["X-Real-Ip"], want["X-Forwarded-For"] = tc.realIP, tc.xff
			for k, v := range want {
				if got := strings.Join(h[k], ", "); got != v {
					t.Errorf("upstream %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestTrustedIPsPluginsAndRoutes(t *testing.T) {
	up := proxytest.StartEcho(t, "a")
	gw, accessLog := trustedGateway(t, "", false, up)
	untrusted, trusted := proxytest.ClientFrom(t, "127.0.0.1"), proxytest.ClientFrom(t, "127.0.0.2")
	xrip := func(ip string) map[string][]string { return map[string][]string{"X-Real-Ip": {ip}} }
	for _, tc := range []struct {
		name   string
		client *http.Client
		path   string
		hdr    map[string][]string
		status int
		// remaining is the X-RateLimit-Remaining-Year wanted ("" unchecked).
		remaining string
		location  string
	}{
		{"ip-restriction sees the trusted peer's client", trusted, "/deny", xrip("203.0.113.7"), http.StatusForbidden, "", ""},
		{"ip-restriction: other client", trusted, "/deny", xrip("203.0.113.8"), http.StatusOK, "", ""},
		{"ip-restriction: untrusted peer's claim ignored", untrusted, "/deny", xrip("203.0.113.7"), http.StatusOK, "", ""},
		{"rate-limiting by the real client", trusted, "/limited", xrip("198.51.100.1"), http.StatusOK, "99", ""},
		{"rate-limiting: same client again", trusted, "/limited", xrip("198.51.100.1"), http.StatusOK, "98", ""},
		{"rate-limiting: another client behind the same peer", trusted, "/limited", xrip("198.51.100.2"), http.StatusOK, "99", ""},
		{"rate-limiting: untrusted peer counted by its socket", untrusted, "/limited", xrip("198.51.100.1"), http.StatusOK, "99", ""},
		{"https-only route: trusted X-Forwarded-Proto https", trusted, "/secure", map[string][]string{"X-Forwarded-Proto": {"https"}}, http.StatusOK, "", ""},
		{"https-only route: trusted X-Forwarded-Proto http", trusted, "/secure", map[string][]string{"X-Forwarded-Proto": {"http"}}, http.StatusUpgradeRequired, "", ""},
		{"https-only route: trusted peer without the header", trusted, "/secure", nil, http.StatusUpgradeRequired, "", ""},
		{"https-only route: untrusted X-Forwarded-Proto", untrusted, "/secure", map[string][]string{"X-Forwarded-Proto": {"https"}}, http.StatusUpgradeRequired, "", ""},
		{"redirect to the trusted forwarded host", trusted, "/redir/a?b=1", map[string][]string{"X-Forwarded-Host": {"lb.example"}},
			http.StatusMovedPermanently, "", "https://lb.example/redir/a?b=1"},
		{"redirect: untrusted forwarded host ignored", untrusted, "/redir/a", map[string][]string{"X-Forwarded-Host": {"lb.example"}},
			http.StatusMovedPermanently, "", "https://127.0.0.1/redir/a"},
		{"no route matched", trusted, "/nowhere", xrip("203.0.113.77"), http.StatusNotFound, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := *tc.client
			client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, body := send(t, &client, gw+tc.path, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.remaining != "" && resp.Header.Get("X-RateLimit-Remaining-Year") != tc.remaining {
				t.Errorf("X-RateLimit-Remaining-Year %q, want %s", resp.Header.Get("X-RateLimit-Remaining-Year"), tc.remaining)
			}
			if tc.location != "" && resp.Header.Get("Location") != tc.location {
				t.Errorf("Location %q, want %s", resp.Header.Get("Location"), tc.location)
			}
		})
	}
	// The access log records the client address the plugins saw, also
	// for a request no route matched (lines may land just after the
	// response, so poll).
	proxytest.WaitFor(t, "access log lines for /deny from 203.0.113.7 and /nowhere from 203.0.113.77", func() bool {
		log, err := os.ReadFile(accessLog)
		if err != nil {
			t.Fatal(err)
		}
		found, found404 := false, false
		for _, line := range strings.Split(string(log), "\n") {
			var ent struct {
				ClientIP string `json:"client_ip"`
				URI      string `json:"uri"`
			}
			if json.Unmarshal([]byte(line), &ent) != nil {
				continue
			}
			found = found || (ent.URI == "/deny" && ent.ClientIP == "203.0.113.7")
			found404 = found404 || (ent.URI == "/nowhere" && ent.ClientIP == "203.0.113.77")
		}
		return found && found404
	})
}
