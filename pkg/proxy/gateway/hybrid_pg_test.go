package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/gateway"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
	"github.com/kiln-dev/kiln/pkg/proxy/store/pgtest"
	"github.com/kiln-dev/kiln/pkg/proxy/store/sqlstore"
)

// TestHybridControlPlanesSharePostgres runs two control planes on one
// PostgreSQL database and a data plane connected to the first: the second
// lists it too, with the hash and status the first recorded.
func TestHybridControlPlanesSharePostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := pgtest.StartT(t)
	dsn, err := pg.CreateDB(ctx, "hybrid")
	if err != nil {
		t.Fatal(err)
	}
	m := clusterTLS(t)
	controlPlane := func() *node {
		st, err := sqlstore.OpenPostgres(ctx, dsn, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return start(t, gateway.Options{Store: st, Role: gateway.RoleControlPlane,
			Cluster: gateway.ClusterOptions{TLS: m, Listen: "127.0.0.1:0", UpdateFrequency: 100 * time.Millisecond}})
	}
	cpA, cpB := controlPlane(), controlPlane()
	dp := start(t, gateway.Options{Store: store.NewMemory(), Role: gateway.RoleDataPlane,
		Cluster: gateway.ClusterOptions{TLS: m, ControlPlane: cpA.cluster, Labels: map[string]string{"zone": "a"},
			ReconnectDelay: func() time.Duration { return 100 * time.Millisecond }}})

	// The DP pings CP A right after applying A's configuration; B reads
	// the row A wrote.
	eventually(t, "control plane B to list the data plane connected to A", func() string {
		dpHash, _ := statusJSON(t, dp.status+"/status")["configuration_hash"].(string)
		list := statusJSON(t, cpB.admin+"/clustering/data-planes")
		rows, _ := list["data"].([]any)
		if len(rows) != 1 {
			return toJSON(list)
		}
		row := rows[0].(map[string]any)
		labels, _ := row["labels"].(map[string]any)
		if row["config_hash"] != dpHash || row["sync_status"] != "normal" || labels["zone"] != "a" {
			return toJSON(row) + " dp hash " + dpHash
		}
		return ""
	})
	// Both answer the deprecated map from the same row (last_seen may move
	// with a ping in between, so it is left out).
	a := statusJSON(t, cpA.admin+"/clustering/status")
	b := statusJSON(t, cpB.admin+"/clustering/status")
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("/clustering/status: A %s, B %s", toJSON(a), toJSON(b))
	}
	for id, v := range a {
		ea, _ := v.(map[string]any)
		eb, _ := b[id].(map[string]any)
		if eb == nil || ea["config_hash"] != eb["config_hash"] || ea["hostname"] != eb["hostname"] || ea["ip"] != eb["ip"] {
			t.Fatalf("/clustering/status differs: A %s, B %s", toJSON(a), toJSON(b))
		}
	}
}
