// Package storetest is the conformance suite every store.Store
// implementation must pass: CRUD, Kong's unique/foreign-key/cascade rules,
// pagination, tag filters, snapshots, change notification and replace.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
	"github.com/kiln-dev/kiln/pkg/proxy/store/pgtest"
	"github.com/kiln-dev/kiln/pkg/proxy/store/sqlstore"
)

// Run runs every conformance test; open returns a fresh, empty store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"CRUD", testCRUD},
		{"Relations", testRelations},
		{"Listing", testListing},
		{"SnapshotAndNotify", testSnapshotAndNotify},
		{"ConcurrentWriters", testConcurrentWriters},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// Mk validates in as a kind record with a fresh id and the current time.
func Mk(t *testing.T, kind string, in map[string]any) map[string]any {
	t.Helper()
	if in["id"] == nil {
		in["id"] = entity.NewID()
	}
	in["created_at"] = float64(time.Now().Unix())
	out, errs := entity.Validate(entity.KindByName(kind), in)
	if errs != nil {
		t.Fatalf("invalid %s: %s", kind, errs.Message())
	}
	return out
}

func fk(rec map[string]any) map[string]any { return map[string]any{"id": rec["id"]} }

func testCRUD(t *testing.T, s store.Store) {
	{
		ctx := context.Background()
		svc := Mk(t, "services", map[string]any{"name": "svc", "host": "example.com", "tags": []any{"a"}})
		if err := s.Insert(ctx, "services", svc); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "services", svc["id"].(string))
		if err != nil || got["host"] != "example.com" || got["port"] != 80.0 {
			t.Fatalf("get: %v %v", got, err)
		}
		if byName, err := s.GetByUnique(ctx, "services", "name", "svc"); err != nil || byName["id"] != svc["id"] {
			t.Fatalf("by name: %v %v", byName, err)
		}
		var ue *store.UniqueError
		dup := Mk(t, "services", map[string]any{"name": "svc", "host": "other"})
		if err := s.Insert(ctx, "services", dup); !errors.As(err, &ue) || ue.Error() != `UNIQUE violation detected on '{name="svc"}'` {
			t.Fatalf("duplicate name: %v", err)
		}
		var pke *store.PrimaryKeyError
		if err := s.Insert(ctx, "services", svc); !errors.As(err, &pke) {
			t.Fatalf("duplicate id: %v", err)
		}
		// Renaming frees the old unique value.
		svc["name"] = "renamed"
		if err := s.Update(ctx, "services", svc); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetByUnique(ctx, "services", "name", "svc"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("old name still indexed: %v", err)
		}
		if err := s.Update(ctx, "services", Mk(t, "services", map[string]any{"host": "x"})); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}
		if _, err := s.Get(ctx, "services", entity.NewID()); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("get missing: %v", err)
		}
		if err := s.Delete(ctx, "services", entity.NewID()); err != nil {
			t.Fatalf("delete missing must succeed: %v", err)
		}
		if err := s.Delete(ctx, "services", svc["id"].(string)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "services", svc["id"].(string)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted still there: %v", err)
		}
	}
}

