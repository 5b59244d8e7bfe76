package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/store/pgtest"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var err error
	pg, err = pgtest.Start(ctx)
	cancel()
	if err != nil {
		if pgtest.Required() {
			fmt.Fprintln(os.Stderr, "postgres required (KILN_REQUIRE_PG=1):", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "postgres tests skipped:", err)
		pg = nil
	}
	code := m.Run()
	if pg != nil {
		pg.Stop()
	}
	os.Exit(code)
}

// forEachStore runs the conformance test against every implementation.
func forEachStore(t *testing.T, fn func(t *testing.T, s Store)) {
	t.Run("memory", func(t *testing.T) { fn(t, NewMemory()) })
	t.Run("sqlite", func(t *testing.T) {
		s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "kiln.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fn(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		if pg == nil {
			t.Skip("postgresql not installed")
		}
		ctx := context.Background()
		dsn, err := pg.CreateDB(ctx, fmt.Sprintf("t%d", time.Now().UnixNano()))
		if err != nil {
			t.Fatal(err)
		}
		s, err := OpenPostgres(ctx, dsn, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fn(t, s)
	})
}

var clock float64

func mk(t *testing.T, kind string, in map[string]any) map[string]any {
	t.Helper()
	if in["id"] == nil {
		in["id"] = entity.NewID()
	}
	clock++
	in["created_at"] = clock
	out, errs := entity.Validate(entity.KindByName(kind), in)
	if errs != nil {
		t.Fatalf("invalid %s: %s", kind, errs.Message())
	}
	return out
}

func fk(rec map[string]any) map[string]any { return map[string]any{"id": rec["id"]} }

func TestConformanceCRUD(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		svc := mk(t, "services", map[string]any{"name": "svc", "host": "example.com", "tags": []any{"a"}})
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
		var ue *UniqueError
		dup := mk(t, "services", map[string]any{"name": "svc", "host": "other"})
		if err := s.Insert(ctx, "services", dup); !errors.As(err, &ue) || ue.Error() != `UNIQUE violation detected on '{name="svc"}'` {
			t.Fatalf("duplicate name: %v", err)
		}
		var pke *PrimaryKeyError
		if err := s.Insert(ctx, "services", svc); !errors.As(err, &pke) {
			t.Fatalf("duplicate id: %v", err)
		}
		// Renaming frees the old unique value.
		svc["name"] = "renamed"
		if err := s.Update(ctx, "services", svc); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetByUnique(ctx, "services", "name", "svc"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old name still indexed: %v", err)
		}
		if err := s.Update(ctx, "services", mk(t, "services", map[string]any{"host": "x"})); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}
		if _, err := s.Get(ctx, "services", entity.NewID()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get missing: %v", err)
		}
		if err := s.Delete(ctx, "services", entity.NewID()); err != nil {
			t.Fatalf("delete missing must succeed: %v", err)
		}
		if err := s.Delete(ctx, "services", svc["id"].(string)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "services", svc["id"].(string)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted still there: %v", err)
		}
	})
}

