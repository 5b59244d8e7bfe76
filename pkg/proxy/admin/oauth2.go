package admin

import (
	"errors"
	"net/http"

	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// oauth2Tokens serves Kong's /oauth2_tokens: the tokens the oauth2 plugin
// issued, listed (by id), read and revoked by id or access token. Kiln
// does not create or edit tokens through the Admin API (POST / PATCH answer
// 405). Stores without an OAuth2Store (DB-less) have no such collection.
func (s *Server) oauth2Tokens(r *http.Request, segs []string) (int, any, error) {
	ts, ok := s.st.(store.OAuth2Store)
	if !ok || len(segs) > 2 {
		return 0, nil, errNotFound
	}
	ctx := r.Context()
	now := s.now()
	if len(segs) == 1 {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return 0, nil, errMethodNotAllowed
		}
		return keysetPage(r, func(after string, limit int) ([]map[string]any, error) {
			toks, err := ts.ListOAuth2Tokens(ctx, now, after, limit)
			out := make([]map[string]any, len(toks))
			for i, t := range toks {
				out[i] = tokenJSON(t)
			}
			return out, err
		})
	}
	tok, err := ts.OAuth2TokenByID(ctx, segs[1], now)
	if errors.Is(err, store.ErrNotFound) {
		tok, err = ts.OAuth2TokenByAccess(ctx, segs[1], now)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, tokenJSON(tok), nil
	case http.MethodDelete:
		if errors.Is(err, store.ErrNotFound) {
			return http.StatusNoContent, nil, nil
		}
		if err != nil {
			return 0, nil, err
		}
		if _, err := ts.DeleteOAuth2Token(ctx, tok.ID); err != nil {
			return 0, nil, err
		}
		return http.StatusNoContent, nil, nil
	}
	return 0, nil, errMethodNotAllowed
}

// tokenJSON renders a token as Kong's Admin API does.
func tokenJSON(t store.OAuth2Token) map[string]any {
	orNull := func(v string) any {
		if v == "" {
			return nil
		}
		return v
	}
	var service any
	if t.ServiceID != "" {
		service = map[string]any{"id": t.ServiceID}
	}
	return map[string]any{"id": t.ID, "created_at": t.CreatedAt.Unix(), "service": service,
		"credential": map[string]any{"id": t.CredentialID}, "token_type": "bearer", "expires_in": t.ExpiresIn,
		"access_token": t.AccessToken, "refresh_token": orNull(t.RefreshToken),
		"authenticated_userid": orNull(t.AuthenticatedUserID), "scope": orNull(t.Scope)}
}
