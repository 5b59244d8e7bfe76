// Package sqltest runs the Admin API suite (admintest) on the SQLite and
// PostgreSQL stores. It lives apart from package admin so that admin's fuzz
// target does not link the SQL drivers.
package sqltest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/admin/admintest"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
	"github.com/kiln-dev/kiln/pkg/proxy/store/pgtest"
	"github.com/kiln-dev/kiln/pkg/proxy/store/sqlstore"
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

func TestAdminOnSQLite(t *testing.T) {
	admintest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "kiln.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestAdminOnPostgres(t *testing.T) {
	if pg == nil {
		t.Skip("postgresql not installed")
	}
	admintest.Run(t, func(t *testing.T) store.Store {
		ctx := context.Background()
		dsn, err := pg.CreateDB(ctx, fmt.Sprintf("admin%d", time.Now().UnixNano()))
		if err != nil {
			t.Fatal(err)
		}
		s, err := sqlstore.OpenPostgres(ctx, dsn, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
