package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kiln-dev/kiln/pkg/pki"
	"github.com/kiln-dev/kiln/pkg/proxy/plugins"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest/grpcecho"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
)

// startGRPCUpstream serves grpcecho on loopback (over TLS with creds).
func startGRPCUpstream(t *testing.T, creds credentials.TransportCredentials) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	srv := grpcecho.NewServer(opts...)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// grpcGateway starts a gateway whose gRPC route /kiln.test.Echo/ goes to a
// service of protocol at upstream, with extra records (and extra["service"]
// fields of the service; a plugin's "route": "echo" is that route), and
// returns a
// gRPC client connection to it (h2c) and its address.
func grpcGateway(t *testing.T, protocol, upstream string, extra map[string][]map[string]any) (*grpc.ClientConn, string, *server.Engine) {
	t.Helper()
	e, gw := proxytest.StartGatewayOptions(t, server.Options{Plugins: plugins.Registry()})
	host, port := proxytest.HostPort(t, upstream)
	const svcID, routeID = "cccccccc-0000-4000-8000-000000000001", "cccccccc-0000-4000-8000-000000000002"
	recs := map[string][]map[string]any{
		"services": {{"id": svcID, "protocol": protocol, "host": host, "port": port}},
		"routes":   {{"id": routeID, "protocols": []any{"grpc", "grpcs"}, "paths": []any{"/kiln.test.Echo/"}, "service": map[string]any{"id": svcID}}},
	}
	for k, v := range extra {
		if k == "service" { // fields of the service
			for f, fv := range v[0] {
				recs["services"][0][f] = fv
			}
			continue
		}
		for _, rec := range v {
			if rec["route"] == "echo" {
				rec["route"] = map[string]any{"id": routeID}
			}
		}
		recs[k] = v
	}
	if err := e.Update(proxytest.BuildConfig(t, 1, recs)); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(gw, "http://")
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, addr, e
}

func say(ctx context.Context, conn *grpc.ClientConn, name string, opts ...grpc.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	err := conn.Invoke(ctx, grpcecho.SayPath, wrapperspb.String(name), out, opts...)
	return out.GetValue(), err
}

// TestGRPCProxy calls a gRPC service through the gateway, over h2c and
// over TLS to the upstream: unary calls with headers, trailers and error
// statuses passed through, the headers Kong adds upstream, and a
// bidirectional stream whose messages cross one at a time.
func TestGRPCProxy(t *testing.T) {
	kp, err := pki.SelfSigned(pki.Options{CommonName: "localhost", Hosts: []string{"127.0.0.1"}, Usage: pki.ServerAuth, Validity: pki.DefaultValidity})
	if err != nil {
		t.Fatal(err)
	}
	cert := kp.TLS()
	for _, tc := range []struct {
		protocol string
		creds    credentials.TransportCredentials
	}{
		{"grpc", nil},
		{"grpcs", credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			conn, _, e := grpcGateway(t, tc.protocol, startGRPCUpstream(t, tc.creds), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			ctx2 := metadata.AppendToOutgoingContext(ctx, "x-echo", "x-real-ip", "x-echo", "via", "x-echo", "x-forwarded-proto", "x-echo", "x-forwarded-path")
			var header, trailer metadata.MD
			got, err := say(ctx2, conn, "kiln", grpc.Header(&header), grpc.Trailer(&trailer))
			if err != nil {
				t.Fatal(err)
			}
			want := "hello kiln x-real-ip=127.0.0.1 via=2 kong/3.10.0 x-forwarded-proto=http x-forwarded-path=/kiln.test.Echo/Say"
			if got != want {
				t.Errorf("Say answered %q, want %q", got, want)
			}
			if header.Get("x-upstream-header")[0] != "h" || len(header.Get("x-kong-upstream-latency")) != 1 || header.Get("via")[0] != "1.1 kong/3.10.0" {
				t.Errorf("response header %v: want the upstream's and Kong's", header)
			}
			if v := trailer.Get("x-upstream-trailer"); len(v) != 1 || v[0] != "t" {
				t.Errorf("trailer %v: want the upstream's x-upstream-trailer", trailer)
			}

			_, err = say(ctx, conn, "fail")
			if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() != "no greeting for fail" {
				t.Errorf("an upstream NotFound reached the client as %v", err)
			}

			stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, grpcecho.ChatPath)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				// One message at a time: the next is sent only after
				// the echo of this one came back through the gateway.
				msg := fmt.Sprintf("m%d", i)
				if err := stream.SendMsg(wrapperspb.String(msg)); err != nil {
					t.Fatal(err)
				}
				in := new(wrapperspb.StringValue)
				if err := stream.RecvMsg(in); err != nil || in.Value != "echo "+msg {
					t.Fatalf("stream message %d: %q %v", i, in.GetValue(), err)
				}
			}
			if err := stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if err := stream.RecvMsg(new(wrapperspb.StringValue)); !errors.Is(err, io.EOF) {
				t.Fatalf("after CloseSend the stream ended with %v, want io.EOF", err)
			}

			// The client over TLS (h2 by ALPN on an http2 ssl listener).
			tlsAddr, _ := proxytest.ServeProxy(t, e, server.ListenSpec{SSL: true, HTTP2: true})
			tconn, err := grpc.NewClient("passthrough:///"+tlsAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}))) //nolint:gosec // the gateway's self-signed default certificate
			if err != nil {
				t.Fatal(err)
			}
			defer tconn.Close()
			if got, err := say(ctx, tconn, "tls"); err != nil || got != "hello tls" {
				t.Fatalf("Say over TLS: %q %v", got, err)
			}
		})
	}
}

