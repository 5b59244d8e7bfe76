package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
)

// TestClientTimeoutsCountFromProgress checks that the client body and send
// timeouts (nginx's client_body_timeout and send_timeout) bound a stall,
// not a transfer: an upload and a download that keep moving for several
// times the timeout complete, a stalled upload is answered 408 and a
// client that stops reading is disconnected. The cases run in parallel.
func TestClientTimeoutsCountFromProgress(t *testing.T) {
	const timeout = 600 * time.Millisecond
	host, port := bulkUpstream(t)
	e, gw := proxytest.StartGatewayOptions(t, server.Options{ClientBodyTimeout: timeout, SendTimeout: timeout})
	routeAllTo(t, e, net.JoinHostPort(host, fmt.Sprint(port)))
	addr := strings.TrimPrefix(gw, "http://")
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}

	t.Run("steady upload", func(t *testing.T) {
		t.Parallel()
		body := bulkBytes(30 << 10)
		c := dial(t)
		fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
		for off := 0; off < len(body); off += 1 << 10 { // 30 pieces, 50 ms apart: 1.5 s
			if _, err := c.Write(body[off : off+1<<10]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		sum := sha256.Sum256(body)
		if resp.StatusCode != http.StatusOK || string(got) != hex.EncodeToString(sum[:]) {
			t.Fatalf("an upload that kept moving for 1.5 s: %d %q", resp.StatusCode, got)
		}
	})

	t.Run("stalled upload", func(t *testing.T) {
		t.Parallel()
		c := dial(t)
		fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly a part")
		start := time.Now()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(got), "Request timeout") || !resp.Close {
			t.Fatalf("a stalled upload: %d close=%v %q", resp.StatusCode, resp.Close, got)
		}
		if took := time.Since(start); took > 10*timeout {
			t.Fatalf("a stalled upload was answered after %v (timeout %v)", took, timeout)
		}
	})

	const size = 48 << 20 // more than the loopback socket buffers hold
	t.Run("steady download", func(t *testing.T) {
		t.Parallel()
		c := dial(t)
		fmt.Fprintf(c, "GET /down?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", size)
		resp, err := http.ReadResponse(bufio.NewReaderSize(c, 64<<10), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// Reading 2 MiB every 50 ms: the whole body takes about 1.2 s,
		// twice the send timeout, and no write waits much longer than
		// 50 ms.
		var n int64
		for {
			m, err := io.CopyN(io.Discard, resp.Body, 2<<20)
			n += m
			if err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if n != size {
			t.Fatalf("a download read steadily got %d of %d bytes", n, size)
		}
	})

	t.Run("quiet WebSocket tunnel", func(t *testing.T) {
		t.Parallel()
		// A tunnel has no send or body timeout: it may stay quiet for
		// longer and still carry data both ways.
		thost, tport := tunnelUpstream(t, nil)
		te, tgw := proxytest.StartGatewayOptions(t, server.Options{ClientBodyTimeout: timeout, SendTimeout: timeout})
		routeAllTo(t, te, net.JoinHostPort(thost, fmt.Sprint(tport)))
		c, err := net.Dial("tcp", strings.TrimPrefix(tgw, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := checkTunnel(t, c)
		time.Sleep(4 * timeout)
		fmt.Fprintf(c, "again\n")
		if line, err := br.ReadString('\n'); err != nil || line != "echo again\n" {
			t.Fatalf("after %v quiet, the tunnel answered %q %v", 4*timeout, line, err)
		}
	})

	t.Run("HTTP/2 client stops reading", func(t *testing.T) {
		t.Parallel()
		// A raw h2c client that opens flow-control windows wider than the
		// body, asks for it and then does not read its socket: only the
		// socket holds the gateway up, which the send timeout covers.
		c := dial(t)
		fr := h2Request(t, c, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}}, "GET", fmt.Sprintf("/down?n=%d", size), true)
		if err := fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
			t.Fatal(err)
		}
		time.Sleep(6 * timeout)
		// The stream is reset or the connection closed by now: what
		// is left arrives at once.
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		if n >= size {
			t.Fatalf("an HTTP/2 client that stopped reading for %v still got %d bytes for a %d-byte body", 6*timeout, n, size)
		}
	})

	// h2StreamEnd reads frames until stream 1 is reset or answered with
	// a status, acknowledging the server's settings and never opening a
	// flow-control window.
	h2StreamEnd := func(t *testing.T, fr *http2.Framer) (status string, reset http2.ErrCode) {
		t.Helper()
		dec := hpack.NewDecoder(4096, nil)
		for {
			f, err := h2NextFrame(fr)
			if err != nil {
				t.Fatalf("before stream 1 ended: %v", err)
			}
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				if f.StreamID == 1 {
					return "", f.ErrCode
				}
			case *http2.HeadersFrame:
				fields, err := dec.DecodeFull(f.HeaderBlockFragment())
				if err != nil {
					t.Fatal(err)
				}
				for _, hf := range fields {
					if hf.Name == ":status" && f.StreamID == 1 {
						return hf.Value, 0
					}
				}
			case *http2.GoAwayFrame:
				t.Fatalf("the connection was closed (GOAWAY %v) before stream 1 ended", f.ErrCode)
			}
		}
	}

	t.Run("HTTP/2 stream stalled by its window", func(t *testing.T) {
		t.Parallel()
		// The client reads its socket but never opens the stream's
		// window beyond the initial 64 KiB: the connection has nothing
		// to write, the stream waits. It is reset, as nginx's
		// send_timeout ends such a stream.
		c := dial(t)
		fr := h2Request(t, c, nil, "GET", fmt.Sprintf("/down?n=%d", 4<<20), true)
		start := time.Now()
		for {
			f, err := h2NextFrame(fr)
			if err != nil {
				t.Fatalf("a stream stalled by its window was not reset after %v: %v", time.Since(start), err)
			}
			if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == 1 {
				break
			}
		}
		if took := time.Since(start); took < timeout || took > 10*timeout {
			t.Fatalf("a stream stalled by its window was reset after %v (timeout %v)", took, timeout)
		}
		// The connection and its other streams go on.
		if err := fr.WritePing(false, [8]byte{'k', 'i', 'l', 'n'}); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("the connection did not outlive the reset stream: %v", err)
			}
			if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
				break
			}
		}
	})

	t.Run("HTTP/2 stalled upload", func(t *testing.T) {
		t.Parallel()
		c := dial(t)
		fr := h2Request(t, c, nil, "POST", "/up", false, [2]string{"content-length", "1000"})
		if err := fr.WriteData(1, false, []byte("only a part")); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		status, reset := h2StreamEnd(t, fr)
		if status != "408" {
			t.Fatalf("a stalled HTTP/2 upload: status %q, reset %v; want 408", status, reset)
		}
		if took := time.Since(start); took < timeout || took > 10*timeout {
			t.Fatalf("a stalled HTTP/2 upload was answered after %v (timeout %v)", took, timeout)
		}
	})

	t.Run("HTTP/2 slow upstream and steady upload", func(t *testing.T) {
		t.Parallel()
		// Only waits on the client count: an upstream that pauses for
		// longer than the send timeout between two writes, and an upload
		// that keeps moving for longer than the body timeout, complete.
		tr := h2cTransport()
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		resp, err := client.Get(fmt.Sprintf("http://%s/down?n=%d&pause=%v", addr, 256<<10, 3*timeout))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, bulkBytes(256<<10)) {
			t.Fatalf("an HTTP/2 response whose upstream paused %v: %d of %d bytes, %v", 3*timeout, len(got), 256<<10, err)
		}

		body := bulkBytes(30 << 10)
		pr, pw := io.Pipe()
		go func() {
			for off := 0; off < len(body); off += 1 << 10 { // 1.5 s in all
				if _, err := pw.Write(body[off : off+1<<10]); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			_ = pw.Close()
		}()
		resp, err = client.Post(fmt.Sprintf("http://%s/up", addr), "application/octet-stream", pr)
		if err != nil {
			t.Fatal(err)
		}
		got, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha256.Sum256(body)
		if resp.StatusCode != http.StatusOK || string(got) != hex.EncodeToString(sum[:]) {
			t.Fatalf("an HTTP/2 upload that kept moving for 1.5 s: %d %q", resp.StatusCode, got)
		}
	})

	t.Run("client stops reading", func(t *testing.T) {
		t.Parallel()
		c := dial(t)
		fmt.Fprintf(c, "GET /down?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", size)
		time.Sleep(6 * timeout)
		n, _ := io.Copy(io.Discard, c)
		if n >= size {
			t.Fatalf("a client that stopped reading for %v still got the whole body (%d bytes)", 6*timeout, n)
		}
	})
}

