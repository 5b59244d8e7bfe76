package storetest

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// RunDataPlanes is the conformance suite of store.DataPlaneStore: upsert,
// ordered pagination, expiry at ExpiresAt and purge. Time is passed in, so
// nothing sleeps; open returns a fresh, empty store.
func RunDataPlanes(t *testing.T, open func(t *testing.T) store.DataPlaneStore) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, store.DataPlaneStore)
	}{
		{"Upsert", testDataPlaneUpsert},
		{"Pagination", testDataPlanePagination},
		{"Expiry", testDataPlaneExpiry},
		{"Purge", testDataPlanePurge},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// base is a whole millisecond, so times round-trip exactly.
var base = time.UnixMilli(1_800_000_000_123)

func dpRow(id string, ttl time.Duration) store.DataPlane {
	return store.DataPlane{ID: id, IP: "10.0.0.1", Hostname: "dp-" + id, Version: "3.10.0", SyncStatus: "normal",
		ConfigHash: "0123456789abcdef0123456789abcdef", LastSeen: base, UpdatedAt: base,
		Labels: map[string]string{"region": "eu"}, CertExpiry: 1_900_000_000, ExpiresAt: base.Add(ttl)}
}

func listIDs(t *testing.T, s store.DataPlaneStore, now time.Time, after string, limit int) []string {
	t.Helper()
	rows, err := s.ListDataPlanes(context.Background(), now, after, limit)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	return ids
}

func sameDataPlane(a, b store.DataPlane) bool {
	return a.ID == b.ID && a.IP == b.IP && a.Hostname == b.Hostname && a.Version == b.Version &&
		a.SyncStatus == b.SyncStatus && a.ConfigHash == b.ConfigHash && a.LastSeen.Equal(b.LastSeen) &&
		a.UpdatedAt.Equal(b.UpdatedAt) && reflect.DeepEqual(a.Labels, b.Labels) && a.CertExpiry == b.CertExpiry &&
		a.ExpiresAt.Equal(b.ExpiresAt)
}

func testDataPlaneUpsert(t *testing.T, s store.DataPlaneStore) {
	ctx := context.Background()
	if rows, err := s.ListDataPlanes(ctx, base, "", 0); err != nil || len(rows) != 0 {
		t.Fatalf("empty store lists %v, %v", rows, err)
	}
	want := dpRow("a", time.Hour)
	// A ping is no configuration change: no new version, no notification.
	cfg, isStore := s.(store.Store)
	var v0 uint64
	var changed <-chan struct{}
	if isStore {
		var err error
		v0, err = cfg.Version(ctx)
		Must(t, err)
		changed = cfg.Changed()
	}
	Must(t, s.UpsertDataPlane(ctx, want))
	if isStore {
		v1, err := cfg.Version(ctx)
		Must(t, err)
		select {
		case <-changed:
			t.Error("writing a data plane row notified a configuration change")
		default:
		}
		if v1 != v0 {
			t.Errorf("writing a data plane row moved the configuration version %d → %d", v0, v1)
		}
	}
	rows, err := s.ListDataPlanes(ctx, base, "", 0)
	if err != nil || len(rows) != 1 || !sameDataPlane(rows[0], want) {
		t.Fatalf("after insert: %+v, %v; want %+v", rows, err, want)
	}
	// Listed rows are copies: changing one changes nothing stored.
	rows[0].Labels["region"] = "changed"

	// A later ping replaces every field; no labels stay nil.
	next := want
	next.IP, next.Hostname, next.Version, next.SyncStatus = "10.0.0.2", "moved", "3.9.1", "plugin_set_incompatible"
	next.ConfigHash = "fedcba9876543210fedcba9876543210"
	next.LastSeen, next.UpdatedAt, next.ExpiresAt = base.Add(30*time.Second), base.Add(31*time.Second), base.Add(2*time.Hour)
	next.Labels, next.CertExpiry = nil, 0
	Must(t, s.UpsertDataPlane(ctx, next))
	rows, err = s.ListDataPlanes(ctx, base, "", 0)
	if err != nil || len(rows) != 1 || !sameDataPlane(rows[0], next) {
		t.Fatalf("after upsert: %+v, %v; want %+v", rows, err, next)
	}
	if rows[0].Labels != nil {
		t.Errorf("labels %#v, want nil", rows[0].Labels)
	}
}

func testDataPlanePagination(t *testing.T, s store.DataPlaneStore) {
	ctx := context.Background()
	// Inserted out of order; ids are UUID-shaped, as data plane node ids are.
	var want []string
	for _, i := range []int{3, 0, 4, 1, 2} {
		Must(t, s.UpsertDataPlane(ctx, dpRow(fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), time.Hour)))
	}
	for i := 0; i < 5; i++ {
		want = append(want, fmt.Sprintf("%08d-0000-4000-8000-000000000000", i))
	}
	if got := listIDs(t, s, base, "", 0); !reflect.DeepEqual(got, want) {
		t.Fatalf("all rows %v, want %v", got, want)
	}
	var paged []string
	after := ""
	for page := 0; ; page++ {
		ids := listIDs(t, s, base, after, 2)
		if len(ids) == 0 {
			break
		}
		if len(ids) > 2 || page > 3 {
			t.Fatalf("page %d: %v", page, ids)
		}
		paged = append(paged, ids...)
		after = ids[len(ids)-1]
	}
	if !reflect.DeepEqual(paged, want) {
		t.Fatalf("pages %v, want %v", paged, want)
	}
}

