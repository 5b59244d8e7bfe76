package server_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
)

const upID = "dddddddd-0000-4000-8000-000000000001"

func TestUpstreamBalancingRetriesAndHealth(t *testing.T) {
	a := proxytest.StartEcho(t, "a")
	b := proxytest.StartEcho(t, "b")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	_ = ln.Close()
	e, gw := proxytest.StartGateway(t, nil)
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"upstreams": {{"id": upID, "name": "backend", "healthchecks": map[string]any{
			"passive": map[string]any{"unhealthy": map[string]any{"tcp_failures": 1}},
		}}},
		"targets": {
			{"upstream": map[string]any{"id": upID}, "target": a, "weight": 100},
			{"upstream": map[string]any{"id": upID}, "target": b, "weight": 300},
			{"upstream": map[string]any{"id": upID}, "target": dead, "weight": 100},
		},
		"services": {{"id": svc, "host": "backend", "port": 80}},
		"routes":   {{"paths": []any{"/"}, "service": map[string]any{"id": svc}}},
	})); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for i := 0; i < 200; i++ {
		resp, body := proxytest.Get(t, gw+"/x", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s (a dead target must be retried on another one)", i, resp.StatusCode, body)
		}
		got := proxytest.DecodeEcho(t, body)
		counts[got.Server]++
		if strings.Contains(got.Host, "backend") {
			t.Fatalf("Host header %q names the upstream, want the target", got.Host)
		}
	}
	// a:b = 1:3 among the live targets (the dead one is retried away and
	// then marked unhealthy by the passive check).
	if counts["a"] < 30 || counts["a"] > 70 || counts["b"] < 130 {
		t.Fatalf("distribution %v, want about a=50 b=150", counts)
	}
	health, overall := e.Balancers().UpstreamHealth(upID)
	if health[dead] != "UNHEALTHY" || health[a] != "HEALTHY" || overall != "HEALTHY" {
		t.Fatalf("health %v %s", health, overall)
	}
}

func TestHTTPSUpstream(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "tls upstream saw "+r.URL.Path)
	}))
	defer up.Close()
	host, port := proxytest.HostPort(t, strings.TrimPrefix(up.URL, "https://"))
	e, gw := proxytest.StartGateway(t, nil)
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"services": {{"id": svc, "protocol": "https", "host": host, "port": port, "path": "/base"}},
		"routes":   {{"paths": []any{"/s"}, "service": map[string]any{"id": svc}}},
	})); err != nil {
		t.Fatal(err)
	}
	resp, body := proxytest.Get(t, gw+"/s/x", nil)
	if resp.StatusCode != 200 || string(body) != "tls upstream saw /base/x" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestNoHealthyTarget(t *testing.T) {
	e, gw := proxytest.StartGateway(t, nil)
	if err := e.Update(proxytest.BuildConfig(t, 1, map[string][]map[string]any{
		"upstreams": {{"id": upID, "name": "empty"}},
		"services":  {{"id": svc, "host": "empty"}},
		"routes":    {{"paths": []any{"/"}, "service": map[string]any{"id": svc}}},
	})); err != nil {
		t.Fatal(err)
	}
	resp, body := proxytest.Get(t, gw+"/", nil)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "failure to get a peer from the ring-balancer") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}
