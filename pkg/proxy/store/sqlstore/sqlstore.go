// Package sqlstore implements store.Store on SQL databases: SQLite through
// modernc.org/sqlite (pure Go, no cgo) for a single-node gateway, and
// PostgreSQL through pgx for production. Both share one schema: a table of
// JSON entity bodies plus index tables for unique keys and foreign keys, and
// the hybrid-mode data plane rows (store.DataPlaneStore), and the oauth2
// plugin's tokens and authorization codes (store.OAuth2Store).
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	// Pure-Go drivers: SQLite without cgo, PostgreSQL through pgx's database/sql adapter.
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// SQL is the database-backed store (SQLite or PostgreSQL). Every write runs
// in one transaction that first bumps the version row, which serialises
// writers across gateway nodes sharing a PostgreSQL database.
type SQL struct {
	db      *sql.DB
	dialect string // "sqlite" or "postgres"
	*store.Notifier

	mu   sync.Mutex
	cfg  *entity.Config
	seen uint64
	// Background watchers (PostgreSQL poll and LISTEN) run until Close.
	bgCtx context.Context
	stop  context.CancelFunc
	bg    sync.WaitGroup
}

// OpenSQLite opens (creating if needed) the SQLite database at path.
func OpenSQLite(ctx context.Context, path string) (*SQL, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(off)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // SQLite allows one writer; one connection avoids SQLITE_BUSY.
	return openSQL(ctx, db, "sqlite", 0)
}

// OpenPostgres connects to PostgreSQL with a pgx connection string (URL or
// "host=… user=… dbname=…"). pollEvery > 0 makes the store notice changes
// written by other gateway nodes: every write sends a NOTIFY that the other
// nodes LISTEN for, and the version row is also polled every pollEvery in
// case a notification is lost (e.g. while reconnecting).
func OpenPostgres(ctx context.Context, dsn string, pollEvery time.Duration) (*SQL, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres connection: %w", err)
	}
	db.SetMaxOpenConns(16)
	s, err := openSQL(ctx, db, "postgres", pollEvery)
	if err != nil {
		return nil, err
	}
	if pollEvery > 0 {
		s.bg.Add(1)
		go s.listen(s.bgCtx, dsn)
	}
	return s, nil
}

// notifyChannel is the PostgreSQL NOTIFY channel carrying new versions.
const notifyChannel = "kiln_config"

// listen follows other nodes' writes through LISTEN, reconnecting on error.
func (s *SQL) listen(ctx context.Context, dsn string) {
	defer s.bg.Done()
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, dsn)
		if ctx.Err() != nil {
			return
		}
		slog.Warn("store: postgres LISTEN failed; polling until it reconnects", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (s *SQL) listenOnce(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		v, err := strconv.ParseUint(n.Payload, 10, 64)
		if err != nil {
			continue
		}
		s.observe(v)
	}
}

// observe records a version seen in the database and notifies on change.
func (s *SQL) observe(v uint64) {
	s.mu.Lock()
	changed := v != s.seen
	s.seen = v
	s.mu.Unlock()
	if changed {
		s.Notify()
	}
}

var schemaDDL = []string{
	`CREATE TABLE IF NOT EXISTS kiln_entities (kind TEXT NOT NULL, id TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, tags TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id))`,
	`CREATE TABLE IF NOT EXISTS kiln_uniques (kind TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (kind, name, value))`,
	`CREATE INDEX IF NOT EXISTS kiln_uniques_id ON kiln_uniques (kind, id)`,
	`CREATE TABLE IF NOT EXISTS kiln_refs (kind TEXT NOT NULL, id TEXT NOT NULL, field TEXT NOT NULL, ref_kind TEXT NOT NULL, ref_id TEXT NOT NULL, PRIMARY KEY (kind, id, field))`,
	`CREATE INDEX IF NOT EXISTS kiln_refs_ref ON kiln_refs (ref_kind, ref_id)`,
	`CREATE TABLE IF NOT EXISTS kiln_meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL)`,
	`INSERT INTO kiln_meta (k, v) VALUES ('version', 0) ON CONFLICT (k) DO NOTHING`,
}

