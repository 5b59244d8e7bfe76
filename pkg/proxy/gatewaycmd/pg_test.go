package gatewaycmd

import (
	"context"
	"fmt"
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
	pgFlags := postgresNodeFlags(t, "gw")
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

// TestGatewayRunClusterLogLevel runs two gateway nodes on one PostgreSQL
// database: a level set through node A's /debug/cluster/log-level reaches
// node B, which reports it on /debug/node/log-level.
func TestGatewayRunClusterLogLevel(t *testing.T) {
	pgFlags := postgresNodeFlags(t, "gwlog")
	_, adminA, _ := startGatewayCLI(t, pgFlags...)
	_, adminB, _ := startGatewayCLI(t, pgFlags...)
	message := func(method, url string) string {
		t.Helper()
		code, msg := adminMessage(t, method, url)
		return fmt.Sprintf("%d %s", code, msg)
	}
	if got := message("PUT", adminA+"/debug/cluster/log-level/debug?timeout=30"); got != "200 log level changed" {
		t.Fatalf("PUT /debug/cluster/log-level on node A: %s", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := message("GET", adminB+"/debug/node/log-level")
		if got == "200 log level: debug" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B never took the cluster's level: %s", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := message("GET", adminA+"/debug/node/log-level"); got != "200 log level: debug" {
		t.Fatalf("node A after its own cluster PUT: %s", got)
	}
}

// postgresNodeFlags starts PostgreSQL, creates database db and returns the
// flags of a gateway node using it, polling for other nodes' changes every
// 100 ms.
func postgresNodeFlags(t *testing.T, db string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := pgtest.StartT(t)
	if _, err := pg.CreateDB(ctx, db); err != nil {
		t.Fatal(err)
	}
	return []string{"--database", "postgres", "--pg-host", pg.SocketDir(), "--pg-user", "postgres", "--pg-database", db, "--pg-poll", "100ms"}
}