func testDataPlaneExpiry(t *testing.T, s store.DataPlaneStore) {
	ctx := context.Background()
	Must(t, s.UpsertDataPlane(ctx, dpRow("short", 10*time.Second)))
	Must(t, s.UpsertDataPlane(ctx, dpRow("long", time.Hour)))
	if got := listIDs(t, s, base.Add(10*time.Second-time.Millisecond), "", 0); !reflect.DeepEqual(got, []string{"long", "short"}) {
		t.Fatalf("just before expiry: %v", got)
	}
	if got := listIDs(t, s, base.Add(10*time.Second), "", 0); !reflect.DeepEqual(got, []string{"long"}) {
		t.Fatalf("at expiry: %v, want only the unexpired row", got)
	}
	// An expired row counts for nothing in pagination either.
	if got := listIDs(t, s, base.Add(10*time.Second), "", 1); !reflect.DeepEqual(got, []string{"long"}) {
		t.Fatalf("first page at expiry: %v", got)
	}
	// A ping renews the row's life.
	renewed := dpRow("short", 10*time.Second)
	renewed.UpdatedAt, renewed.ExpiresAt = base.Add(9*time.Second), base.Add(19*time.Second)
	Must(t, s.UpsertDataPlane(ctx, renewed))
	if got := listIDs(t, s, base.Add(15*time.Second), "", 0); !reflect.DeepEqual(got, []string{"long", "short"}) {
		t.Fatalf("after renewal: %v", got)
	}
}

func testDataPlanePurge(t *testing.T, s store.DataPlaneStore) {
	ctx := context.Background()
	Must(t, s.UpsertDataPlane(ctx, dpRow("a", 10*time.Second)))
	Must(t, s.UpsertDataPlane(ctx, dpRow("b", 20*time.Second)))
	Must(t, s.UpsertDataPlane(ctx, dpRow("c", time.Hour)))
	if n, err := s.PurgeDataPlanes(ctx, base.Add(5*time.Second)); err != nil || n != 0 {
		t.Fatalf("purge before any expiry: %d, %v", n, err)
	}
	n, err := s.PurgeDataPlanes(ctx, base.Add(20*time.Second))
	if err != nil || n != 2 {
		t.Fatalf("purge: %d, %v; want 2 rows deleted", n, err)
	}
	// Deleted, not just hidden: listing at an earlier time misses them too.
	if got := listIDs(t, s, base, "", 0); !reflect.DeepEqual(got, []string{"c"}) {
		t.Fatalf("after purge: %v", got)
	}
	if n, err := s.PurgeDataPlanes(ctx, base.Add(20*time.Second)); err != nil || n != 0 {
		t.Fatalf("second purge: %d, %v", n, err)
	}
}
