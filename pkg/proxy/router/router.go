// Package router implements Kong's HTTP route matching ("traditional_compatible"
// flavour): hosts with wildcards, prefix and "~" regex paths, methods, headers,
// SNIs and protocols, ranked by Kong's 64-bit route priority, plus the upstream
// path composition (strip_path, path_handling v0/v1). A Router is compiled once
// from a list of routes and is immutable, so callers swap it atomically; Match
// does not allocate for prefix routes on already-normalized paths.
package router

import (
	"fmt"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Route is the matching-relevant part of a Kong route.
type Route struct {
	ID            string
	Name          string
	Protocols     []string
	Methods       []string
	Hosts         []string
	Paths         []string
	Headers       map[string][]string
	SNIs          []string
	RegexPriority int
	StripPath     bool
	PreserveHost  bool
	PathHandling  string // "v0" (default) or "v1"
	// HTTPSRedirectStatusCode is answered when an https-only route is hit
	// over plain http (426 by default).
	HTTPSRedirectStatusCode int
	// Value is opaque to the router: the caller's compiled state for this
	// route (service, plugins...).
	Value any
}

// Request is what the router looks at.
type Request struct {
	Method string
	// Host is the Host header or :authority, possibly with a port.
	Host string
	// Path is the request path without the query string (not yet normalized).
	Path string
	// Scheme is "http" or "https" (the client connection's).
	Scheme string
	// SNI is the TLS server name, for https.
	SNI string
	// Port is the listener port the request arrived on.
	Port int
	// Header holds the request headers (canonical keys).
	Header http.Header
}

// Match is the router's answer.
type Match struct {
	Route *Route
	// Path is the normalized request path.
	Path string
	// Prefix is the part of Path that the route's path matched ("" when the
	// route has no paths).
	Prefix string
	// Captures holds regex path captures: index 0 the whole match, then the
	// numbered groups; Names the group names ("" for unnamed).
	Captures []string
	Names    []string
}

// UpstreamPath is the path to send upstream for this match given the
// service's path, per the route's path_handling.
func (m *Match) UpstreamPath(servicePath string) string {
	if m.Route.PathHandling == "v1" {
		return JoinV1(servicePath, m.Route.StripPath, m.Prefix, m.Path)
	}
	return JoinV0(servicePath, m.Route.StripPath, m.Prefix, m.Path)
}

type hostMatcher struct {
	kind int // 0 exact, 1 suffix ("*.x": value ".x"), 2 prefix ("x.*": value "x.")
	val  string
	port int // 0 = any
}

func (h *hostMatcher) match(host string, port int) bool {
	if h.port != 0 && h.port != port {
		return false
	}
	switch h.kind {
	case 1:
		return len(host) > len(h.val) && strings.HasSuffix(host, h.val)
	case 2:
		return len(host) > len(h.val) && strings.HasPrefix(host, h.val)
	}
	return host == h.val
}

type headerMatcher struct {
	name   string // canonical
	values []string
	re     *regexp.Regexp
}

func (h *headerMatcher) match(hdr http.Header) bool {
	vals := hdr[h.name]
	for _, v := range vals {
		if h.re != nil {
			if h.re.MatchString(v) {
				return true
			}
			continue
		}
		for _, want := range h.values {
			if strings.EqualFold(v, want) {
				return true
			}
		}
	}
	return false
}

type candidate struct {
	route    *Route
	priority uint64
	methods  []string
	hosts    []hostMatcher
	headers  []headerMatcher
	snis     []hostMatcher
	prefixes []string
	regexes  []*regexp.Regexp
}

// Router is an immutable compiled route table.
type Router struct {
	cands []candidate
}

// Len is the number of routes (after Kong's internal splitting).
func (r *Router) Len() int { return len(r.cands) }

// New compiles routes. Routes whose fields are invalid yield an error naming
// the route; the caller is expected to have validated them already.
func New(routes []*Route) (*Router, error) {
	r := &Router{}
	for _, rt := range routes {
		cs, err := compile(rt)
		if err != nil {
			name := rt.Name
			if name == "" {
				name = rt.ID
			}
			return nil, fmt.Errorf("route %q: %w", name, err)
		}
		r.cands = append(r.cands, cs...)
	}
	sort.SliceStable(r.cands, func(i, j int) bool {
		a, b := &r.cands[i], &r.cands[j]
		if a.priority != b.priority {
			return a.priority > b.priority
		}
		return a.route.ID < b.route.ID
	})
	return r, nil
}

func parseHost(h string) (hostMatcher, error) {
	h = strings.ToLower(strings.TrimSpace(h))
	m := hostMatcher{}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		p, err := strconv.Atoi(h[i+1:])
		if err != nil || p < 1 || p > 65535 {
			return m, fmt.Errorf("invalid port in host %q", h)
		}
		m.port = p
		h = h[:i]
	}
	switch {
	case strings.HasPrefix(h, "*."):
		m.kind, m.val = 1, h[1:]
	case strings.HasSuffix(h, ".*"):
		m.kind, m.val = 2, h[:len(h)-1]
	case strings.Contains(h, "*"):
		return m, fmt.Errorf("invalid wildcard host %q: only the left-most or right-most label may be '*'", h)
	default:
		m.val = h
	}
	return m, nil
}