func openSQL(ctx context.Context, db *sql.DB, dialect string, pollEvery time.Duration) (*SQL, error) {
	s := &SQL{db: db, dialect: dialect, Notifier: store.NewNotifier()}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connect to %s: %w", dialect, err)
	}
	for _, stmt := range slices.Concat(schemaDDL, dataPlanesDDL, oauth2DDL, logLevelDDL) {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("create %s schema: %w", dialect, err)
		}
	}
	v, err := s.Version(ctx)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.seen = v
	s.bgCtx, s.stop = context.WithCancel(context.Background())
	if pollEvery > 0 {
		s.bg.Add(1)
		go s.poll(s.bgCtx, pollEvery)
	}
	return s, nil
}

// poll notices versions committed by other nodes.
func (s *SQL) poll(ctx context.Context, every time.Duration) {
	defer s.bg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := s.Version(ctx)
		if err != nil {
			if ctx.Err() == nil {
				slog.Warn("store: poll version", "database", s.dialect, "err", err)
			}
			continue
		}
		s.observe(v)
	}
}

// q rewrites ? placeholders for PostgreSQL.
func (s *SQL) q(query string) string {
	if s.dialect != "postgres" {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

type sqlTx struct {
	s  *SQL
	tx *sql.Tx
}

func (t sqlTx) Lookup(ctx context.Context, kind, id string) (map[string]any, error) {
	var body string
	err := t.tx.QueryRowContext(ctx, t.s.q(`SELECT body FROM kiln_entities WHERE kind = ? AND id = ?`), kind, id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", kind, id, err)
	}
	return decodeBody(body)
}

func decodeBody(body string) (map[string]any, error) {
	var rec map[string]any
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		return nil, fmt.Errorf("decode stored record: %w", err)
	}
	return rec, nil
}

func (t sqlTx) UniqueOwner(ctx context.Context, kind, name, value string) (string, error) {
	var id string
	err := t.tx.QueryRowContext(ctx, t.s.q(`SELECT id FROM kiln_uniques WHERE kind = ? AND name = ? AND value = ?`), kind, name, value).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id, err
}

func (t sqlTx) Put(ctx context.Context, kind string, rec map[string]any, ri store.RowIndex, insert bool) error {
	body, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode %s: %w", kind, err)
	}
	if !insert {
		if err := t.Remove(ctx, kind, ri.ID); err != nil {
			return err
		}
	}
	tags := ","
	if len(ri.Tags) > 0 {
		tags = "," + strings.Join(ri.Tags, ",") + ","
	}
	if _, err := t.tx.ExecContext(ctx, t.s.q(`INSERT INTO kiln_entities (kind, id, created_at, tags, body) VALUES (?, ?, ?, ?, ?)`),
		kind, ri.ID, ri.CreatedAt, tags, string(body)); err != nil {
		return fmt.Errorf("insert %s: %w", kind, err)
	}
	for name, v := range ri.Uniques {
		if _, err := t.tx.ExecContext(ctx, t.s.q(`INSERT INTO kiln_uniques (kind, name, value, id) VALUES (?, ?, ?, ?)`), kind, name, v, ri.ID); err != nil {
			return fmt.Errorf("index %s.%s: %w", kind, name, err)
		}
	}
	for field, r := range ri.Refs {
		if _, err := t.tx.ExecContext(ctx, t.s.q(`INSERT INTO kiln_refs (kind, id, field, ref_kind, ref_id) VALUES (?, ?, ?, ?, ?)`), kind, ri.ID, field, r.Kind, r.ID); err != nil {
			return fmt.Errorf("index %s.%s: %w", kind, field, err)
		}
	}
	return nil
}