// h2Request opens an HTTP/2 connection on c (the preface, a SETTINGS frame
// with settings) and sends stream 1's request headers (the pseudo-headers
// for method and path, then fields), ending the stream when endStream is
// set; it returns the connection's framer.
func h2Request(t *testing.T, c net.Conn, settings []http2.Setting, method, path string, endStream bool, fields ...[2]string) *http2.Framer {
	t.Helper()
	fr := http2.NewFramer(c, c)
	_, _ = io.WriteString(c, http2.ClientPreface)
	if err := fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	fields = append([][2]string{{":method", method}, {":scheme", "http"}, {":authority", "x"}, {":path", path}}, fields...)
	for _, f := range fields {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: endStream, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	return fr
}

// h2NextFrame reads the server's next frame other than SETTINGS,
// acknowledging the server's settings on the way.
func h2NextFrame(fr *http2.Framer) (http2.Frame, error) {
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		sf, ok := f.(*http2.SettingsFrame)
		if !ok {
			return f, nil
		}
		if !sf.IsAck() {
			_ = fr.WriteSettingsAck()
		}
	}
}

// h2cTransport is an HTTP/2 client over cleartext TCP (prior knowledge).
func h2cTransport() *http2.Transport {
	return &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return new(net.Dialer).DialContext(ctx, network, addr)
	}}
}
