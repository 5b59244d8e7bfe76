// Package getreq builds the raw HTTP/1.1 GET request the bench load
// generators (fixedrate, idleconns) send over and over on keep-alive
// connections, from their -url and -H flags, and dials its target (TCP,
// or TLS for https:// URLs).
package getreq

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Target is where the request goes: Addr to dial, and for an https:// URL
// the server name to send in TLS (empty for http://).
type Target struct {
	Addr       string
	ServerName string
}

// Build checks target (an http:// or https:// URL with a host) and header
// (empty, or "Name: value") and returns where to send the request and
// its bytes.
func Build(target, header string) (Target, []byte, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Target{}, nil, fmt.Errorf("-url %q: give an http:// or https:// URL with a host", target)
	}
	t := Target{Addr: u.Host}
	if u.Port() == "" {
		t.Addr = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	if u.Scheme == "https" {
		t.ServerName = u.Hostname()
	}
	s := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\n"
	if header != "" {
		name, value, ok := strings.Cut(header, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return Target{}, nil, fmt.Errorf(`-H %q: give "Name: value"`, header)
		}
		s += strings.TrimSpace(name) + ": " + strings.TrimSpace(value) + "\r\n"
	}
	return t, []byte(s + "\r\n"), nil
}

// Dial connects to t with d, completing the TLS handshake for https
// (HTTP/1.1 by ALPN). The benchmarks run against self-signed loopback
// certificates, so the certificate is not verified.
func (t Target) Dial(ctx context.Context, d *net.Dialer) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil || t.ServerName == "" {
		return c, err
	}
	tc := tls.Client(c, &tls.Config{ServerName: t.ServerName, NextProtos: []string{"http/1.1"}, InsecureSkipVerify: true}) //nolint:gosec // load generator for self-signed loopback certificates
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", t.Addr, err)
	}
	return tc, nil
}
