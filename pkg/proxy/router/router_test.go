package router

import (
	"net/http"
	"testing"
)

func TestJoinV0(t *testing.T) {
	// The worked examples from Kong's get_upstream_uri_v0 (route path /foo),
	// plus the remaining branches of the table.
	cases := []struct {
		svc   string
		strip bool
		req   string
		want  string
	}{
		{"", true, "/foo/bar", "/bar"},
		{"", true, "/foo", "/"},
		{"/svc", true, "/foo/bar", "/svc/bar"},
		{"/svc", true, "/foo", "/svc"},
		{"/svc", true, "/foo/", "/svc/"},
		{"/svc", true, "/foobar", "/svc/bar"},
		{"/svc", false, "/foo/bar", "/svc/foo/bar"},
		{"/svc/", true, "/foo", "/svc"},
		{"/svc/", true, "/foo/", "/svc/"},
		{"/svc/", true, "/foo/bar", "/svc/bar"},
		{"/svc/", true, "/foobar", "/svc/bar"},
		{"/svc/", false, "/foo/bar", "/svc/foo/bar"},
		{"/svc", false, "/", "/svc"},
		{"", false, "/foo/bar", "/foo/bar"},
		{"", true, "/foo/", "/"},
		{"/svc", true, "/foo./x", "/svc/x"},
	}
	for _, c := range cases {
		prefix := "/foo"
		if c.req == "/" {
			prefix = "/"
		}
		got := JoinV0(c.svc, c.strip, prefix, c.req)
		if got != c.want {
			t.Errorf("JoinV0(svc=%q, strip=%v, req=%q) = %q, want %q", c.svc, c.strip, c.req, got, c.want)
		}
	}
}

func TestJoinV1(t *testing.T) {
	cases := []struct {
		svc, req, want string
		strip          bool
	}{
		{"/svc", "/foo/bar", "/svc/bar", true},
		{"/svc/", "/foo/bar", "/svc/bar", true},
		{"/svc", "/foobar", "/svcbar", true},
		{"/svc/", "/foo/bar", "/svc/foo/bar", false},
	}
	for _, c := range cases {
		if got := JoinV1(c.svc, c.strip, "/foo", c.req); got != c.want {
			t.Errorf("JoinV1(%q, %v, %q) = %q, want %q", c.svc, c.strip, c.req, got, c.want)
		}
	}
}

