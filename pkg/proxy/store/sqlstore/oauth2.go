package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// oauth2DDL creates Kong's oauth2_tokens and oauth2_authorization_codes as
// plain tables beside the entity tables: times are Unix milliseconds,
// expires_at 0 means the row never expires, NULL refresh tokens are not
// unique-checked.
var oauth2DDL = []string{
	`CREATE TABLE IF NOT EXISTS kiln_oauth2_tokens (id TEXT PRIMARY KEY, credential_id TEXT NOT NULL,
		service_id TEXT NOT NULL, access_token TEXT NOT NULL UNIQUE, refresh_token TEXT UNIQUE,
		authenticated_userid TEXT NOT NULL, scope TEXT NOT NULL, expires_in BIGINT NOT NULL,
		created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS kiln_oauth2_tokens_expires ON kiln_oauth2_tokens (expires_at)`,
	`CREATE TABLE IF NOT EXISTS kiln_oauth2_codes (id TEXT PRIMARY KEY, code TEXT NOT NULL UNIQUE,
		credential_id TEXT NOT NULL, service_id TEXT NOT NULL, authenticated_userid TEXT NOT NULL,
		scope TEXT NOT NULL, challenge TEXT NOT NULL, challenge_method TEXT NOT NULL,
		created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS kiln_oauth2_codes_expires ON kiln_oauth2_codes (expires_at)`,
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// InsertOAuth2Token implements store.OAuth2Store, outside the versioned
// configuration transactions.
func (s *SQL) InsertOAuth2Token(ctx context.Context, t store.OAuth2Token) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO kiln_oauth2_tokens (id, credential_id, service_id, access_token,
		refresh_token, authenticated_userid, scope, expires_in, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		t.ID, t.CredentialID, t.ServiceID, t.AccessToken, nullable(t.RefreshToken), t.AuthenticatedUserID, t.Scope,
		t.ExpiresIn, millis(t.CreatedAt), millis(t.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store oauth2 token in %s: %w", s.dialect, err)
	}
	return nil
}

const tokenColumns = `id, credential_id, service_id, access_token, refresh_token, authenticated_userid, scope,
	expires_in, created_at, expires_at`

// scanToken reads one row of tokenColumns.
func scanToken(row interface{ Scan(...any) error }) (store.OAuth2Token, error) {
	var (
		t                  store.OAuth2Token
		refresh            sql.NullString
		created, expiresAt int64
	)
	err := row.Scan(&t.ID, &t.CredentialID, &t.ServiceID, &t.AccessToken, &refresh, &t.AuthenticatedUserID, &t.Scope,
		&t.ExpiresIn, &created, &expiresAt)
	t.RefreshToken = refresh.String
	t.CreatedAt, t.ExpiresAt = fromMillis(created), fromMillis(expiresAt)
	return t, err
}

func (s *SQL) oauth2TokenBy(ctx context.Context, column, value string, now time.Time) (store.OAuth2Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, s.q(`SELECT `+tokenColumns+` FROM kiln_oauth2_tokens
		WHERE `+column+` = ? AND (expires_at = 0 OR expires_at > ?)`), value, now.UnixMilli()))
	if errors.Is(err, sql.ErrNoRows) {
		return t, store.ErrNotFound
	}
	if err != nil {
		return t, fmt.Errorf("read oauth2 token from %s: %w", s.dialect, err)
	}
	return t, nil
}

// OAuth2TokenByID implements store.OAuth2Store.
func (s *SQL) OAuth2TokenByID(ctx context.Context, id string, now time.Time) (store.OAuth2Token, error) {
	return s.oauth2TokenBy(ctx, "id", id, now)
}

// ListOAuth2Tokens implements store.OAuth2Store.
func (s *SQL) ListOAuth2Tokens(ctx context.Context, now time.Time, after string, limit int) ([]store.OAuth2Token, error) {
	rows, err := s.listAfter(ctx, `SELECT `+tokenColumns+` FROM kiln_oauth2_tokens
		WHERE id > ? AND (expires_at = 0 OR expires_at > ?)`, after, now, limit)
	if err != nil {
		return nil, fmt.Errorf("list oauth2 tokens in %s: %w", s.dialect, err)
	}
	defer rows.Close()
	var out []store.OAuth2Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("read oauth2 token row: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list oauth2 tokens in %s: %w", s.dialect, err)
	}
	return out, nil
}

// OAuth2TokenByAccess implements store.OAuth2Store.
func (s *SQL) OAuth2TokenByAccess(ctx context.Context, accessToken string, now time.Time) (store.OAuth2Token, error) {
	return s.oauth2TokenBy(ctx, "access_token", accessToken, now)
}

