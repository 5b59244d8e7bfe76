package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// dataPlanesDDL creates Kong's clustering_data_planes as a plain table:
// times are Unix milliseconds, labels a JSON object (or NULL), expires_at
// the row's end of life (Kong's ttl column).
var dataPlanesDDL = []string{
	`CREATE TABLE IF NOT EXISTS kiln_clustering_data_planes (id TEXT PRIMARY KEY, ip TEXT NOT NULL, hostname TEXT NOT NULL,
		version TEXT NOT NULL, sync_status TEXT NOT NULL, config_hash TEXT NOT NULL, last_seen BIGINT NOT NULL,
		updated_at BIGINT NOT NULL, labels TEXT, cert_expiry BIGINT NOT NULL, expires_at BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS kiln_clustering_data_planes_expires ON kiln_clustering_data_planes (expires_at)`,
}

// UpsertDataPlane implements store.DataPlaneStore. It runs outside the
// configuration's versioned transactions: a ping is not a change.
func (s *SQL) UpsertDataPlane(ctx context.Context, dp store.DataPlane) error {
	var labels any
	if dp.Labels != nil {
		b, err := json.Marshal(dp.Labels)
		if err != nil {
			return fmt.Errorf("encode data plane %s labels: %w", dp.ID, err)
		}
		labels = string(b)
	}
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO kiln_clustering_data_planes
		(id, ip, hostname, version, sync_status, config_hash, last_seen, updated_at, labels, cert_expiry, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET ip = excluded.ip, hostname = excluded.hostname, version = excluded.version,
		sync_status = excluded.sync_status, config_hash = excluded.config_hash, last_seen = excluded.last_seen,
		updated_at = excluded.updated_at, labels = excluded.labels, cert_expiry = excluded.cert_expiry,
		expires_at = excluded.expires_at`),
		dp.ID, dp.IP, dp.Hostname, dp.Version, dp.SyncStatus, dp.ConfigHash, dp.LastSeen.UnixMilli(),
		dp.UpdatedAt.UnixMilli(), labels, dp.CertExpiry, dp.ExpiresAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("record data plane %s in %s: %w", dp.ID, s.dialect, err)
	}
	return nil
}

// ListDataPlanes implements store.DataPlaneStore.
func (s *SQL) ListDataPlanes(ctx context.Context, now time.Time, after string, limit int) ([]store.DataPlane, error) {
	rows, err := s.listAfter(ctx, `SELECT id, ip, hostname, version, sync_status, config_hash, last_seen, updated_at, labels,
		cert_expiry, expires_at FROM kiln_clustering_data_planes WHERE id > ? AND expires_at > ?`, after, now, limit)
	if err != nil {
		return nil, fmt.Errorf("list data planes in %s: %w", s.dialect, err)
	}
	defer rows.Close()
	var out []store.DataPlane
	for rows.Next() {
		var (
			dp                            store.DataPlane
			lastSeen, updatedAt, expireAt int64
			labels                        *string
		)
		if err := rows.Scan(&dp.ID, &dp.IP, &dp.Hostname, &dp.Version, &dp.SyncStatus, &dp.ConfigHash,
			&lastSeen, &updatedAt, &labels, &dp.CertExpiry, &expireAt); err != nil {
			return nil, fmt.Errorf("read data plane row: %w", err)
		}
		if labels != nil {
			if err := json.Unmarshal([]byte(*labels), &dp.Labels); err != nil {
				return nil, fmt.Errorf("decode data plane %s labels: %w", dp.ID, err)
			}
		}
		dp.LastSeen, dp.UpdatedAt, dp.ExpiresAt = time.UnixMilli(lastSeen), time.UnixMilli(updatedAt), time.UnixMilli(expireAt)
		out = append(out, dp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list data planes in %s: %w", s.dialect, err)
	}
	return out, nil
}

// listAfter runs a keyset page query whose two placeholders are the id to
// start after and now (Unix milliseconds), ordered by id, with up to limit
// rows (every row when limit <= 0).
func (s *SQL) listAfter(ctx context.Context, query, after string, now time.Time, limit int) (*sql.Rows, error) {
	query += ` ORDER BY id`
	args := []any{after, now.UnixMilli()}
	if limit > 0 {
		query += ` LIMIT ?`
		args = append(args, limit)
	}
	return s.db.QueryContext(ctx, s.q(query), args...)
}

// PurgeDataPlanes implements store.DataPlaneStore.
func (s *SQL) PurgeDataPlanes(ctx context.Context, now time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM kiln_clustering_data_planes WHERE expires_at <= ?`), now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("purge expired data planes in %s: %w", s.dialect, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("purge expired data planes in %s: %w", s.dialect, err)
	}
	return int(n), nil
}