func TestNormalizePath(t *testing.T) {
	cases := map[string]string{
		"/":               "/",
		"":                "/",
		"/a/b":            "/a/b",
		"/a//b":           "/a/b",
		"/a/./b":          "/a/b",
		"/a/../b":         "/b",
		"/../b":           "/b",
		"/a/b/..":         "/a/",
		"/%61%62c":        "/abc",
		"/a%2fb":          "/a%2Fb",
		"/a%20b":          "/a%20b",
		"/foo/%2E%2E/bar": "/bar",
		"/x/":             "/x/",
		"/a%zz":           "/a%zz",
	}
	for in, want := range cases {
		if got := NormalizePath(in); got != want {
			t.Errorf("NormalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func mustRouter(t testing.TB, routes ...*Route) *Router {
	t.Helper()
	r, err := New(routes)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMatch(t *testing.T) {
	routes := []*Route{
		{ID: "01", Name: "prefix-foo", Paths: []string{"/foo"}},
		{ID: "02", Name: "prefix-foobar", Paths: []string{"/foo/bar"}},
		{ID: "03", Name: "regex-foo", Paths: []string{`~/foo/\d+$`}},
		{ID: "04", Name: "host-exact", Hosts: []string{"api.example.com"}},
		{ID: "05", Name: "host-wild-suffix", Hosts: []string{"*.example.com"}},
		{ID: "06", Name: "host-wild-prefix", Hosts: []string{"shop.*"}},
		{ID: "07", Name: "host-path", Hosts: []string{"api.example.com"}, Paths: []string{"/foo"}},
		{ID: "08", Name: "method", Methods: []string{"DELETE"}, Paths: []string{"/foo"}},
		{ID: "09", Name: "header", Headers: map[string][]string{"x-version": {"v2"}}, Paths: []string{"/foo"}},
		{ID: "10", Name: "header-regex", Headers: map[string][]string{"x-tier": {"~*^gold"}}},
		{ID: "11", Name: "host-port", Hosts: []string{"ported.test:8000"}},
		{ID: "12", Name: "regex-prio-low", Paths: []string{`~/r/a`}, RegexPriority: 1},
		{ID: "13", Name: "regex-prio-high", Paths: []string{`~/r/[a-z]`}, RegexPriority: 5},
		{ID: "14", Name: "sni", SNIs: []string{"secure.test"}, Protocols: []string{"https"}},
		{ID: "15", Name: "mixed", Paths: []string{"/m", "/mixed-long"}},
	}
	r := mustRouter(t, routes...)
	cases := []struct {
		name   string
		req    Request
		want   string
		prefix string
	}{
		{"longest prefix wins", Request{Method: "GET", Path: "/foo/bar/baz"}, "prefix-foobar", "/foo/bar"},
		{"plain prefix", Request{Method: "GET", Path: "/foo/x"}, "prefix-foo", "/foo"},
		{"regex beats prefix regardless of length", Request{Method: "GET", Path: "/foo/123"}, "regex-foo", "/foo/123"},
		{"regex anchored at end fails", Request{Method: "GET", Path: "/foo/123/x"}, "prefix-foo", "/foo"},
		{"prefix is a string prefix", Request{Method: "GET", Path: "/foobar"}, "prefix-foo", "/foo"},
		{"host+path beats path", Request{Method: "GET", Host: "api.example.com", Path: "/foo/x"}, "host-path", "/foo"},
		{"exact host", Request{Method: "GET", Host: "API.example.com:8000", Path: "/zzz"}, "host-exact", ""},
		{"wildcard suffix host", Request{Method: "GET", Host: "a.b.example.com", Path: "/zzz"}, "host-wild-suffix", ""},
		{"wildcard prefix host", Request{Method: "GET", Host: "shop.io", Path: "/zzz"}, "host-wild-prefix", ""},
		{"method + path beats path", Request{Method: "DELETE", Path: "/foo"}, "method", "/foo"},
		{"header + path", Request{Method: "GET", Path: "/foo", Header: http.Header{"X-Version": {"V2"}}}, "header", "/foo"},
		{"header regex", Request{Method: "GET", Path: "/zzz", Header: http.Header{"X-Tier": {"Golden"}}}, "header-regex", ""},
		{"host with port matches listener port", Request{Method: "GET", Host: "ported.test", Port: 8000, Path: "/"}, "host-port", ""},
		{"host with port needs the port", Request{Method: "GET", Host: "ported.test", Port: 9000, Path: "/q", Scheme: "https", SNI: "x"}, "", ""},
		{"higher regex_priority wins", Request{Method: "GET", Path: "/r/a"}, "regex-prio-high", "/r/a"},
		{"sni over https", Request{Method: "GET", Scheme: "https", SNI: "secure.test", Path: "/q"}, "sni", ""},
		{"sni ignored over http", Request{Method: "GET", Scheme: "http", Path: "/q"}, "sni", ""},
		{"sni mismatch over https", Request{Method: "GET", Scheme: "https", SNI: "other.test", Path: "/q"}, "", ""},
		{"split route longer group", Request{Method: "GET", Path: "/mixed-long/x"}, "mixed", "/mixed-long"},
		{"normalized before matching", Request{Method: "GET", Path: "/x/../foo/%62ar"}, "prefix-foobar", "/foo/bar"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, ok := r.Match(&c.req)
			if c.want == "" {
				if ok {
					t.Fatalf("matched %s, want no match", m.Route.Name)
				}
				return
			}
			if !ok {
				t.Fatalf("no match, want %s", c.want)
			}
			if m.Route.Name != c.want || m.Prefix != c.prefix {
				t.Fatalf("matched %s (prefix %q), want %s (prefix %q)", m.Route.Name, m.Prefix, c.want, c.prefix)
			}
		})
	}
}

func TestPathBeatsWildcardHost(t *testing.T) {
	// Same match weight: a plain prefix path's length outranks a wildcard
	// host (which does not get the plain-hosts bit), as in Kong.
	r := mustRouter(t, &Route{ID: "1", Name: "wild", Hosts: []string{"*.example.com"}}, &Route{ID: "2", Name: "root", Paths: []string{"/"}})
	m, ok := r.Match(&Request{Method: "GET", Host: "a.example.com", Path: "/x"})
	if !ok || m.Route.Name != "root" {
		t.Fatalf("got %+v", m.Route)
	}
	r = mustRouter(t, &Route{ID: "1", Name: "plain", Hosts: []string{"a.example.com"}}, &Route{ID: "2", Name: "root", Paths: []string{"/"}})
	if m, _ = r.Match(&Request{Method: "GET", Host: "a.example.com", Path: "/x"}); m.Route.Name != "plain" {
		t.Fatalf("plain host lost to %s", m.Route.Name)
	}
}

func TestNoMatchAndProtocols(t *testing.T) {
	r := mustRouter(t, &Route{ID: "1", Paths: []string{"/a"}, Protocols: []string{"https"}})
	if _, ok := r.Match(&Request{Method: "GET", Path: "/b"}); ok {
		t.Fatal("matched /b")
	}
	m, ok := r.Match(&Request{Method: "GET", Path: "/a", Scheme: "http"})
	if !ok {
		t.Fatal("no match for /a")
	}
	if m.ProtocolAllowed("http") {
		t.Fatal("https-only route allowed http")
	}
	if !m.ProtocolAllowed("https") {
		t.Fatal("https-only route refused https")
	}
}

func TestRegexCaptures(t *testing.T) {
	r := mustRouter(t, &Route{ID: "1", Paths: []string{`~/users/(?<id>\d+)/(\w+)`}, StripPath: true})
	m, ok := r.Match(&Request{Method: "GET", Path: "/users/42/orders/7"})
	if !ok {
		t.Fatal("no match")
	}
	if m.Captures[1] != "42" || m.Names[1] != "id" || m.Captures[2] != "orders" {
		t.Fatalf("captures %q names %q", m.Captures, m.Names)
	}
	if got := m.UpstreamPath("/svc"); got != "/svc/7" {
		t.Fatalf("upstream path %q", got)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, rt := range []*Route{
		{ID: "1", Hosts: []string{"a.*.com"}},
		{ID: "2", Paths: []string{"~/(unclosed"}},
		{ID: "3", Paths: []string{"nope"}},
		{ID: "4", Hosts: []string{"a.com:99999"}},
	} {
		if _, err := New([]*Route{rt}); err == nil {
			t.Errorf("route %+v compiled", rt)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	r := benchRouter(t)
	req := &Request{Method: "GET", Host: "svc50.example.com", Path: "/svc50/items/1", Header: http.Header{}}
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := r.Match(req); !ok {
			t.Fatal("no match")
		}
	})
	if allocs != 0 {
		t.Fatalf("Match allocates %v times per call", allocs)
	}
}

func benchRouter(t testing.TB) *Router {
	var routes []*Route
	for i := 0; i < 100; i++ {
		routes = append(routes, &Route{
			ID:    "r" + itoa(i),
			Hosts: []string{"svc" + itoa(i) + ".example.com"},
			Paths: []string{"/svc" + itoa(i)},
		})
	}
	return mustRouter(t, routes...)
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}

func BenchmarkMatch100Routes(b *testing.B) {
	r := benchRouter(b)
	req := &Request{Method: "GET", Host: "svc99.example.com", Path: "/svc99/items/1", Header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		r.Match(req)
	}
}

func FuzzMatch(f *testing.F) {
	r, err := New([]*Route{
		{ID: "1", Paths: []string{"/foo", `~/bar/(?<id>\d+)`}},
		{ID: "2", Hosts: []string{"*.example.com"}, Paths: []string{"/"}, StripPath: true},
		{ID: "3", Headers: map[string][]string{"x": {"~*a+"}}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("GET", "a.example.com", "/foo/../bar/12")
	f.Add("POST", "x", "/%2e%2e/foo%2F/./")
	f.Fuzz(func(t *testing.T, method, host, path string) {
		req := &Request{Method: method, Host: host, Path: path, Header: http.Header{"X": {host}}}
		m, ok := r.Match(req)
		if !ok {
			return
		}
		up := m.UpstreamPath("/svc")
		if len(up) == 0 || up[0] != '/' {
			t.Fatalf("upstream path %q for %q", up, path)
		}
		if n := NormalizePath(m.Path); n != m.Path {
			t.Fatalf("normalize not idempotent: %q -> %q", m.Path, n)
		}
	})
}

func TestEscapesRoot(t *testing.T) {
	for p, want := range map[string]bool{
		"/": false, "/a/b": false, "/a/../b": false, "/a/b/../..": false, "/a/./b/.": false, "/...": false,
		"/..": true, "/../a": true, "/a/../../b": true, "/%2e%2e/a": true, "/%2E./a": true, "/a//../../b": true,
		"/a/%2e%2e%2e/../..": false, "/.%2e.": false, "..": true, "": false,
	} {
		if got := EscapesRoot(p); got != want {
			t.Errorf("EscapesRoot(%q) = %v, want %v", p, got, want)
		}
	}
}