func TestConformanceRelations(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		svc := mk(t, "services", map[string]any{"name": "svc", "host": "example.com"})
		route := mk(t, "routes", map[string]any{"paths": []any{"/x"}, "service": fk(svc)})
		var fke *ForeignKeyError
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
		cons := mk(t, "consumers", map[string]any{"username": "alice"})
		must(t, s.Insert(ctx, "consumers", cons))
		cred := mk(t, "keyauth_credentials", map[string]any{"consumer": fk(cons), "key": "secret"})
		must(t, s.Insert(ctx, "keyauth_credentials", cred))
		acl := mk(t, "acls", map[string]any{"consumer": fk(cons), "group": "g"})
		must(t, s.Insert(ctx, "acls", acl))
		var ue *UniqueError
		if err := s.Insert(ctx, "acls", mk(t, "acls", map[string]any{"consumer": fk(cons), "group": "g"})); !errors.As(err, &ue) {
			t.Fatalf("duplicate acl group: %v", err)
		}
		p1 := mk(t, "plugins", map[string]any{"name": "cors", "route": fk(route)})
		must(t, s.Insert(ctx, "plugins", p1))
		if err := s.Insert(ctx, "plugins", mk(t, "plugins", map[string]any{"name": "cors", "route": fk(route)})); !errors.As(err, &ue) {
			t.Fatalf("duplicate plugin scope: %v", err)
		}
		p2 := mk(t, "plugins", map[string]any{"name": "cors", "service": fk(svc)})
		must(t, s.Insert(ctx, "plugins", p2))
		global := mk(t, "plugins", map[string]any{"name": "cors"})
		must(t, s.Insert(ctx, "plugins", global))
		if err := s.Insert(ctx, "plugins", mk(t, "plugins", map[string]any{"name": "cors"})); !errors.As(err, &ue) {
			t.Fatalf("duplicate global plugin: %v", err)
		}
		p3 := mk(t, "plugins", map[string]any{"name": "rate-limiting", "consumer": fk(cons), "config": map[string]any{"minute": 1.0}})
		must(t, s.Insert(ctx, "plugins", p3))

		// Nested listing.
		page, err := s.List(ctx, "routes", Query{ForeignField: "service", ForeignID: svc["id"].(string)})
		if err != nil || len(page.Data) != 1 {
			t.Fatalf("routes of service: %v %v", page, err)
		}
		// A service with routes cannot be deleted; its plugins cascade only when it goes.
		var re *ReferencedError
		if err := s.Delete(ctx, "services", svc["id"].(string)); !errors.As(err, &re) || re.By != "routes" {
			t.Fatalf("delete referenced service: %v", err)
		}
		if _, err := s.Get(ctx, "plugins", p2["id"].(string)); err != nil {
			t.Fatalf("failed delete must not cascade: %v", err)
		}
		must(t, s.Delete(ctx, "routes", route["id"].(string)))
		assertGone(t, s, "plugins", p1)
		must(t, s.Delete(ctx, "services", svc["id"].(string)))
		assertGone(t, s, "plugins", p2)
		must(t, s.Delete(ctx, "consumers", cons["id"].(string)))
		assertGone(t, s, "keyauth_credentials", cred)
		assertGone(t, s, "acls", acl)
		assertGone(t, s, "plugins", p3)
		if _, err := s.Get(ctx, "plugins", global["id"].(string)); err != nil {
			t.Fatalf("global plugin removed: %v", err)
		}
		// Upstream → targets cascade; unique target per upstream.
		up := mk(t, "upstreams", map[string]any{"name": "up"})
		must(t, s.Insert(ctx, "upstreams", up))
		tg := mk(t, "targets", map[string]any{"upstream": fk(up), "target": "10.0.0.1"})
		must(t, s.Insert(ctx, "targets", tg))
		if got, err := s.GetByUnique(ctx, "targets", "upstream,target", up["id"].(string)+":10.0.0.1:8000"); err != nil || got["id"] != tg["id"] {
			t.Fatalf("target by upstream+target: %v %v", got, err)
		}
		if err := s.Insert(ctx, "targets", mk(t, "targets", map[string]any{"upstream": fk(up), "target": "10.0.0.1:8000"})); !errors.As(err, &ue) {
			t.Fatalf("duplicate target: %v", err)
		}
		must(t, s.Delete(ctx, "upstreams", up["id"].(string)))
		assertGone(t, s, "targets", tg)
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func assertGone(t *testing.T, s Store, kind string, rec map[string]any) {
	t.Helper()
	if _, err := s.Get(context.Background(), kind, rec["id"].(string)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("%s %s should be deleted: %v", kind, rec["id"], err)
	}
}

func TestConformanceListing(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
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
			rec := mk(t, "consumers", map[string]any{"username": fmt.Sprintf("u%02d", i), "tags": tags})
			must(t, s.Insert(ctx, "consumers", rec))
			want[rec["id"].(string)] = true
		}
		got := map[string]bool{}
		q := Query{Size: 10}
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
		count := func(q Query) int {
			q.Size = 1000
			p, err := s.List(ctx, "consumers", q)
			if err != nil {
				t.Fatal(err)
			}
			return len(p.Data)
		}
		for _, tc := range []struct {
			q    Query
			want int
		}{
			{Query{Tags: []string{"even"}}, 13},
			{Query{Tags: []string{"even", "five"}}, 3},
			{Query{Tags: []string{"even", "five"}, TagsOr: true}, 15},
			{Query{Tags: []string{"nope"}}, 0},
			{Query{Tags: []string{"%"}}, 0},
		} {
			if n := count(tc.q); n != tc.want {
				t.Errorf("tags %v or=%v: %d, want %d", tc.q.Tags, tc.q.TagsOr, n, tc.want)
			}
		}
		if _, err := s.List(ctx, "consumers", Query{Offset: "!!"}); !errors.Is(err, ErrInvalidOffset) {
			t.Fatalf("bad offset: %v", err)
		}
	})
}

func TestConformanceSnapshotAndNotify(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		empty, err := s.Snapshot(ctx)
		if err != nil || empty.Hash != entity.EmptyHash {
			t.Fatalf("empty snapshot: %+v %v", empty, err)
		}
		changed := s.Changed()
		v0, _ := s.Version(ctx)
		svc := mk(t, "services", map[string]any{"name": "a", "host": "example.com"})
		must(t, s.Insert(ctx, "services", svc))
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
		orphan := mk(t, "routes", map[string]any{"paths": []any{"/"}, "service": map[string]any{"id": entity.NewID()}})
		if err := s.Replace(ctx, entity.Records{"routes": {orphan}}); err == nil {
			t.Fatal("replace with a dangling foreign key succeeded")
		}
		if cfg, _ := s.Snapshot(ctx); len(cfg.Services) != 1 {
			t.Fatal("failed replace changed the configuration")
		}
		other := mk(t, "services", map[string]any{"name": "b", "host": "example.org"})
		r := mk(t, "routes", map[string]any{"paths": []any{"/b"}, "service": fk(other)})
		must(t, s.Replace(ctx, entity.Records{"routes": {r}, "services": {other}}))
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
	})
}

func TestPostgresPollSeesOtherNode(t *testing.T) {
	if pg == nil {
		t.Skip("postgresql not installed")
	}
	ctx := context.Background()
	dsn, err := pg.CreateDB(ctx, fmt.Sprintf("poll%d", time.Now().UnixNano()))
	must(t, err)
	a, err := OpenPostgres(ctx, dsn, 50*time.Millisecond)
	must(t, err)
	defer a.Close()
	b, err := OpenPostgres(ctx, dsn, 0)
	must(t, err)
	defer b.Close()
	ch := a.Changed()
	must(t, b.Insert(ctx, "consumers", mk(t, "consumers", map[string]any{"username": "x"})))
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("node A did not notice node B's write")
	}
	cfg, err := a.Snapshot(ctx)
	if err != nil || len(cfg.Consumers) != 1 {
		t.Fatalf("snapshot on A: %v %v", cfg, err)
	}
}
