package server_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
)

// FuzzH2Frames sends the HTTP/2 server (on one event loop) arbitrary
// sequences of well-formed frames after the preface and SETTINGS, then a
// PING: the server must answer it or end the connection, never hang or
// crash. The input is a list of records (type, flags, stream id, payload
// length, payload), which keeps the frames' framing valid so that the
// fuzzer explores what they mean: stream states, flow control, header
// blocks, settings.
func FuzzH2Frames(f *testing.F) {
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, hf := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/fuzz"}, {"content-length", "3"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1]})
	}
	headers := block.Bytes()
	rec := func(typ http2.FrameType, flags http2.Flags, id byte, payload []byte) []byte {
		return append([]byte{byte(typ), byte(flags), id, byte(len(payload))}, payload...)
	}
	cat := func(recs ...[]byte) []byte { return bytes.Join(recs, nil) }
	f.Add(cat(rec(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, headers), rec(http2.FrameData, http2.FlagDataEndStream, 1, []byte("abc"))))
	f.Add(cat(rec(http2.FrameHeaders, 0, 1, headers[:4]), rec(http2.FrameContinuation, http2.FlagContinuationEndHeaders, 1, headers[4:])))
	f.Add(cat(rec(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, headers), rec(http2.FrameRSTStream, 0, 1, []byte{0, 0, 0, 8})))
	f.Add(cat(rec(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 3, headers), rec(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 1, 0})))
	f.Add(cat(rec(http2.FrameSettings, 0, 0, []byte{0, 4, 0, 0, 0, 0}), rec(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 5, headers)))
	f.Add(cat(rec(http2.FrameData, 0, 1, []byte("x")), rec(http2.FrameGoAway, 0, 0, []byte{0, 0, 0, 0, 0, 0, 0, 0})))

	up := proxytest.StartEcho(f, "up")
	e, gw := proxytest.StartGatewayOptions(f, server.Options{Plugins: plugins.Registry(), EventLoops: 1})
	host, port := proxytest.HostPort(f, strings.TrimPrefix(up, "http://"))
	if err := e.Update(proxytest.BuildConfig(f, 1, map[string][]map[string]any{
		"services": {{"id": "dddddddd-0000-4000-8000-0000000003a1", "host": host, "port": port}},
		"routes":   {{"id": "dddddddd-0000-4000-8000-0000000003b1", "paths": []any{"/"}, "service": map[string]any{"id": "dddddddd-0000-4000-8000-0000000003a1"}}},
	})); err != nil {
		f.Fatal(err)
	}
	addr := strings.TrimPrefix(gw, "http://")

	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var out bytes.Buffer
		out.WriteString(http2.ClientPreface)
		fr := http2.NewFramer(&out, nil)
		_ = fr.WriteSettings()
		for len(in) >= 4 {
			typ, flags, id, n := in[0], in[1], in[2], int(in[3])
			in = in[4:]
			n = min(n, len(in))
			var hdr [9]byte
			hdr[0], hdr[1], hdr[2] = 0, 0, byte(n)
			hdr[3], hdr[4] = typ, flags
			binary.BigEndian.PutUint32(hdr[5:], uint32(id))
			out.Write(hdr[:])
			out.Write(in[:n])
			in = in[n:]
		}
		ping := [8]byte{'k', 'i', 'l', 'n', 'f', 'u', 'z', 'z'}
		_ = fr.WritePing(false, ping)
		// Written while the answers are read, as a client does: a
		// server that answers as it reads can fill both directions.
		go func() { _, _ = c.Write(out.Bytes()) }()
		rf := http2.NewFramer(nil, bufio.NewReader(c))
		for {
			got, err := rf.ReadFrame()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the server neither answered the PING nor ended the connection within 10 s")
				}
				return // ended (EOF, reset) or a frame this client cannot read
			}
			if p, ok := got.(*http2.PingFrame); ok && p.IsAck() && p.Data == ping {
				return
			}
			if _, ok := got.(*http2.GoAwayFrame); ok {
				// The connection ends: the server closes it.
				var ne net.Error
				if _, err := io.Copy(io.Discard, c); errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the server sent GOAWAY but kept the connection open for 10 s")
				}
				return
			}
		}
	})
}
