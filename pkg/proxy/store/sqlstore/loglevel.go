package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// logLevelDDL keeps the cluster's log level in one row; until_ms is a Unix
// time in milliseconds, 0 for none.
var logLevelDDL = []string{
	`CREATE TABLE IF NOT EXISTS kiln_cluster_log_level (id INTEGER PRIMARY KEY, level TEXT NOT NULL,
		until_ms BIGINT NOT NULL, serial BIGINT NOT NULL)`,
}

// SetClusterLogLevel implements store.ClusterLogLevelStore.
func (s *SQL) SetClusterLogLevel(ctx context.Context, level string, until time.Time) (store.ClusterLogLevel, error) {
	var ms int64
	if !until.IsZero() {
		ms = until.UnixMilli()
	}
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO kiln_cluster_log_level (id, level, until_ms, serial) VALUES (1, ?, ?, 1)
		ON CONFLICT (id) DO UPDATE SET level = excluded.level, until_ms = excluded.until_ms,
		serial = kiln_cluster_log_level.serial + 1`), level, ms); err != nil {
		return store.ClusterLogLevel{}, fmt.Errorf("record the cluster log level in %s: %w", s.dialect, err)
	}
	return s.ClusterLogLevel(ctx)
}

// ClusterLogLevel implements store.ClusterLogLevelStore.
func (s *SQL) ClusterLogLevel(ctx context.Context) (store.ClusterLogLevel, error) {
	var (
		l  store.ClusterLogLevel
		ms int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT level, until_ms, serial FROM kiln_cluster_log_level WHERE id = 1`).Scan(&l.Level, &ms, &l.Serial)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ClusterLogLevel{}, nil
	}
	if err != nil {
		return store.ClusterLogLevel{}, fmt.Errorf("read the cluster log level from %s: %w", s.dialect, err)
	}
	if ms != 0 {
		l.Until = time.UnixMilli(ms)
	}
	return l, nil
}