// OAuth2TokenByRefresh implements store.OAuth2Store.
func (s *SQL) OAuth2TokenByRefresh(ctx context.Context, refreshToken string, now time.Time) (store.OAuth2Token, error) {
	return s.oauth2TokenBy(ctx, "refresh_token", refreshToken, now)
}

// UpdateOAuth2Token implements store.OAuth2Store.
func (s *SQL) UpdateOAuth2Token(ctx context.Context, t store.OAuth2Token) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE kiln_oauth2_tokens SET credential_id = ?, service_id = ?, access_token = ?,
		refresh_token = ?, authenticated_userid = ?, scope = ?, expires_in = ?, created_at = ?, expires_at = ? WHERE id = ?`),
		t.CredentialID, t.ServiceID, t.AccessToken, nullable(t.RefreshToken), t.AuthenticatedUserID, t.Scope,
		t.ExpiresIn, millis(t.CreatedAt), millis(t.ExpiresAt), t.ID)
	if err != nil {
		return fmt.Errorf("update oauth2 token in %s: %w", s.dialect, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (s *SQL) deleteRow(ctx context.Context, table, id string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM `+table+` WHERE id = ?`), id)
	if err != nil {
		return false, fmt.Errorf("delete from %s in %s: %w", table, s.dialect, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("delete from %s in %s: %w", table, s.dialect, err)
	}
	return n > 0, nil
}

// DeleteOAuth2Token implements store.OAuth2Store.
func (s *SQL) DeleteOAuth2Token(ctx context.Context, id string) (bool, error) {
	return s.deleteRow(ctx, "kiln_oauth2_tokens", id)
}

// InsertOAuth2Code implements store.OAuth2Store.
func (s *SQL) InsertOAuth2Code(ctx context.Context, c store.OAuth2Code) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO kiln_oauth2_codes (id, code, credential_id, service_id,
		authenticated_userid, scope, challenge, challenge_method, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		c.ID, c.Code, c.CredentialID, c.ServiceID, c.AuthenticatedUserID, c.Scope, c.Challenge, c.ChallengeMethod,
		millis(c.CreatedAt), millis(c.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store oauth2 authorization code in %s: %w", s.dialect, err)
	}
	return nil
}

// OAuth2CodeByCode implements store.OAuth2Store.
func (s *SQL) OAuth2CodeByCode(ctx context.Context, code string, now time.Time) (store.OAuth2Code, error) {
	var (
		c                  store.OAuth2Code
		created, expiresAt int64
	)
	err := s.db.QueryRowContext(ctx, s.q(`SELECT id, code, credential_id, service_id, authenticated_userid, scope,
		challenge, challenge_method, created_at, expires_at FROM kiln_oauth2_codes
		WHERE code = ? AND (expires_at = 0 OR expires_at > ?)`), code, now.UnixMilli()).
		Scan(&c.ID, &c.Code, &c.CredentialID, &c.ServiceID, &c.AuthenticatedUserID, &c.Scope, &c.Challenge,
			&c.ChallengeMethod, &created, &expiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return c, store.ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("read oauth2 authorization code from %s: %w", s.dialect, err)
	}
	c.CreatedAt, c.ExpiresAt = fromMillis(created), fromMillis(expiresAt)
	return c, nil
}

// DeleteOAuth2Code implements store.OAuth2Store.
func (s *SQL) DeleteOAuth2Code(ctx context.Context, id string) (bool, error) {
	return s.deleteRow(ctx, "kiln_oauth2_codes", id)
}

// PurgeOAuth2 implements store.OAuth2Store. Besides expired rows it
// deletes the rows whose credential or service no longer exists: Kong
// cascades those deletes, kiln's plugin already refuses such tokens.
func (s *SQL) PurgeOAuth2(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for _, table := range []string{"kiln_oauth2_tokens", "kiln_oauth2_codes"} {
		res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM `+table+` WHERE (expires_at <> 0 AND expires_at <= ?)
			OR credential_id NOT IN (SELECT id FROM kiln_entities WHERE kind = 'oauth2_credentials')
			OR (service_id <> '' AND service_id NOT IN (SELECT id FROM kiln_entities WHERE kind = 'services'))`), now.UnixMilli())
		if err != nil {
			return total, fmt.Errorf("purge expired rows of %s in %s: %w", table, s.dialect, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("purge expired rows of %s in %s: %w", table, s.dialect, err)
		}
		total += int(n)
	}
	return total, nil
}