func testRelations(t *testing.T, s store.Store) {
	{
		ctx := context.Background()
		svc := Mk(t, "services", map[string]any{"name": "svc", "host": "example.com"})
		route := Mk(t, "routes", map[string]any{"paths": []any{"/x"}, "service": fk(svc)})
		var fke *store.ForeignKeyError
		if err := s.Insert(ctx, "routes", route); !errors.As(err, &fke) || fke.Ref != "services" {
			t.Fatalf("missing FK: %v", err)
		}
		for _, step := range []struct {
			kind string
			rec  map[string]any
		}{{"services", svc}, {"routes", route}} {
			if err := s.Insert(ctx, step.kind, step.rec); err != nil {
				t.Fatal(err)
			}
		}
		cons := Mk(t, "consumers", map[string]any{"username": "alice"})
		Must(t, s.Insert(ctx, "consumers", cons))
		cred := Mk(t, "keyauth_credentials", map[string]any{"consumer": fk(cons), "key": "secret"})
		Must(t, s.Insert(ctx, "keyauth_credentials", cred))
		acl := Mk(t, "acls", map[string]any{"consumer": fk(cons), "group": "g"})
		Must(t, s.Insert(ctx, "acls", acl))
		var ue *store.UniqueError
		if err := s.Insert(ctx, "acls", Mk(t, "acls", map[string]any{"consumer": fk(cons), "group": "g"})); !errors.As(err, &ue) {
			t.Fatalf("duplicate acl group: %v", err)
		}
		p1 := Mk(t, "plugins", map[string]any{"name": "cors", "route": fk(route)})
		Must(t, s.Insert(ctx, "plugins", p1))
		if err := s.Insert(ctx, "plugins", Mk(t, "plugins", map[string]any{"name": "cors", "route": fk(route)})); !errors.As(err, &ue) {
			t.Fatalf("duplicate plugin scope: %v", err)
		}
		p2 := Mk(t, "plugins", map[string]any{"name": "cors", "service": fk(svc)})
		Must(t, s.Insert(ctx, "plugins", p2))
		global := Mk(t, "plugins", map[string]any{"name": "cors"})
		Must(t, s.Insert(ctx, "plugins", global))
		if err := s.Insert(ctx, "plugins", Mk(t, "plugins", map[string]any{"name": "cors"})); !errors.As(err, &ue) {
			t.Fatalf("duplicate global plugin: %v", err)
		}
		p3 := Mk(t, "plugins", map[string]any{"name": "rate-limiting", "consumer": fk(cons), "config": map[string]any{"minute": 1.0}})
		Must(t, s.Insert(ctx, "plugins", p3))

		// Nested listing.
		page, err := s.List(ctx, "routes", store.Query{ForeignField: "service", ForeignID: svc["id"].(string)})
		if err != nil || len(page.Data) != 1 {
			t.Fatalf("routes of service: %v %v", page, err)
		}
		// A service with routes cannot be deleted; its plugins cascade only when it goes.
		var re *store.ReferencedError
		if err := s.Delete(ctx, "services", svc["id"].(string)); !errors.As(err, &re) || re.By != "routes" {
			t.Fatalf("delete referenced service: %v", err)
		}
		if _, err := s.Get(ctx, "plugins", p2["id"].(string)); err != nil {
			t.Fatalf("failed delete must not cascade: %v", err)
		}
		Must(t, s.Delete(ctx, "routes", route["id"].(string)))
		assertGone(t, s, "plugins", p1)
		Must(t, s.Delete(ctx, "services", svc["id"].(string)))
		assertGone(t, s, "plugins", p2)
		Must(t, s.Delete(ctx, "consumers", cons["id"].(string)))
		assertGone(t, s, "keyauth_credentials", cred)
		assertGone(t, s, "acls", acl)
		assertGone(t, s, "plugins", p3)
		if _, err := s.Get(ctx, "plugins", global["id"].(string)); err != nil {
			t.Fatalf("global plugin removed: %v", err)
		}
		// Upstream → targets cascade; unique target per upstream.
		up := Mk(t, "upstreams", map[string]any{"name": "up"})
		Must(t, s.Insert(ctx, "upstreams", up))
		tg := Mk(t, "targets", map[string]any{"upstream": fk(up), "target": "10.0.0.1"})
		Must(t, s.Insert(ctx, "targets", tg))
		if got, err := s.GetByUnique(ctx, "targets", "upstream,target", up["id"].(string)+":10.0.0.1:8000"); err != nil || got["id"] != tg["id"] {
			t.Fatalf("target by upstream+target: %v %v", got, err)
		}
		if err := s.Insert(ctx, "targets", Mk(t, "targets", map[string]any{"upstream": fk(up), "target": "10.0.0.1:8000"})); !errors.As(err, &ue) {
			t.Fatalf("duplicate target: %v", err)
		}
		Must(t, s.Delete(ctx, "upstreams", up["id"].(string)))
		assertGone(t, s, "targets", tg)
	}
}

// Must fails the test on err.
func Must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func assertGone(t *testing.T, s store.Store, kind string, rec map[string]any) {
	t.Helper()
	if _, err := s.Get(context.Background(), kind, rec["id"].(string)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("%s %s should be deleted: %v", kind, rec["id"], err)
	}
}

func testListing(t *testing.T, s store.Store) {
	{
		ctx := context.Background()
		want := map[string]bool{}
		for i := 0; i < 25; i++ {
			tags := []any{"all"}
			if i%2 == 0 {
				tags = append(tags, "even")
			}
			if i%5 == 0 {
				tags = append(tags, "five")
			}
			rec := Mk(t, "consumers", map[string]any{"username": fmt.Sprintf("u%02d", i), "tags": tags})
			Must(t, s.Insert(ctx, "consumers", rec))
			want[rec["id"].(string)] = true
		}
		got := map[string]bool{}
		q := store.Query{Size: 10}
		pages := 0
		for {
			p, err := s.List(ctx, "consumers", q)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, r := range p.Data {
				id := r["id"].(string)
				if got[id] {
					t.Fatalf("id %s listed twice", id)
				}
				got[id] = true
			}
			if p.Offset == "" {
				break
			}
			q.Offset = p.Offset
		}
		if pages != 3 || len(got) != 25 {
			t.Fatalf("pages=%d got=%d", pages, len(got))
		}
		count := func(q store.Query) int {
			q.Size = 1000
			p, err := s.List(ctx, "consumers", q)
			if err != nil {
				t.Fatal(err)
			}
			return len(p.Data)
		}
		for _, tc := range []struct {
			q    store.Query
			want int
		}{
			{store.Query{Tags: []string{"even"}}, 13},
			{store.Query{Tags: []string{"even", "five"}}, 3},
			{store.Query{Tags: []string{"even", "five"}, TagsOr: true}, 15},
			{store.Query{Tags: []string{"nope"}}, 0},
			{store.Query{Tags: []string{"%"}}, 0},
		} {
			if n := count(tc.q); n != tc.want {
				t.Errorf("tags %v or=%v: %d, want %d", tc.q.Tags, tc.q.TagsOr, n, tc.want)
			}
		}
		if _, err := s.List(ctx, "consumers", store.Query{Offset: "!!"}); !errors.Is(err, store.ErrInvalidOffset) {
			t.Fatalf("bad offset: %v", err)
		}
	}
}

