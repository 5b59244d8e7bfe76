package balancer

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/tcptest"
)

// grpcHealthServer serves grpc-go's health service on loopback (over TLS
// when cert is given); the returned server sets the statuses.
func grpcHealthServer(t *testing.T, cert *tls.Certificate, withHealth bool, sni *string) (string, *health.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if cert != nil {
		// sni is read after the probe returned, which follows the
		// handshake that set it.
		cfg := &tls.Config{Certificates: []tls.Certificate{*cert}, GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if sni != nil {
				*sni = hello.ServerName
			}
			return nil, nil
		}}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	srv := grpc.NewServer(opts...)
	hs := health.NewServer()
	if withHealth {
		healthpb.RegisterHealthServer(srv, hs)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), hs
}

func probeOnce(t *testing.T, addr string, mutate func(u *entity.Upstream)) Event {
	t.Helper()
	p := newProber(upstream("round-robin", mutate))
	defer p.close()
	return p.probe(context.Background(), &Target{Name: addr})
}

func TestGRPCHealthProbe(t *testing.T) {
	cert := testCertificate(t)
	addr, hs := grpcHealthServer(t, nil, true, nil)
	hs.SetServingStatus("kiln.test.Echo", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus("kiln.test.Up", healthpb.HealthCheckResponse_SERVING)
	bare, _ := grpcHealthServer(t, nil, false, nil)
	var sni string
	tlsAddr, _ := grpcHealthServer(t, &cert, true, &sni)
	closed := closedAddr(t)
	silent := silentListener(t)
	h1 := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer h1.Close()

	grpcType := func(typ, path string) func(*entity.Upstream) {
		return func(u *entity.Upstream) {
			u.Healthchecks.Active.Type = typ
			u.Healthchecks.Active.HTTPPath = path
		}
	}
	for _, tc := range []struct {
		name   string
		addr   string
		mutate func(*entity.Upstream)
		want   Event
	}{
		{"server as a whole serving", addr, grpcType("grpc", "/"), EventSuccess},
		{"service serving", addr, grpcType("grpc", "/kiln.test.Up"), EventSuccess},
		{"service not serving", addr, grpcType("grpc", "/kiln.test.Echo"), EventHTTPFailure},
		{"unknown service", addr, grpcType("grpc", "/kiln.test.Nope"), EventHTTPFailure},
		{"no health service", bare, grpcType("grpc", "/"), EventHTTPFailure},
		{"nothing listening", closed, grpcType("grpc", "/"), EventTCPFailure},
		{"HTTP/1.1 server", h1.Listener.Addr().String(), grpcType("grpc", "/"), EventTCPFailure},
		{"no answer", silent, func(u *entity.Upstream) {
			grpcType("grpc", "/")(u)
			u.Healthchecks.Active.Timeout = 0.2
		}, EventTimeout},
		{"grpcs", tlsAddr, func(u *entity.Upstream) {
			grpcType("grpcs", "/")(u)
			u.Healthchecks.Active.HTTPSVerifyCertificate = false
		}, EventSuccess},
		{"grpcs, certificate not trusted", tlsAddr, func(u *entity.Upstream) {
			grpcType("grpcs", "/")(u)
			u.Healthchecks.Active.HTTPSVerifyCertificate = true
		}, EventTCPFailure},
		{"grpc to a TLS server", tlsAddr, grpcType("grpc", "/"), EventTCPFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := probeOnce(t, tc.addr, tc.mutate); got != tc.want {
				t.Fatalf("probe = %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("https_sni is the TLS server name", func(t *testing.T) {
		name := "probe.example"
		ev := probeOnce(t, tlsAddr, func(u *entity.Upstream) {
			grpcType("grpcs", "/")(u)
			u.Healthchecks.Active.HTTPSSNI = &name
		})
		if ev != EventSuccess || sni != name {
			t.Fatalf("probe = %v, server name %q; want a success with %q", ev, sni, name)
		}
	})
}

func TestHTTPSProbeServerNameAndHost(t *testing.T) {
	var gotSNI, gotHost string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		gotSNI, gotHost = r.TLS.ServerName, r.Host
	}))
	srv.StartTLS()
	defer srv.Close()
	sni, host := "probe.example", "app.example"
	ev := probeOnce(t, srv.Listener.Addr().String(), func(u *entity.Upstream) {
		u.Healthchecks.Active.Type = "https"
		u.Healthchecks.Active.HTTPSSNI = &sni
		u.HostHeader = &host
	})
	if ev != EventSuccess || gotSNI != sni || gotHost != host {
		t.Fatalf("probe = %v with server name %q and Host %q; want a success with %q and %q", ev, gotSNI, gotHost, sni, host)
	}
}

