package server

import (
	"bufio"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

func TestHeaderBlockParse(t *testing.T) {
	var hb headerBlock
	h := http.Header{}
	in := "GET /x HTTP/1.1\r\nhost: a\r\ncontent-TYPE:  text/plain \r\nX-Dup: 1\r\nx-dup: 2\r\n\r\nrest"
	br := bufio.NewReader(strings.NewReader(in))
	if err := hb.read(br); err != nil {
		t.Fatal(err)
	}
	start, ok := hb.parse(h)
	if !ok || start != "GET /x HTTP/1.1" {
		t.Fatalf("start %q ok %v", start, ok)
	}
	if strings.Join(hb.hosts, ",") != "a" || h["Host"] != nil || h["Content-Type"][0] != "text/plain" || strings.Join(h["X-Dup"], ",") != "1,2" {
		t.Fatalf("headers %v", h)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "rest" {
		t.Fatalf("reader left at %q", rest)
	}
}

func TestReadResponseFraming(t *testing.T) {
	cases := []struct {
		name, in, method, body string
		status                 int
		keep                   bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "GET", "hello", 200, true},
		{"chunked with trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", "GET", "abc", 200, true},
		{"interim 100 skipped", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", "POST", "", 204, true},
		{"HEAD ignores length", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", "HEAD", "", 200, true},
		{"close-delimited", "HTTP/1.0 200 OK\r\n\r\nuntil close", "GET", "until close", 200, false},
		{"connection close", "HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", "GET", "", 500, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			uc := &upConn{br: bufio.NewReader(strings.NewReader(c.in + "NEXT"))}
			resp, err := uc.readResponse(c.method)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.body)
			if err != nil {
				t.Fatal(err)
			}
			body := string(b)
			if c.keep {
				rest, _ := io.ReadAll(uc.br)
				if string(rest) != "NEXT" {
					t.Fatalf("connection left at %q", rest)
				}
			} else {
				body = strings.TrimSuffix(body, "NEXT")
			}
			if resp.status != c.status || body != c.body || resp.close == c.keep {
				t.Fatalf("status %d body %q close %v", resp.status, body, resp.close)
			}
		})
	}
	for _, bad := range []string{"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"} {
		uc := &upConn{br: bufio.NewReader(strings.NewReader(bad))}
		if _, err := uc.readResponse("GET"); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// FuzzHeaderBlock feeds arbitrary bytes to the request/response head
// parser: it must never panic, and parsed names must be canonical tokens.
func FuzzHeaderBlock(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	f.Add("\r\n\r\nPOST /a?b HTTP/1.0\r\nA:b\r\n c\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		var hb headerBlock
		h := http.Header{}
		if err := hb.read(bufio.NewReader(strings.NewReader(in))); err == nil {
			if start, ok := hb.parse(h); ok {
				if len(hb.hosts) > 0 {
					h["Host"] = hb.hosts
				}
				for k := range h {
					if k != http.CanonicalHeaderKey(k) || k == "" {
						t.Fatalf("non-canonical name %q", k)
					}
				}
				// Differential check: where net/textproto also accepts the
				// block, both must read the same fields.
				tr := textproto.NewReader(bufio.NewReader(strings.NewReader(in)))
				line, err := tr.ReadLine()
				for err == nil && line == "" {
					line, err = tr.ReadLine()
				}
				if err == nil && line == start {
					if mh, err := tr.ReadMIMEHeader(); err == nil {
						if !reflect.DeepEqual(http.Header(mh), h) && !(len(mh) == 0 && len(h) == 0) {
							t.Fatalf("textproto read %q, kiln %q", mh, h)
						}
					}
				}
			}
		}
		uc := &upConn{br: bufio.NewReader(strings.NewReader(in))}
		if resp, err := uc.readResponse("GET"); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.body, 1<<20))
		}
	})
}

func TestValidHost(t *testing.T) {
	for h, want := range map[string]bool{
		"example.com": true, "example.com:8000": true, "example.com.": true, "EXAMPLE.com": true,
		"[::1]:80": true, "[::1": true, "a:b:c": true, "a:xyz": true, "a\\b": true, "user@a": true, "a%20b": true,
		"": false, ":80": false, ".": false, "..": false, "a..b": false, "a/b": false, "a b": false,
		"a\tb": false, "a\x00b": false, "a\x7fb": false, "[::1]/x": false,
	} {
		if got := validHost(h); got != want {
			t.Errorf("validHost(%q) = %v, want %v", h, got, want)
		}
	}
}

// FuzzReadResponse compares kiln's reading of upstream responses with
// net/http's: where both accept a response, they must agree on the status,
// the framing and the body, and kiln must not keep a connection net/http
// would close. A proxy and its upstream that disagree on where a response
// ends put every later request on that pooled connection out of step.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
		"HTTP/1.1 304 Not Modified\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
	} {
		f.Add(s, false)
	}
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
	f.Fuzz(func(t *testing.T, in string, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		uc := &upConn{br: bufio.NewReader(strings.NewReader(in))}
		resp, err := uc.readResponse(method)
		if err != nil {
			return
		}
		std, err := http.ReadResponse(bufio.NewReader(strings.NewReader(in)), &http.Request{Method: method})
		if err != nil || (std.StatusCode >= 100 && std.StatusCode < 200) {
			return // kiln skips interim responses; net/http returns them
		}
		if std.StatusCode != resp.status {
			t.Fatalf("status: net/http %d, kiln %d", std.StatusCode, resp.status)
		}
		// A response to HEAD, a 204 or a 304 has no body whatever its
		// framing headers say (kiln keeps Content-Length to pass it on).
		bodiless := head || resp.status == http.StatusNoContent || resp.status == http.StatusNotModified
		if stdChunked := len(std.TransferEncoding) > 0; !bodiless && stdChunked != resp.chunked {
			t.Fatalf("chunked: net/http %v, kiln %v", stdChunked, resp.chunked)
		}
		if !resp.chunked && !bodiless && std.ContentLength != resp.contentLength {
			t.Fatalf("Content-Length: net/http %d, kiln %d", std.ContentLength, resp.contentLength)
		}
		if std.Close && !resp.close {
			t.Fatal("kiln would reuse a connection net/http closes")
		}
		kb, kerr := io.ReadAll(io.LimitReader(resp.body, 1<<20))
		sb, serr := io.ReadAll(io.LimitReader(std.Body, 1<<20))
		if kerr == nil && serr == nil && string(kb) != string(sb) {
			t.Fatalf("body: net/http %q, kiln %q", sb, kb)
		}
	})
}
