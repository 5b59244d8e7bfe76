// Package sqltest runs the Admin API suite (admintest) on the SQLite and
// PostgreSQL stores. It lives apart from package admin so that admin's fuzz
// target does not link the SQL drivers.
package sqltest

import (
	"os"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/admin/admintest"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
	"github.com/kiln-dev/kiln/pkg/proxy/store/pgtest"
	"github.com/kiln-dev/kiln/pkg/proxy/store/storetest"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(s *pgtest.Server) { pg = s }))
}

func TestAdminOnSQLite(t *testing.T) {
	admintest.Run(t, func(t *testing.T) store.Store { return storetest.OpenSQLite(t) })
}

func TestAdminOnPostgres(t *testing.T) {
	admintest.Run(t, func(t *testing.T) store.Store {
		s, _ := storetest.OpenPostgres(t, pg, 0)
		return s
	})
}