// TestActiveGRPCHealthChecks drives a target through both transitions
// with the gRPC health service's answers.
func TestActiveGRPCHealthChecks(t *testing.T) {
	addr, hs := grpcHealthServer(t, nil, true, nil)
	up := upstream("round-robin", func(u *entity.Upstream) {
		a := &u.Healthchecks.Active
		a.Type = "grpc"
		a.Healthy.Interval, a.Healthy.Successes = 1, 1
		a.Unhealthy.Interval, a.Unhealthy.HTTPFailures = 1, 1
	})
	m := NewManager(nil)
	defer m.Close()
	b := m.Update(context.Background(), &entity.Config{Upstreams: []*entity.Upstream{up}, Targets: targets(addr, 100)}).ByName("backend")
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	waitHealthy(t, b.targets[0], false)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	waitHealthy(t, b.targets[0], true)
}

func waitHealthy(t *testing.T, tg *Target, healthy bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if tg.Healthy() == healthy {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("target never became healthy=%v", healthy)
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// silentListener accepts connections and never answers.
func silentListener(t *testing.T) string {
	return tcptest.Serve(t, func(c net.Conn) {
		defer c.Close()
		_, _ = io.Copy(io.Discard, c)
	})
}

func TestHealthMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		want uint64
		err  bool
	}{
		{"empty is UNKNOWN", nil, 0, false},
		{"SERVING", []byte{0x08, 0x01}, 1, false},
		{"NOT_SERVING", []byte{0x08, 0x02}, 2, false},
		{"unknown fields skipped", []byte{0x12, 0x02, 'h', 'i', 0x1d, 1, 2, 3, 4, 0x21, 1, 2, 3, 4, 5, 6, 7, 8, 0x08, 0x01}, 1, false},
		{"truncated varint", []byte{0x08, 0x80}, 0, true},
		{"truncated bytes", []byte{0x12, 0x05, 'h'}, 0, true},
		{"group wire type", []byte{0x0b}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := healthCheckStatus(tc.msg)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("healthCheckStatus = %d, %v; want %d, error %v", got, err, tc.want, tc.err)
			}
		})
	}
	if got := healthCheckRequest("kiln.test.Echo"); string(got) != "\x0a\x0ekiln.test.Echo" {
		t.Fatalf("healthCheckRequest = %q", got)
	}
	if _, err := grpcMessage([]byte{0, 0, 0, 0, 3, 1}); err == nil {
		t.Fatal("grpcMessage accepted a body shorter than its header says")
	}
}

// FuzzHealthCheckStatus feeds the decoder of the health service's answer
// (untrusted: it comes from the upstream) arbitrary bytes.
func FuzzHealthCheckStatus(f *testing.F) {
	f.Add([]byte{0x08, 0x01})
	f.Add([]byte{0x12, 0x02, 'h', 'i', 0x08, 0x02})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, msg []byte) {
		status, err := healthCheckStatus(msg)
		if err == nil && len(msg) == 0 && status != 0 {
			t.Fatalf("empty message decoded to %d", status)
		}
		_, _ = grpcMessage(msg)
	})
}

// testCertificate is net/http/httptest's certificate for 127.0.0.1 (not
// trusted by the system's roots).
func testCertificate(t *testing.T) tls.Certificate {
	t.Helper()
	s := httptest.NewUnstartedServer(http.NotFoundHandler())
	s.StartTLS()
	defer s.Close()
	return s.TLS.Certificates[0]
}