func compile(rt *Route) ([]candidate, error) {
	base := candidate{route: rt}
	var weight uint64
	for _, m := range rt.Methods {
		base.methods = append(base.methods, strings.ToUpper(m))
	}
	if len(rt.Methods) > 0 {
		weight++
	}
	plainHosts := len(rt.Hosts) > 0
	for _, h := range rt.Hosts {
		hm, err := parseHost(h)
		if err != nil {
			return nil, err
		}
		if hm.kind != 0 {
			plainHosts = false
		}
		base.hosts = append(base.hosts, hm)
	}
	if len(rt.Hosts) > 0 {
		weight++
	}
	names := make([]string, 0, len(rt.Headers))
	for n := range rt.Headers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		vals := rt.Headers[n]
		hm := headerMatcher{name: http.CanonicalHeaderKey(n)}
		for _, v := range vals {
			if strings.HasPrefix(v, "~*") {
				re, err := regexp.Compile("(?i)" + v[2:])
				if err != nil {
					return nil, fmt.Errorf("header %q: invalid regex %q: %w", n, v, err)
				}
				hm.re = re
				continue
			}
			hm.values = append(hm.values, v)
		}
		base.headers = append(base.headers, hm)
	}
	if len(rt.Headers) > 0 {
		weight++
	}
	for _, s := range rt.SNIs {
		hm, err := parseHost(s)
		if err != nil {
			return nil, fmt.Errorf("sni: %w", err)
		}
		base.snis = append(base.snis, hm)
	}
	if len(rt.SNIs) > 0 {
		weight++
	}
	if len(rt.Paths) > 0 {
		weight++
	}
	prio := weight << 61
	if plainHosts {
		prio |= 1 << 60
	}
	hc := uint64(len(rt.Headers))
	if hc > 255 {
		hc = 255
	}
	prio |= hc << 52

	if len(rt.Paths) == 0 {
		base.priority = prio
		return []candidate{base}, nil
	}
	// Split paths into groups as Kong does: all regex paths, and one group
	// per prefix length.
	var out []candidate
	byLen := map[int][]string{}
	var lens []int
	var regexes []*regexp.Regexp
	for _, p := range rt.Paths {
		if strings.HasPrefix(p, "~") {
			re, err := regexp.Compile("^(?:" + p[1:] + ")")
			if err != nil {
				return nil, fmt.Errorf("invalid regex path %q: %w", p, err)
			}
			regexes = append(regexes, re)
			continue
		}
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("path %q must start with '/' (prefix) or '~/' (regex)", p)
		}
		if _, ok := byLen[len(p)]; !ok {
			lens = append(lens, len(p))
		}
		byLen[len(p)] = append(byLen[len(p)], p)
	}
	if len(regexes) > 0 {
		c := base
		c.regexes = regexes
		rp := int64(rt.RegexPriority) + math.MaxInt32 + 1
		if rp < 0 {
			rp = 0
		}
		c.priority = prio | 1<<51 | (uint64(rp)&(1<<32-1))<<19
		out = append(out, c)
	}
	for _, l := range lens {
		c := base
		c.prefixes = byLen[l]
		ll := uint64(l)
		if ll > 1<<19-1 {
			ll = 1<<19 - 1
		}
		c.priority = prio | ll
		out = append(out, c)
	}
	return out, nil
}

// requestHost lowercases the host and strips the port; it allocates only when
// the host has upper-case letters.
func requestHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// Match finds the highest-priority route for req. ok is false when no route
// matches (Kong answers 404 "no Route matched with those values").
func (r *Router) Match(req *Request) (m Match, ok bool) {
	host := requestHost(req.Host)
	sni := ""
	if req.Scheme == "https" {
		sni = requestHost(req.SNI)
	}
	path := NormalizePath(req.Path)
	for i := range r.cands {
		c := &r.cands[i]
		if len(c.methods) > 0 && !containsString(c.methods, req.Method) {
			continue
		}
		if len(c.hosts) > 0 && !matchHosts(c.hosts, host, req.Port) {
			continue
		}
		if len(c.snis) > 0 && req.Scheme == "https" && !matchHosts(c.snis, sni, 0) {
			continue
		}
		hok := true
		for j := range c.headers {
			if !c.headers[j].match(req.Header) {
				hok = false
				break
			}
		}
		if !hok {
			continue
		}
		if len(c.prefixes) > 0 {
			matched := ""
			for _, p := range c.prefixes {
				if strings.HasPrefix(path, p) {
					matched = p
					break
				}
			}
			if matched == "" {
				continue
			}
			return Match{Route: c.route, Path: path, Prefix: matched}, true
		}
		if len(c.regexes) > 0 {
			for _, re := range c.regexes {
				idx := re.FindStringSubmatchIndex(path)
				if idx == nil {
					continue
				}
				m := Match{Route: c.route, Path: path, Prefix: path[:idx[1]], Names: re.SubexpNames()}
				m.Captures = make([]string, len(idx)/2)
				for k := range m.Captures {
					if idx[2*k] >= 0 {
						m.Captures[k] = path[idx[2*k]:idx[2*k+1]]
					}
				}
				return m, true
			}
			continue
		}
		return Match{Route: c.route, Path: path}, true
	}
	return Match{}, false
}

// ProtocolAllowed reports whether the matched route accepts the request's
// scheme. When it does not (an https-only route over http), Kong answers 426
// or the route's https_redirect_status_code.
func (m *Match) ProtocolAllowed(scheme string) bool {
	for _, p := range m.Route.Protocols {
		if p == scheme || (scheme == "http" && p == "grpc") || (scheme == "https" && p == "grpcs") {
			return true
		}
	}
	return len(m.Route.Protocols) == 0
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func matchHosts(hs []hostMatcher, host string, port int) bool {
	for i := range hs {
		if hs[i].match(host, port) {
			return true
		}
	}
	return false
}
