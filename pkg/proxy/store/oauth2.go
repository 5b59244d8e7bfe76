package store

import (
	"context"
	"time"
)

// OAuth2Token is one row of Kong's oauth2_tokens: an access token the
// oauth2 plugin issued, with its refresh token. Like data plane rows, tokens
// and authorization codes are runtime data the data plane writes while
// serving requests, not configuration: writing them never bumps the
// configuration version nor wakes the data plane's recompile.
type OAuth2Token struct {
	ID           string
	CredentialID string
	// ServiceID is the service the token is valid for; "" for a global
	// token (the plugin's global_credentials).
	ServiceID    string
	AccessToken  string
	RefreshToken string // "" when the token has none
	// AuthenticatedUserID and Scope are "" when not set.
	AuthenticatedUserID string
	Scope               string
	// ExpiresIn is the access token's lifetime in seconds from CreatedAt
	// (0: never expires).
	ExpiresIn int64
	CreatedAt time.Time
	// ExpiresAt ends the row's life (Kong's ttl: refresh_token_ttl); the
	// zero time keeps it forever.
	ExpiresAt time.Time
}

// OAuth2Code is one row of Kong's oauth2_authorization_codes.
type OAuth2Code struct {
	ID, CredentialID, ServiceID string
	Code                        string
	AuthenticatedUserID, Scope  string
	// Challenge and ChallengeMethod are the PKCE code challenge ("" when
	// the authorization request had none).
	Challenge, ChallengeMethod string
	CreatedAt, ExpiresAt       time.Time
}

// OAuth2Store keeps the oauth2 plugin's tokens and authorization codes.
// Look-ups never return rows whose ExpiresAt has passed at now.
type OAuth2Store interface {
	InsertOAuth2Token(ctx context.Context, t OAuth2Token) error
	// OAuth2TokenByAccess / OAuth2TokenByRefresh return the live token
	// with that access / refresh token, or ErrNotFound.
	OAuth2TokenByAccess(ctx context.Context, accessToken string, now time.Time) (OAuth2Token, error)
	OAuth2TokenByRefresh(ctx context.Context, refreshToken string, now time.Time) (OAuth2Token, error)
	// OAuth2TokenByID returns the live token with that id, or ErrNotFound.
	OAuth2TokenByID(ctx context.Context, id string, now time.Time) (OAuth2Token, error)
	// ListOAuth2Tokens returns, ordered by id, up to limit live tokens
	// (every one when limit <= 0) whose id sorts after after.
	ListOAuth2Tokens(ctx context.Context, now time.Time, after string, limit int) ([]OAuth2Token, error)
	// UpdateOAuth2Token replaces the token with t.ID (ErrNotFound if gone).
	UpdateOAuth2Token(ctx context.Context, t OAuth2Token) error
	// DeleteOAuth2Token deletes a token and reports whether it existed.
	DeleteOAuth2Token(ctx context.Context, id string) (bool, error)
	InsertOAuth2Code(ctx context.Context, c OAuth2Code) error
	// OAuth2CodeByCode returns the live code, or ErrNotFound.
	OAuth2CodeByCode(ctx context.Context, code string, now time.Time) (OAuth2Code, error)
	// DeleteOAuth2Code deletes a code and reports whether this call
	// deleted it (a code is spent once even under concurrent requests).
	DeleteOAuth2Code(ctx context.Context, id string) (bool, error)
	// PurgeOAuth2 deletes the tokens and codes expired at now and those
	// whose credential or service was deleted, and reports how many.
	PurgeOAuth2(ctx context.Context, now time.Time) (int, error)
}
