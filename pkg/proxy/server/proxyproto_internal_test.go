package server

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/proxyproto"
)

// TestProxyProtocolKeepsRawPath: a PROXY protocol connection is served on
// the raw-socket path (the listener reads exactly the header, of either
// version, even with the request in the same segment) and carries the
// header's address.
func TestProxyProtocolKeepsRawPath(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := proxyproto.NewListener(inner, proxyproto.Options{})
	defer func() { _ = ln.Close() }()
	s := &h1Server{e: &Engine{}}
	for _, tc := range []struct {
		send string
		raw  bool
	}{
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x07\x7f\x00\x00\x01\x00\x01\x00\x02", true},
		{"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\n", true},
	} {
		cc, err := net.DialTimeout("tcp", ln.Addr().String(), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cc.Close() }()
		if _, err := io.WriteString(cc, tc.send); err != nil {
			t.Fatal(err)
		}
		nc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c := newH1Conn(s, nc)
		if (c.sc != nil) != tc.raw {
			t.Errorf("%q: raw path %v, want %v", tc.send, c.sc != nil, tc.raw)
		}
		if a, _ := c.ctx.Value(proxyAddrKey{}).(string); a != "203.0.113.7" {
			t.Errorf("%q: context address %q", tc.send, a)
		}
		_ = nc.Close()
	}
}
