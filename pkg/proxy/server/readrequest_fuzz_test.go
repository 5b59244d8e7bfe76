package server

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// FuzzReadRequest parses client request heads and bodies as the proxy
// does, and compares every request it accepts with net/http's reading of
// the same bytes: where both accept, they must agree on the method,
// target, host, how the body is framed and the body itself. Two parsers
// that disagree on a message's length are how requests are smuggled past
// a proxy.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /a HTTP/1.0\r\nContent-Length: 2\r\n\r\nok",
		"GET http://h:8/p HTTP/1.1\r\nHost: x\r\n\r\n",
		"PUT /a HTTP/1.1\nHost: x\nContent-Length: 1\n\nz",
		"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nq",
	} {
		f.Add(s)
	}
	e, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(e.Close)
	s := &h1Server{e: e}
	f.Fuzz(func(t *testing.T, in string) {
		// The connection is only there for deadlines: the request comes
		// from br and answers (100 Continue) go to bw.
		nc, peer := net.Pipe()
		defer nc.Close()
		defer peer.Close()
		c := &h1Conn{s: s, nc: nc, br: bufio.NewReaderSize(strings.NewReader(in), 8<<10), bw: bufio.NewWriter(io.Discard), remoteAddr: "192.0.2.1:1234"}
		c.takeExchange()
		defer c.putExchange()
		if _, err := c.readRequest(); err != nil {
			return
		}
		r := &c.x.req
		std, err := http.ReadRequest(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return // kiln is more lenient elsewhere (e.g. bytes in values); framing is compared where both accept
		}
		if std.Method != r.Method || std.RequestURI != r.RequestURI || std.Host != r.Host {
			t.Fatalf("net/http read %s %q host %q, kiln %s %q host %q", std.Method, std.RequestURI, std.Host, r.Method, r.RequestURI, r.Host)
		}
		chunked := c.x.body.mode == bodyChunked
		if stdChunked := len(std.TransferEncoding) > 0; chunked != stdChunked {
			t.Fatalf("chunked: net/http %v, kiln %v", stdChunked, chunked)
		}
		if !chunked && std.ContentLength != r.ContentLength {
			t.Fatalf("Content-Length: net/http %d, kiln %d", std.ContentLength, r.ContentLength)
		}
		kb, kerr := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		sb, serr := io.ReadAll(io.LimitReader(std.Body, 1<<20))
		if kerr == nil && serr == nil && !bytes.Equal(kb, sb) {
			t.Fatalf("body: net/http %q, kiln %q", sb, kb)
		}
	})
}