// rawGRPC makes a gRPC-looking POST over h2c and returns the response's
// status, headers and trailers, as a client that is not grpc-go sees them.
func rawGRPC(t *testing.T, addr, path string, hdr map[string]string) (int, http.Header) {
	t.Helper()
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); len(b) != 0 {
		t.Errorf("%s: a gRPC answer of kiln's own had a body: %q", path, b)
	}
	return resp.StatusCode, resp.Header
}

// TestGRPCAnswers checks the answers kiln produces itself for gRPC calls,
// as Kong's kong.response.exit and kong.response.error shape them: the
// HTTP status, grpc-status and grpc-message (a plugin's message, or the
// status's name), no body.
func TestGRPCAnswers(t *testing.T) {
	up := startGRPCUpstream(t, nil)
	conn, addr, _ := grpcGateway(t, "grpc", up, map[string][]map[string]any{
		"consumers":           {{"id": "cccccccc-0000-4000-8000-000000000003", "username": "u"}},
		"keyauth_credentials": {{"consumer": map[string]any{"id": "cccccccc-0000-4000-8000-000000000003"}, "key": "k"}},
		"plugins":             {{"name": "key-auth", "route": "echo", "config": map[string]any{}}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := say(ctx, conn, "nokey"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a call without a key: %v, want Unauthenticated", err)
	}
	if got, err := say(metadata.AppendToOutgoingContext(ctx, "apikey", "k"), conn, "key"); err != nil || got != "hello key" {
		t.Errorf("a call with the key: %q %v", got, err)
	}

	for _, tc := range []struct {
		path        string
		hdr         map[string]string
		status      int
		grpcStatus  string
		grpcMessage string
		contentType string
	}{
		{"/kiln.test.Echo/Say", nil, 401, "16", "No API key found in request", ""},
		{"/kiln.test.Echo/Say", map[string]string{"apikey": "wrong"}, 401, "16", "Unauthorized", ""},
		{"/other.Service/Call", nil, 404, "5", "NotFound", "application/grpc"},
	} {
		st, h := rawGRPC(t, addr, tc.path, tc.hdr)
		if st != tc.status || h.Get("Grpc-Status") != tc.grpcStatus || h.Get("Grpc-Message") != tc.grpcMessage || h.Get("Content-Type") != tc.contentType {
			t.Errorf("%s %v: %d grpc-status %q grpc-message %q content-type %q; want %d %q %q %q", tc.path, tc.hdr,
				st, h.Get("Grpc-Status"), h.Get("Grpc-Message"), h.Get("Content-Type"), tc.status, tc.grpcStatus, tc.grpcMessage, tc.contentType)
		}
	}

	// An upstream that cannot be reached: Kong's 502 with its message in
	// grpc-message (grpc-go reads the HTTP status: Unavailable).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()
	down, downAddr, _ := grpcGateway(t, "grpc", closed, nil)
	if _, err := say(ctx, down, "x"); status.Code(err) != codes.Unavailable {
		t.Errorf("an unreachable upstream: %v, want Unavailable", err)
	}
	st, h := rawGRPC(t, downAddr, "/kiln.test.Echo/Say", nil)
	if st != http.StatusBadGateway || h.Get("Grpc-Status") != "13" || h.Get("Grpc-Message") != "An invalid response was received from the upstream server" {
		t.Errorf("an unreachable upstream, raw: %d %v", st, h)
	}

	// A call that moves in neither direction for the service's
	// read_timeout is ended: Kong's 504, grpc-status 4.
	slow, _, _ := grpcGateway(t, "grpc", up, map[string][]map[string]any{"service": {{"read_timeout": 300}}})
	stream, err := slow.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, grpcecho.ChatPath)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = stream.RecvMsg(new(wrapperspb.StringValue))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "504") || time.Since(start) > 5*time.Second {
		t.Errorf("a silent stream with read_timeout 300 ms ended after %v with %v; want Kong's 504", time.Since(start), err)
	}
	// Messages that keep moving keep it alive for longer.
	stream, err = slow.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, grpcecho.ChatPath)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 { // 8 × 100 ms: more than the read_timeout in all
		if err := stream.SendMsg(wrapperspb.String("x")); err != nil {
			t.Fatal(err)
		}
		if err := stream.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			t.Fatalf("message %d of a stream that kept moving: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = stream.CloseSend()
}

// TestGRPCBalancing sends calls to an upstream entity with a live and a
// dead gRPC target: every call succeeds, the dead target's failed connects
// being retried on the live one, and the passive health check then takes
// the dead target out.
func TestGRPCBalancing(t *testing.T) {
	live := startGRPCUpstream(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	const grpcUpID = "cccccccc-0000-4000-8000-000000000009"
	conn, _, e := grpcGateway(t, "grpc", live, map[string][]map[string]any{
		"upstreams": {{"id": grpcUpID, "name": "echo-targets", "healthchecks": map[string]any{
			"passive": map[string]any{"unhealthy": map[string]any{"tcp_failures": 1}},
		}}},
		"targets": {
			{"upstream": map[string]any{"id": grpcUpID}, "target": live},
			{"upstream": map[string]any{"id": grpcUpID}, "target": dead},
		},
		"service": {{"host": "echo-targets", "port": 80}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		if got, err := say(ctx, conn, fmt.Sprint(i)); err != nil || got != fmt.Sprintf("hello %d", i) {
			t.Fatalf("call %d through an upstream with a dead target: %q %v", i, got, err)
		}
	}
	health, overall := e.Balancers().UpstreamHealth(grpcUpID)
	if health[dead] != "UNHEALTHY" || health[live] != "HEALTHY" || overall != "HEALTHY" {
		t.Fatalf("target health after the calls: %v %s; want the dead one UNHEALTHY", health, overall)
	}
}

// TestGRPCFromHTTP1OffTheLoop: an HTTP/1.1 client's call to a gRPC service
// (a route open to http) goes through net/http's HTTP/2 client, which
// waits on goroutines of its own. The call must not hold up the event
// loop serving the client's connection: with one loop, a request on
// another connection is answered while the call is still open, whether
// the call has a streamed body or none. Afterwards the connection is
// served by its loop again.
func TestGRPCFromHTTP1OffTheLoop(t *testing.T) {
	release := make(chan struct{})
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Close() })
	h2 := &http2.Server{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			<-release
			_, _ = io.WriteString(w, "released")
			return
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = fmt.Fprintf(w, "got %q", b)
	})
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go h2.ServeConn(c, &http2.ServeConnOpts{Handler: handler})
		}
	}()
	echo := proxytest.StartEcho(t, "fast")
	e, gw := proxytest.StartGatewayOptions(t, server.Options{Plugins: plugins.Registry(), EventLoops: 1})
	gh, gp := proxytest.HostPort(t, up.Addr().String())
	eh, ep := proxytest.HostPort(t, strings.TrimPrefix(echo, "http://"))
	const grpcSvc, fastSvc = "cccccccc-0000-4000-8000-000000000011", "cccccccc-0000-4000-8000-000000000012"
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": grpcSvc, "protocol": "grpc", "host": gh, "port": gp}, {"id": fastSvc, "host": eh, "port": ep}},
		"routes": {
			{"id": "cccccccc-0000-4000-8000-000000000013", "paths": []any{"/slow"}, "service": map[string]any{"id": grpcSvc}},
			{"id": "cccccccc-0000-4000-8000-000000000014", "paths": []any{"/fast"}, "service": map[string]any{"id": fastSvc}},
		},
	})); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(gw, "http://")
	fast := func() {
		t.Helper()
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get(gw + "/fast")
		if err != nil {
			t.Fatalf("a request on another connection, while the gRPC call is open: %v", err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("fast request: %d", resp.StatusCode)
		}
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	read := func(want string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Fatalf("got %d %q, want 200 with %q", resp.StatusCode, b, want)
		}
	}
	// A call with a body, still being sent.
	if _, err := io.WriteString(conn, "POST /slow/Call HTTP/1.1\r\nHost: gw\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the call reaches the upstream
	fast()
	if _, err := io.WriteString(conn, "3\r\ndef\r\n0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	read(`got "abcdef"`)
	// A call without a body (served inside the loop's read callback),
	// released by the upstream only after the other request.
	if _, err := io.WriteString(conn, "GET /slow/Wait HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	fast()
	close(release)
	read("released")
	// The connection is the loop's again.
	if _, err := io.WriteString(conn, "GET /fast HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	read("fast")
}
