package gatewaycmd

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/store/pgtest"
)

// TestGatewayRunPostgresTwoNodes runs two gateway nodes on one PostgreSQL
// database: a route created through node A's Admin API starts working on
// node B's proxy without a restart.
func TestGatewayRunPostgresTwoNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := pgtest.StartT(t)
	if _, err := pg.CreateDB(ctx, "gw"); err != nil {
		t.Fatal(err)
	}
	pgFlags := []string{"--database", "postgres", "--pg-host", pg.SocketDir(), "--pg-user", "postgres", "--pg-database", "gw", "--pg-poll", "100ms"}
	_, adminA, _ := startGatewayCLI(t, pgFlags...)
	proxyB, _, statusB := startGatewayCLI(t, pgFlags...)

	up := upstreamEcho(t)
	resp, err := http.PostForm(adminA+"/services", url.Values{"name": {"svc"}, "url": {"http://" + up}})
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST /services on node A: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.PostForm(adminA+"/services/svc/routes", url.Values{"paths[]": {"/pg"}})
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST route on node A: %v %v", resp, err)
	}
	resp.Body.Close()

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err = http.Get(proxyB + "/pg/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			if !strings.Contains(string(body), `"uri":"/x"`) {
				t.Fatalf("node B proxied to %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B never picked up node A's route: %d %s", resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err = http.Get(statusB + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"reachable":true`) {
		t.Fatalf("node B /status: %s", body)
	}
}