func (t sqlTx) Remove(ctx context.Context, kind, id string) error {
	for _, table := range []string{"kiln_entities", "kiln_uniques", "kiln_refs"} {
		if _, err := t.tx.ExecContext(ctx, t.s.q(`DELETE FROM `+table+` WHERE kind = ? AND id = ?`), kind, id); err != nil {
			return fmt.Errorf("delete %s %s: %w", kind, id, err)
		}
	}
	return nil
}

func (t sqlTx) Referrers(ctx context.Context, refKind, refID string) ([]store.Ref, error) {
	rows, err := t.tx.QueryContext(ctx, t.s.q(`SELECT kind, id, field FROM kiln_refs WHERE ref_kind = ? AND ref_id = ? ORDER BY kind, id`), refKind, refID)
	if err != nil {
		return nil, fmt.Errorf("find references to %s %s: %w", refKind, refID, err)
	}
	defer rows.Close()
	var out []store.Ref
	for rows.Next() {
		var r store.Ref
		if err := rows.Scan(&r.Kind, &r.ID, &r.Field); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func (t sqlTx) Scan(ctx context.Context, kind string, q store.Query, after string, limit int) ([]map[string]any, error) {
	query := `SELECT e.body FROM kiln_entities e`
	var args []any
	if q.ForeignField != "" {
		query += ` JOIN kiln_refs r ON r.Kind = e.kind AND r.ID = e.id AND r.Field = ? AND r.ref_id = ?`
		args = append(args, q.ForeignField, q.ForeignID)
	}
	query += ` WHERE e.kind = ? AND e.id > ?`
	args = append(args, kind, after)
	if len(q.Tags) > 0 {
		conds := make([]string, len(q.Tags))
		for i, tag := range q.Tags {
			conds[i] = `e.tags LIKE ? ESCAPE '\'`
			args = append(args, "%,"+likeEscape(tag)+",%")
		}
		op := " AND "
		if q.TagsOr {
			op = " OR "
		}
		query += ` AND (` + strings.Join(conds, op) + `)`
	}
	query += ` ORDER BY e.id LIMIT ?`
	args = append(args, limit)
	rows, err := t.tx.QueryContext(ctx, t.s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		rec, err := decodeBody(body)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

func (t sqlTx) Truncate(ctx context.Context) error {
	for _, table := range []string{"kiln_entities", "kiln_uniques", "kiln_refs"} {
		if _, err := t.tx.ExecContext(ctx, `DELETE FROM `+table); err != nil {
			return fmt.Errorf("empty %s: %w", table, err)
		}
	}
	return nil
}

// read runs fn in a read-only transaction.
func (s *SQL) read(ctx context.Context, fn func(sqlTx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.dialect == "postgres"})
	if err != nil {
		return fmt.Errorf("begin %s transaction: %w", s.dialect, err)
	}
	defer func() { _ = tx.Rollback() }()
	return fn(sqlTx{s: s, tx: tx})
}

// writeTx runs fn after bumping the version, and commits on success.
func (s *SQL) writeTx(ctx context.Context, fn func(sqlTx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin %s transaction: %w", s.dialect, err)
	}
	defer func() { _ = tx.Rollback() }()
	var v uint64
	if err := tx.QueryRowContext(ctx, `UPDATE kiln_meta SET v = v + 1 WHERE k = 'version' RETURNING v`).Scan(&v); err != nil {
		return fmt.Errorf("bump config version: %w", err)
	}
	if err := fn(sqlTx{s: s, tx: tx}); err != nil {
		return err
	}
	if s.dialect == "postgres" {
		// Delivered to listening nodes when the transaction commits.
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, strconv.FormatUint(v, 10)); err != nil {
			return fmt.Errorf("notify other nodes: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit %s transaction: %w", s.dialect, err)
	}
	s.mu.Lock()
	s.seen = v
	s.mu.Unlock()
	s.Notify()
	return nil
}

// Get implements Store.
func (s *SQL) Get(ctx context.Context, kind, id string) (map[string]any, error) {
	var rec map[string]any
	err := s.read(ctx, func(t sqlTx) error {
		var err error
		rec, err = t.Lookup(ctx, kind, id)
		return err
	})
	if err == nil && rec == nil {
		err = store.ErrNotFound
	}
	return rec, err
}

// GetByUnique implements Store.
func (s *SQL) GetByUnique(ctx context.Context, kind, fields, value string) (map[string]any, error) {
	var rec map[string]any
	err := s.read(ctx, func(t sqlTx) error {
		id, err := t.UniqueOwner(ctx, kind, fields, value)
		if err != nil || id == "" {
			return err
		}
		rec, err = t.Lookup(ctx, kind, id)
		return err
	})
	if err == nil && rec == nil {
		err = store.ErrNotFound
	}
	return rec, err
}

// List implements Store.
func (s *SQL) List(ctx context.Context, kind string, q store.Query) (store.Page, error) {
	var p store.Page
	err := s.read(ctx, func(t sqlTx) error {
		var err error
		p, err = store.ExecList(ctx, t, kind, q)
		return err
	})
	return p, err
}

// Insert implements Store.
func (s *SQL) Insert(ctx context.Context, kind string, rec map[string]any) error {
	return s.writeTx(ctx, func(t sqlTx) error { return store.ExecWrite(ctx, t, kind, rec, true) })
}

// Update implements Store.
func (s *SQL) Update(ctx context.Context, kind string, rec map[string]any) error {
	return s.writeTx(ctx, func(t sqlTx) error { return store.ExecWrite(ctx, t, kind, rec, false) })
}

// Delete implements Store.
func (s *SQL) Delete(ctx context.Context, kind, id string) error {
	if _, err := s.Get(ctx, kind, id); errors.Is(err, store.ErrNotFound) {
		_, kerr := kindCheck(kind)
		return kerr
	}
	return s.writeTx(ctx, func(t sqlTx) error { return store.ExecDelete(ctx, t, kind, id) })
}

// Replace implements Store.
func (s *SQL) Replace(ctx context.Context, recs entity.Records) error {
	return s.writeTx(ctx, func(t sqlTx) error { return store.ExecReplace(ctx, t, recs) })
}

// Snapshot implements Store.
func (s *SQL) Snapshot(ctx context.Context) (*entity.Config, error) {
	var (
		cfg *entity.Config
		v   uint64
	)
	err := s.read(ctx, func(t sqlTx) error {
		if err := t.tx.QueryRowContext(ctx, `SELECT v FROM kiln_meta WHERE k = 'version'`).Scan(&v); err != nil {
			return fmt.Errorf("read config version: %w", err)
		}
		s.mu.Lock()
		cached := s.cfg
		s.mu.Unlock()
		if cached != nil && cached.Version == v {
			cfg = cached
			return nil
		}
		rows, err := t.tx.QueryContext(ctx, `SELECT kind, body FROM kiln_entities`)
		if err != nil {
			return fmt.Errorf("read configuration: %w", err)
		}
		defer rows.Close()
		recs := entity.Records{}
		for rows.Next() {
			var kind, body string
			if err := rows.Scan(&kind, &body); err != nil {
				return err
			}
			rec, err := decodeBody(body)
			if err != nil {
				return err
			}
			recs[kind] = append(recs[kind], rec)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		cfg, err = entity.NewConfig(v, recs)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
	return cfg, nil
}

// Version implements Store.
func (s *SQL) Version(ctx context.Context) (uint64, error) {
	var v uint64
	if err := s.db.QueryRowContext(ctx, `SELECT v FROM kiln_meta WHERE k = 'version'`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read config version from %s: %w", s.dialect, err)
	}
	return v, nil
}

// Ping implements Store.
func (s *SQL) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Database implements Store.
func (s *SQL) Database() string { return s.dialect }

// Close implements Store.
func (s *SQL) Close() error {
	s.stop()
	s.bg.Wait()
	return s.db.Close()
}

func kindCheck(kind string) (*entity.Kind, error) {
	k := entity.KindByName(kind)
	if k == nil {
		return nil, fmt.Errorf("unknown entity kind %q", kind)
	}
	return k, nil
}
