package server

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
)

// RealIPHeaderDefault is Kong's default real_ip_header.
const RealIPHeaderDefault = "X-Real-IP"

// RealIPHeaderProxyProtocol is the real_ip_header value that takes a
// trusted peer's client address from the PROXY protocol header of its
// connection (on listeners with the proxy_protocol flag) rather than from
// an HTTP header.
const RealIPHeaderProxyProtocol = "proxy_protocol"

// ParseTrustedIPs parses Kong's trusted_ips entries: IPv4 and IPv6
// addresses and CIDR blocks. "unix:" (a Unix-socket peer) is accepted and
// ignored, kiln's listeners being TCP only. The error names the first bad
// entry.
func ParseTrustedIPs(entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, raw := range entries {
		s := strings.TrimSpace(raw)
		switch {
		case s == "":
			continue
		case s == "unix:":
			continue
		case strings.Contains(s, "/"):
			p, err := netip.ParsePrefix(s)
			if err != nil || p.Addr().Zone() != "" {
				return nil, fmt.Errorf("%q is not an IP address or CIDR block", s)
			}
			out = append(out, p.Masked())
		default:
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is not an IP address or CIDR block", s)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, nil
}

// realIP is Kong's trusted_ips / real_ip_header / real_ip_recursive: which
// peers are believed, and where their client's address is read from
// (nginx's realip module with set_real_ip_from = trusted_ips). The engine
// has none when trusted_ips is empty, so untrusting requests pay nothing.
type realIP struct {
	trusted   []netip.Prefix
	header    string // canonical header name
	xff       bool   // header is X-Forwarded-For: every field line counts
	recursive bool
	// proxyProto: real_ip_header proxy_protocol, the client address is
	// the connection's PROXY header source.
	proxyProto bool
}

func newRealIP(o Options) (*realIP, error) {
	h := o.RealIPHeader
	if h == "" {
		h = RealIPHeaderDefault
	}
	if len(o.TrustedIPs) == 0 {
		return nil, nil
	}
	if strings.EqualFold(h, RealIPHeaderProxyProtocol) {
		return &realIP{trusted: o.TrustedIPs, proxyProto: true}, nil
	}
	ch := textproto.CanonicalMIMEHeaderKey(h)
	return &realIP{trusted: o.TrustedIPs, header: ch, xff: ch == "X-Forwarded-For", recursive: o.RealIPRecursive}, nil
}

// contains reports whether a is in trusted_ips (an IPv4-mapped IPv6
// address matches as IPv4, as in nginx).
func (ri *realIP) contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range ri.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// trusts reports whether the peer (an address as clientIP returns it) is
// in trusted_ips.
func (ri *realIP) trusts(peer string) bool {
	a, err := netip.ParseAddr(peer)
	return err == nil && ri.contains(a)
}

// client returns the client address for a request r from peer and
// whether the peer is trusted. A trusted peer's real_ip_header is read the
// way nginx's realip module does: its last address, or with
// real_ip_recursive the last one not in trusted_ips, walking right to
// left; an entry that is not an address stops the walk (no address at
// all: the peer's). With proxy_protocol it is the connection's PROXY
// header source (none, as for LOCAL or UNKNOWN headers: the peer's).
func (ri *realIP) client(r *http.Request, peer string) (string, bool) {
	if !ri.trusts(peer) {
		return peer, false
	}
	if ri.proxyProto {
		if a, ok := proxyAddr(r); ok {
			return a, true
		}
		return peer, true
	}
	vs := r.Header[ri.header]
	if len(vs) == 0 {
		return peer, true
	}
	if !ri.xff {
		// nginx reads the first field line of other headers.
		vs = vs[:1]
	}
	cur := peer
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
		end := len(v)
		for {
			for end > 0 && (v[end-1] == ' ' || v[end-1] == ',') {
				end--
			}
			if end == 0 {
				break
			}
			start := end
			for start > 0 && v[start-1] != ' ' && v[start-1] != ',' {
				start--
			}
			ip, a, ok := parseForwardedAddr(v[start:end])
			if !ok {
				return cur, true
			}
			cur = ip
			if !ri.recursive || !ri.contains(a) {
				return cur, true
			}
			end = start
		}
		if !ri.recursive {
			break
		}
	}
	return cur, true
}

// parseForwardedAddr parses one forwarded address as nginx does: an IP,
// optionally with a port ("1.2.3.4:80", "[2001:db8::1]:80", "[::1]"). It
// returns the address in its canonical text form.
func parseForwardedAddr(s string) (string, netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err == nil {
		if a.Zone() != "" {
			return "", netip.Addr{}, false
		}
		if a.Is4() {
			return s, a, true // netip accepts only the canonical dotted form
		}
		return a.String(), a, true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		a, err = netip.ParseAddr(s[1 : len(s)-1])
	} else {
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(s)
		a = ap.Addr()
	}
	if err != nil || a.Zone() != "" {
		return "", netip.Addr{}, false
	}
	return a.String(), a, true
}
