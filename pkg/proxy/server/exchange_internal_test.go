package server

import (
	"bufio"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// TestExchangeGivenBackEmpty: a connection's request state goes back to
// the pool with nothing of its last request reachable (no request, URL,
// header values, strings cut from the head, nor the connection), keeps
// small maps and head buffers for reuse, drops grown ones, and the next
// connection to take it gets it pointing at itself.
func TestExchangeGivenBackEmpty(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := &h1Server{e: e}
	headers := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-H%d: v%d\r\n", i, i)
		}
		return b.String()
	}
	for _, tc := range []struct {
		name      string
		head      string
		keepMaps  bool
		keepBlock bool
	}{
		{"small", "GET /a%20b?q=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 3\r\n\r\n", true, true},
		{"many header fields", "GET /m HTTP/1.1\r\nHost: h\r\n" + headers(12) + "\r\n", false, true},
		{"large head", "GET /l HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", keptHeadBytes) + "\r\n\r\n", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &h1Conn{s: s, br: bufio.NewReaderSize(strings.NewReader(tc.head), 8<<10), remoteAddr: "192.0.2.1:1234"}
			x := &h1Exchange{hdr: http.Header{}, w: h1Writer{hdr: http.Header{}}}
			e.h1Exchanges.Put(x)
			c.takeExchange()
			x = c.x
			if x.w.c != c || x.body.c != c {
				t.Fatal("a taken exchange does not point at its connection")
			}
			if status, err := c.readRequest(); err != nil {
				t.Fatalf("readRequest: %d %v", status, err)
			}
			x.w.reset(&x.req)
			x.w.hdr.Set("X-Resp", "r")
			for i := range 12 {
				x.w.hdr.Set(fmt.Sprintf("X-R%d", i), "r")
			}
			reqMap, respMap := reflect.ValueOf(x.hdr).UnsafePointer(), reflect.ValueOf(x.w.hdr).UnsafePointer()

			c.putExchange()
			if c.x != nil {
				t.Fatal("the connection still holds its exchange")
			}
			if !reflect.DeepEqual(x.req, http.Request{}) || x.url != (url.URL{}) {
				t.Error("the last request or its URL stays reachable")
			}
			if x.w.c != nil || x.w.req != nil || x.body.c != nil || x.body.lr.r != nil {
				t.Error("the writer or body still points at the connection or request")
			}
			if len(x.hdr) != 0 || len(x.w.hdr) != 0 {
				t.Errorf("header maps not emptied: %d request, %d response fields", len(x.hdr), len(x.w.hdr))
			}
			if kept := reflect.ValueOf(x.hdr).UnsafePointer() == reqMap; kept != tc.keepMaps {
				t.Errorf("request map kept = %v, want %v", kept, tc.keepMaps)
			}
			if reflect.ValueOf(x.w.hdr).UnsafePointer() == respMap {
				t.Error("a response map grown past 8 fields was kept")
			}
			hb := x.hb
			if len(hb.buf) != 0 || len(hb.offs) != 0 || len(hb.vals) != 0 || len(hb.hosts) != 0 {
				t.Error("the head block was not emptied")
			}
			if (cap(hb.buf) > 0) != tc.keepBlock {
				t.Errorf("head buffer kept = %v, want %v", cap(hb.buf) > 0, tc.keepBlock)
			}
			for i, v := range hb.vals[:cap(hb.vals)] {
				if v != "" {
					t.Fatalf("header value %d (%q) stays reachable from the pool", i, v)
				}
			}
			for i, v := range hb.hosts[:cap(hb.hosts)] {
				if v != "" {
					t.Fatalf("host value %d (%q) stays reachable from the pool", i, v)
				}
			}

			next := &h1Conn{s: s}
			e.h1Exchanges.Put(x) // the pool may have dropped it
			next.takeExchange()
			if next.x.w.c != next || next.x.body.c != next {
				t.Fatal("a reused exchange does not point at its new connection")
			}
			next.putExchange()
			next.putExchange() // a second give-back is harmless
		})
	}
}