func testSnapshotAndNotify(t *testing.T, s store.Store) {
	{
		ctx := context.Background()
		empty, err := s.Snapshot(ctx)
		if err != nil || empty.Hash != entity.EmptyHash {
			t.Fatalf("empty snapshot: %+v %v", empty, err)
		}
		changed := s.Changed()
		v0, _ := s.Version(ctx)
		svc := Mk(t, "services", map[string]any{"name": "a", "host": "example.com"})
		Must(t, s.Insert(ctx, "services", svc))
		select {
		case <-changed:
		case <-time.After(5 * time.Second):
			t.Fatal("no change notification")
		}
		v1, _ := s.Version(ctx)
		if v1 <= v0 {
			t.Fatalf("version did not increase: %d → %d", v0, v1)
		}
		cfg, err := s.Snapshot(ctx)
		if err != nil || len(cfg.Services) != 1 || cfg.Version != v1 || cfg.Service(svc["id"].(string)) == nil || cfg.Hash == entity.EmptyHash {
			t.Fatalf("snapshot: %+v %v", cfg, err)
		}
		// A failing replace leaves the old configuration in place.
		orphan := Mk(t, "routes", map[string]any{"paths": []any{"/"}, "service": map[string]any{"id": entity.NewID()}})
		if err := s.Replace(ctx, entity.Records{"routes": {orphan}}); err == nil {
			t.Fatal("replace with a dangling foreign key succeeded")
		}
		if cfg, _ := s.Snapshot(ctx); len(cfg.Services) != 1 {
			t.Fatal("failed replace changed the configuration")
		}
		other := Mk(t, "services", map[string]any{"name": "b", "host": "example.org"})
		r := Mk(t, "routes", map[string]any{"paths": []any{"/b"}, "service": fk(other)})
		Must(t, s.Replace(ctx, entity.Records{"routes": {r}, "services": {other}}))
		cfg, err = s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		names := []string{}
		for _, s := range cfg.Services {
			names = append(names, *s.Name)
		}
		sort.Strings(names)
		if fmt.Sprint(names) != "[b]" || len(cfg.Routes) != 1 || cfg.Routes[0].Service.ID != other["id"] {
			t.Fatalf("after replace: %v routes=%d", names, len(cfg.Routes))
		}
	}
}

// testConcurrentWriters races writers on one unique name: exactly one wins,
// the others get a UniqueError (never a database error), and the version
// counts every committed write.
func testConcurrentWriters(t *testing.T, s store.Store) {
	ctx := context.Background()
	v0, err := s.Version(ctx)
	Must(t, err)
	const n = 8
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		rec := Mk(t, "services", map[string]any{"name": "contended", "host": "example.com"})
		go func() { errs <- s.Insert(ctx, "services", rec) }()
	}
	wins := 0
	for i := 0; i < n; i++ {
		err := <-errs
		var ue *store.UniqueError
		switch {
		case err == nil:
			wins++
		case errors.As(err, &ue):
		default:
			t.Errorf("concurrent insert: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d inserts of the same name succeeded", wins)
	}
	v1, err := s.Version(ctx)
	Must(t, err)
	if v1 <= v0 {
		t.Fatalf("version %d → %d", v0, v1)
	}
}

// OpenSQLite returns an empty SQLite store in the test's temp dir.
func OpenSQLite(t *testing.T) *sqlstore.SQL {
	t.Helper()
	s, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// OpenPostgres returns a store on a fresh database of pg (skipping the test
// when pg is nil) and the database's DSN; poll is passed to
// sqlstore.OpenPostgres.
func OpenPostgres(t *testing.T, pg *pgtest.Server, poll time.Duration) (*sqlstore.SQL, string) {
	t.Helper()
	if pg == nil {
		t.Skip("postgresql not installed")
	}
	ctx := context.Background()
	dsn, err := pg.CreateDB(ctx, fmt.Sprintf("t%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sqlstore.OpenPostgres(ctx, dsn, poll)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, dsn
}
