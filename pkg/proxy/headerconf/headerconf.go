// Package headerconf reads Kong's headers and headers_upstream settings:
// which of its own headers the gateway adds to client responses and to
// upstream requests.
package headerconf

import (
	"fmt"
	"strings"
)

// Set is a set of headers the gateway may add. The zero Set means "not
// configured" (callers apply Kong's default); a configured empty set
// ("off") is not zero.
type Set uint16

// The headers of Kong's headers setting, plus RequestIDUpstream for
// headers_upstream.
const (
	// Server: Server: kong/x.y.z on responses kiln produces itself (and on
	// proxied responses whose upstream sent none).
	Server Set = 1 << iota
	// Via: the gateway's Via entry on proxied responses.
	Via
	// ProxyLatency: X-Kong-Proxy-Latency on proxied responses.
	ProxyLatency
	// ResponseLatency: X-Kong-Response-Latency on responses kiln produces.
	ResponseLatency
	// AdminLatency: X-Kong-Admin-Latency on Admin API responses.
	AdminLatency
	// UpstreamLatency: X-Kong-Upstream-Latency on proxied responses.
	UpstreamLatency
	// UpstreamStatus: X-Kong-Upstream-Status, the upstream's status code.
	UpstreamStatus
	// RequestID: X-Kong-Request-Id on every response.
	RequestID
	// RequestIDUpstream: X-Kong-Request-Id on requests to the upstream.
	RequestIDUpstream

	// configured marks a Set that came from a setting, even an empty one.
	configured Set = 1 << 15
)

// Kong's defaults (kong.conf.default).
const (
	DefaultHeaders         = "server_tokens, latency_tokens, X-Kong-Request-Id"
	DefaultHeadersUpstream = "X-Kong-Request-Id"
)

var clientTokens = map[string]Set{
	"server":                  Server,
	"via":                     Via,
	"x-kong-proxy-latency":    ProxyLatency,
	"x-kong-response-latency": ResponseLatency,
	"x-kong-admin-latency":    AdminLatency,
	"x-kong-upstream-latency": UpstreamLatency,
	"x-kong-upstream-status":  UpstreamStatus,
	"x-kong-request-id":       RequestID,
	"server_tokens":           Server | Via,
	"latency_tokens":          ProxyLatency | ResponseLatency | AdminLatency | UpstreamLatency,
}

var upstreamTokens = map[string]Set{
	"x-kong-request-id": RequestIDUpstream,
}

// ParseHeaders reads Kong's headers setting: a comma-separated list of
// Server, Via, X-Kong-Proxy-Latency, X-Kong-Response-Latency,
// X-Kong-Admin-Latency, X-Kong-Upstream-Latency, X-Kong-Upstream-Status,
// X-Kong-Request-Id, server_tokens (Server and Via) and latency_tokens (the
// four latencies), case-insensitive; or off. As in Kong, a list starting
// with off adds nothing, and off elsewhere in a list is ignored.
func ParseHeaders(v string) (Set, error) {
	return parse(v, clientTokens, "Server, Via, X-Kong-Proxy-Latency, X-Kong-Response-Latency, X-Kong-Admin-Latency, X-Kong-Upstream-Latency, X-Kong-Upstream-Status, X-Kong-Request-Id, server_tokens, latency_tokens")
}

// ParseHeadersUpstream reads Kong's headers_upstream setting:
// X-Kong-Request-Id or off.
func ParseHeadersUpstream(v string) (Set, error) {
	return parse(v, upstreamTokens, "X-Kong-Request-Id")
}

func parse(v string, tokens map[string]Set, accepted string) (Set, error) {
	set := configured
	first := true
	for _, tok := range Tokens(v) {
		lower := strings.ToLower(tok)
		if lower == "off" {
			if first {
				return configured, nil
			}
			continue
		}
		first = false
		bits, ok := tokens[lower]
		if !ok {
			return 0, fmt.Errorf("invalid entry %q: use off or a comma-separated list of %s", tok, accepted)
		}
		set |= bits
	}
	return set, nil
}

// Or returns s, or def when s is not configured (zero).
func (s Set) Or(def Set) Set {
	if s == 0 {
		return def
	}
	return s
}

// Has reports whether every header in h is in s.
func (s Set) Has(h Set) bool { return s&h == h }

// Default and DefaultUpstream are Kong's default settings, parsed.
const (
	Default         = configured | Server | Via | ProxyLatency | ResponseLatency | AdminLatency | UpstreamLatency | RequestID
	DefaultUpstream = configured | RequestIDUpstream
)

// names are the headers of each Set bit, as Kong names them in its
// enabled_headers and enabled_headers_upstream configuration.
var clientNames = []struct {
	name string
	bit  Set
}{
	{"Server", Server}, {"Via", Via}, {"X-Kong-Proxy-Latency", ProxyLatency},
	{"X-Kong-Response-Latency", ResponseLatency}, {"X-Kong-Admin-Latency", AdminLatency},
	{"X-Kong-Upstream-Latency", UpstreamLatency}, {"X-Kong-Upstream-Status", UpstreamStatus},
	{"X-Kong-Request-Id", RequestID},
}

// Enabled maps each header of Kong's headers setting to whether s has it
// (Kong's enabled_headers).
func (s Set) Enabled() map[string]bool {
	m := make(map[string]bool, len(clientNames))
	for _, n := range clientNames {
		m[n.name] = s.Has(n.bit)
	}
	return m
}

// EnabledUpstream is Enabled for headers_upstream (Kong's
// enabled_headers_upstream).
func (s Set) EnabledUpstream() map[string]bool {
	return map[string]bool{"X-Kong-Request-Id": s.Has(RequestIDUpstream)}
}

// Tokens splits a setting into its entries, as Kong lists it in its
// configuration.
func Tokens(v string) []string {
	out := []string{}
	for _, tok := range strings.Split(v, ",") {
		if tok = strings.TrimSpace(tok); tok != "" {
			out = append(out, tok)
		}
	}
	return out
}
