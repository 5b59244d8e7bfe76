package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
)

// ppGateway serves a route /pp to up on a proxy_protocol listener
// (spec's other flags as given) and returns the listener's address.
func ppGateway(t *testing.T, trusted string, spec server.ListenSpec, up string) string {
	t.Helper()
	tr, err := server.ParseTrustedIPs(strings.Split(trusted, ","))
	if err != nil {
		t.Fatal(err)
	}
	e := proxytest.NewEngine(t, server.Options{Plugins: plugins.Registry(), TrustedIPs: tr, RealIPHeader: "proxy_protocol"})
	spec.ProxyProtocol = true
	addr, _ := proxytest.ServeProxy(t, e, spec)
	host, port := proxytest.HostPort(t, up)
	svc := map[string]any{"id": "9b2f6f0e-7a1d-4c3b-8e5f-1a2b3c4d5e6f"}
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": svc["id"], "name": "echo", "host": host, "port": port}},
		"routes":   {{"name": "pp", "paths": []any{"/pp"}, "service": svc}},
	})); err != nil {
		t.Fatal(err)
	}
	return addr
}

// v1Header and v2Header are what a load balancer sends for a client at
// src connecting to dst.
func v1Header(src, dst netip.AddrPort) []byte {
	fam := "TCP4"
	if src.Addr().Is6() {
		fam = "TCP6"
	}
	return []byte("PROXY " + fam + " " + src.Addr().String() + " " + dst.Addr().String() + " " +
		portString(src) + " " + portString(dst) + "\r\n")
}

func portString(a netip.AddrPort) string { return strconv.Itoa(int(a.Port())) }

func v2Header(src, dst netip.AddrPort) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x00")
	if src.Addr().Is4() {
		b = append(b, src.Addr().AsSlice()...)
		b = append(b, dst.Addr().AsSlice()...)
	} else {
		b[13] = 0x21
		s, d := src.Addr().As16(), dst.Addr().As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	b = binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, src.Port()), dst.Port())
	b = append(b, 0x05, 0x00, 0x04, 'v', 'p', 'c', 'e') // a TLV, skipped
	binary.BigEndian.PutUint16(b[14:16], uint16(len(b)-16))
	return b
}

// ppClient is an HTTP client whose every connection starts with header;
// proto "h2c" speaks HTTP/2 with prior knowledge, "tls" HTTP/1.1 over TLS.
func ppClient(t *testing.T, header []byte, proto string) *http.Client {
	t.Helper()
	d := &net.Dialer{Timeout: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if _, err := c.Write(header); err != nil {
			_ = c.Close()
			return nil, err
		}
		return c, nil
	}
	tr := &http.Transport{DialContext: dial}
	if proto == "h2c" {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	if proto == "tls" {
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}) //nolint:gosec // the gateway's self-signed default certificate
			if err := tc.HandshakeContext(ctx); err != nil {
				_ = c.Close()
				return nil, err
			}
			return tc, nil
		}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// realIP returns the X-Real-IP and X-Forwarded-For the upstream got.
func realIP(t *testing.T, client *http.Client, url string, protoMajor int) (string, string) {
	t.Helper()
	resp, body := proxytest.GetWith(t, client, url, nil)
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != protoMajor {
		t.Fatalf("status %d over %s, want 200 over HTTP/%d: %s", resp.StatusCode, resp.Proto, protoMajor, body)
	}
	h := http.Header(proxytest.DecodeEcho(t, body).Header)
	return h.Get("X-Real-Ip"), strings.Join(h["X-Forwarded-For"], ", ")
}

func TestProxyProtocolRealIP(t *testing.T) {
	up := proxytest.StartEcho(t, "a")
	trustedGW := ppGateway(t, "127.0.0.1", server.ListenSpec{}, up)
	untrustedGW := ppGateway(t, "10.0.0.0/8", server.ListenSpec{}, up)
	tlsGW := ppGateway(t, "127.0.0.0/8", server.ListenSpec{SSL: true, HTTP2: true}, up)
	src4, src6 := netip.MustParseAddrPort("203.0.113.7:51234"), netip.MustParseAddrPort("[2001:db8::7]:40000")
	dst := netip.MustParseAddrPort("192.0.2.10:80")
	dst6 := netip.MustParseAddrPort("[2001:db8::1]:80")
	for _, tc := range []struct {
		name   string
		url    string
		header []byte
		proto  string
		want   string
	}{
		{"v1 trusted peer", "http://" + trustedGW, v1Header(src4, dst), "", "203.0.113.7"},
		{"v1 TCP6 trusted peer", "http://" + trustedGW, v1Header(src6, dst6), "", "2001:db8::7"},
		{"v2 trusted peer", "http://" + trustedGW, v2Header(src4, dst), "", "203.0.113.7"},
		{"v2 TCP6 trusted peer", "http://" + trustedGW, v2Header(src6, dst6), "", "2001:db8::7"},
		{"v2 h2c", "http://" + trustedGW, v2Header(src4, dst), "h2c", "203.0.113.7"},
		{"UNKNOWN: the peer", "http://" + trustedGW, []byte("PROXY UNKNOWN\r\n"), "", "127.0.0.1"},
		{"v1 untrusted peer", "http://" + untrustedGW, v1Header(src4, dst), "", "127.0.0.1"},
		{"v2 untrusted peer", "http://" + untrustedGW, v2Header(src4, dst), "", "127.0.0.1"},
		{"v2 then TLS", "https://" + tlsGW, v2Header(src4, dst), "tls", "203.0.113.7"},
		{"v1 then TLS", "https://" + tlsGW, v1Header(src6, dst6), "tls", "2001:db8::7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := ppClient(t, tc.header, tc.proto)
			major := 1
			if tc.proto == "h2c" {
				major = 2
			}
			// Two requests: the second one reuses the connection.
			for i := 0; i < 2; i++ {
				ip, xff := realIP(t, client, tc.url+"/pp", major)
				if ip != tc.want || xff != tc.want {
					t.Fatalf("request %d: upstream X-Real-IP %q, X-Forwarded-For %q; want %q", i, ip, xff, tc.want)
				}
			}
		})
	}
}

// TestProxyProtocolSameWrite sends the header and the request in one
// write, so the gateway reads past the header.
func TestProxyProtocolSameWrite(t *testing.T) {
	gw := ppGateway(t, "127.0.0.1", server.ListenSpec{}, proxytest.StartEcho(t, "a"))
	c, err := net.DialTimeout("tcp", gw, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	msg := string(v1Header(netip.MustParseAddrPort("198.51.100.4:1"), netip.MustParseAddrPort("127.0.0.1:2"))) +
		"GET /pp HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if got := http.Header(proxytest.DecodeEcho(t, body).Header).Get("X-Real-Ip"); resp.StatusCode != 200 || got != "198.51.100.4" {
		t.Fatalf("status %d, upstream X-Real-IP %q: %s", resp.StatusCode, got, body)
	}
}

// TestProxyProtocolRefusesAndDoesNotBlock: a request without the header
// gets no answer (the connection is closed), and a client that sends
// nothing holds up nobody.
func TestProxyProtocolRefusesAndDoesNotBlock(t *testing.T) {
	gw := ppGateway(t, "127.0.0.1", server.ListenSpec{}, proxytest.StartEcho(t, "a"))
	silent, err := net.DialTimeout("tcp", gw, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = silent.Close() }()

	plain, err := net.DialTimeout("tcp", gw, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = plain.Close() }()
	_ = plain.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(plain, "GET /pp HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(plain); len(b) != 0 {
		t.Fatalf("a request without a PROXY header got %q (%v), want the connection closed", b, err)
	}

	client := ppClient(t, v2Header(netip.MustParseAddrPort("203.0.113.9:1"), netip.MustParseAddrPort("127.0.0.1:2")), "")
	if ip, _ := realIP(t, client, "http://"+gw+"/pp", 1); ip != "203.0.113.9" {
		t.Fatalf("X-Real-IP %q behind a silent client", ip)
	}
}
