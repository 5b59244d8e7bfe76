package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// errOAuth2NoDatabase is Kong's error when the oauth2 plugin runs without a
// database (DB-less mode and hybrid data planes): tokens cannot be stored.
var errOAuth2NoDatabase = errors.New("[off] cannot create 'oauth2_tokens' entities when not using a database")

// oauth2CodeTTL is how long an authorization code lives (Kong: 300 s).
const oauth2CodeTTL = 300 * time.Second

// oauth2StoreTimeout bounds one token store call on the request path.
const oauth2StoreTimeout = 10 * time.Second

// oauth2Auth is Kong's oauth2 plugin: the authorize and token endpoints
// under every route it applies to, and bearer token validation on the
// other requests. Tokens and codes live in the State's OAuth2Store.
type oauth2Auth struct {
	env    *plugin.Env
	tokens store.OAuth2Store

	scopes                                         []string
	scopesSet, mandatoryScope                      bool
	provisionKey, anonymous, authHeader, pkce      string
	tokenExpiration, refreshTTL                    int64
	enableCode, enableImplicit, enableCC, enablePW bool
	hide, acceptHTTP, global, reuseRefresh         bool
}

func newOAuth2(p *entity.Plugin, env *plugin.Env) (any, error) {
	if env.State == nil || env.State.OAuth2 == nil {
		return nil, errOAuth2NoDatabase
	}
	cf := conf(p.Config)
	o := &oauth2Auth{env: env, tokens: env.State.OAuth2, scopes: cf.strs("scopes"), scopesSet: p.Config["scopes"] != nil,
		mandatoryScope: cf.boolean("mandatory_scope"), provisionKey: cf.str("provision_key"), anonymous: cf.str("anonymous"),
		authHeader: cf.str("auth_header_name"), pkce: cf.str("pkce"),
		enableCode: cf.boolean("enable_authorization_code"), enableImplicit: cf.boolean("enable_implicit_grant"),
		enableCC: cf.boolean("enable_client_credentials"), enablePW: cf.boolean("enable_password_grant"),
		hide: cf.boolean("hide_credentials"), acceptHTTP: cf.boolean("accept_http_if_already_terminated"),
		global: cf.boolean("global_credentials"), reuseRefresh: cf.boolean("reuse_refresh_token")}
	exp, _ := cf.num("token_expiration")
	ttl, _ := cf.num("refresh_token_ttl")
	o.tokenExpiration, o.refreshTTL = int64(exp), int64(ttl)
	if o.authHeader == "" {
		o.authHeader = "authorization"
	}
	if o.pkce == "" {
		o.pkce = "lax"
	}
	return o, nil
}

// oauth2Error is an OAuth 2.0 error response body.
func oauth2Error(code, description string) map[string]any {
	return map[string]any{"error": code, "error_description": description}
}

func isOAuth2Error(m map[string]any) bool { _, ok := m["error"]; return ok }

// exitJSON ends the request with a JSON body, as kong.response.exit does
// with a table.
func exitJSON(c *plugin.Context, status int, body any) {
	b, _ := json.Marshal(body)
	c.ExitWith(&plugin.Exit{Status: status, Body: b, ContentType: "application/json; charset=utf-8"})
}

// endpoint reports which OAuth 2.0 endpoint a path ends with, if any.
func endpoint(path string) string {
	path = strings.TrimSuffix(path, "/")
	switch {
	case strings.HasSuffix(path, "/oauth2/token"):
		return "token"
	case strings.HasSuffix(path, "/oauth2/authorize"):
		return "authorization"
	}
	return ""
}

func (o *oauth2Auth) Access(c *plugin.Context) {
	if ep := endpoint(c.RawPath); ep != "" {
		if c.Req.Method != http.MethodPost {
			desc := "The HTTP method " + c.Req.Method + " is invalid for the " + ep + " endpoint"
			c.SetRespHeader("WWW-Authenticate", `Bearer realm="service" error="invalid_method" error_description="`+desc+`"`)
			exitJSON(c, http.StatusMethodNotAllowed, oauth2Error("invalid_method", desc))
			return
		}
		params, ok := o.params(c)
		if !ok {
			c.Error(http.StatusBadRequest, "Cannot process request body")
			return
		}
		c.SetRespHeader("Cache-Control", "no-store")
		c.SetRespHeader("Pragma", "no-cache")
		ctx, cancel := context.WithTimeout(context.Background(), oauth2StoreTimeout)
		defer cancel()
		var err error
		// Issuing a token or a code queries and writes the database:
		// run so that the requests sharing this one's event loop go on
		// meanwhile (the parameters, read from the body, are in hand).
		c.Blocking(func() {
			if ep == "token" {
				err = o.issueToken(ctx, c, params)
			} else {
				err = o.authorize(ctx, c, params)
			}
		})
		if err != nil {
			c.Error(http.StatusInternalServerError, "An unexpected error occurred")
		}
		return
	}
	if o.anonymous != "" && c.Credential != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), oauth2StoreTimeout)
	defer cancel()
	status, body, www, err := o.authenticate(ctx, c)
	switch {
	case err != nil:
		c.Error(http.StatusInternalServerError, "An unexpected error occurred")
	case status == 0:
	case o.anonymous != "":
		if consumer := o.env.LookupConsumer(o.anonymous); consumer != nil {
			o.setConsumer(c, consumer, nil, nil)
			return
		}
		c.Error(http.StatusInternalServerError, "An unexpected error occurred")
	default:
		if www != "" {
			c.SetRespHeader("WWW-Authenticate", www)
		}
		exitJSON(c, status, body)
	}
}

// params reads the request's OAuth 2.0 parameters (the body is put back for
// the upstream).
func (o *oauth2Auth) params(c *plugin.Context) (oauth2Params, bool) {
	var body []byte
	switch c.Req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		var ok bool
		if body, ok = readBody(c); !ok {
			return nil, false
		}
	}
	return parseOAuth2Params(c.Req.Method, c.Req.URL.RawQuery, c.Req.Header.Get("Content-Type"), body), true
}

// https is Kong's check_https: the request came over HTTPS, or, with
// accept_http_if_already_terminated, from a peer in trusted_ips
// (kong.ip.is_trusted of the connecting address) whose single
// X-Forwarded-Proto says https. With Kong's default trusted_ips (none) the
// header is never believed.
func (o *oauth2Auth) https(c *plugin.Context) (bool, string) {
	if strings.EqualFold(c.Scheme, "https") {
		return true, ""
	}
	if !o.acceptHTTP || !c.Trusted {
		return false, ""
	}
	vs := c.Req.Header.Values("X-Forwarded-Proto")
	if len(vs) > 1 {
		return false, "Only one X-Forwarded-Proto header allowed"
	}
	return len(vs) == 1 && strings.EqualFold(vs[0], "https"), ""
}

// scope is Kong's retrieve_scope: the requested scopes, checked against the
// configured ones.
func (o *oauth2Auth) scope(p oauth2Params) (string, map[string]any) {
	raw, present := p["scope"]
	if o.scopesSet && present && raw != nil {
		s, ok := raw.(string)
		if !ok {
			return "", oauth2Error("invalid_scope", "scope must be a string")
		}
		fields := strings.Fields(s)
		for _, v := range fields {
			if !slices.Contains(o.scopes, v) {
				return "", oauth2Error("invalid_scope", `"`+v+`" is an invalid scope`)
			}
		}
		return strings.Join(fields, " "), nil
	}
	if (!present || raw == nil) && o.mandatoryScope {
		return "", oauth2Error("invalid_scope", "You must specify a scope")
	}
	return "", nil
}

// codeChallenge is Kong's retrieve_code_challenge: the normalised PKCE
// challenge and its method (Kong supports S256 only).
func codeChallenge(p oauth2Params) (challenge, method, errDesc string) {
	challenge, hasChallenge := p.str("code_challenge")
	hasChallenge = hasChallenge || p.has("code_challenge")
	m, hasMethod := p.str("code_challenge_method")
	hasMethod = hasMethod || p.has("code_challenge_method")
	if hasMethod && !hasChallenge {
		return "", "", "code_challenge is required when code_method is present"
	}
	method = "S256"
	if hasChallenge {
		if b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(challenge, "=")); err == nil {
			challenge = base64.RawURLEncoding.EncodeToString(b)
		}
		if hasMethod && m != "S256" {
			if m != "s256" {
				return "", "", "code_challenge_method is not supported, must be S256"
			}
		}
	}
	return challenge, method, ""
}

// requiresPKCE is Kong's requires_pkce.
func (o *oauth2Auth) requiresPKCE(client *entity.OAuth2Credential, usedPKCE bool) bool {
	if client == nil {
		return false
	}
	return usedPKCE || (client.ClientType == "public" && o.pkce != "none") ||
		(client.ClientType == "confidential" && o.pkce == "strict")
}

func (o *oauth2Auth) serviceID(c *plugin.Context) string {
	if o.global || c.Service == nil {
		return ""
	}
	return c.Service.ID
}

// generateToken issues an access token (Kong's generate_token). existing
// is the token a refresh grant presented.
func (o *oauth2Auth) generateToken(ctx context.Context, c *plugin.Context, client *entity.OAuth2Credential, userID, scope string,
	state any, disableRefresh bool, existing *store.OAuth2Token) (map[string]any, error) {
	now := o.env.Now()
	var expiresAt time.Time
	if o.tokenExpiration > 0 && o.refreshTTL > 0 {
		expiresAt = now.Add(time.Duration(o.refreshTTL) * time.Second)
	}
	var tok store.OAuth2Token
	if existing != nil && o.reuseRefresh {
		tok = *existing
		tok.AccessToken, tok.ExpiresIn, tok.CreatedAt, tok.ExpiresAt = entity.RandomKey(), o.tokenExpiration, now, expiresAt
		if err := o.tokens.UpdateOAuth2Token(ctx, tok); err != nil {
			return nil, err
		}
	} else {
		tok = store.OAuth2Token{ID: entity.NewID(), CredentialID: client.ID, ServiceID: o.serviceID(c),
			AccessToken: entity.RandomKey(), AuthenticatedUserID: userID, Scope: scope, ExpiresIn: o.tokenExpiration,
			CreatedAt: now, ExpiresAt: expiresAt}
		if !disableRefresh && o.tokenExpiration > 0 {
			tok.RefreshToken = entity.RandomKey()
		}
		if err := o.tokens.InsertOAuth2Token(ctx, tok); err != nil {
			return nil, err
		}
	}
	out := map[string]any{"access_token": tok.AccessToken, "token_type": "bearer"}
	if o.tokenExpiration > 0 {
		out["expires_in"] = tok.ExpiresIn
	}
	if tok.RefreshToken != "" {
		out["refresh_token"] = tok.RefreshToken
	}
	if state != nil {
		out["state"] = state
	}
	return out, nil
}

// client looks up an oauth2 credential by client_id.
func (o *oauth2Auth) client(clientID string) *entity.OAuth2Credential {
	if clientID == "" {
		return nil
	}
	return o.env.OAuth2[clientID]
}

const badRedirect = "Invalid redirect_uri that does not match with any redirect_uri created with the application"

// authorize is Kong's authorize: POST <route>/oauth2/authorize.
func (o *oauth2Auth) authorize(ctx context.Context, c *plugin.Context, p oauth2Params) error {
	var resp map[string]any
	state, hasState := p["state"]
	redirect := ""
	implicit := false
	if ok, msg := o.https(c); !ok {
		if msg == "" {
			msg = "You must use HTTPS"
		}
		resp = oauth2Error("access_denied", msg)
	} else if pk, _ := p.str("provision_key"); pk != o.provisionKey || !p.has("provision_key") {
		resp = oauth2Error("invalid_provision_key", "Invalid provision_key")
	} else if uid, _ := p.str("authenticated_userid"); strings.TrimSpace(uid) == "" {
		resp = oauth2Error("invalid_authenticated_userid", "Missing authenticated_userid parameter")
	} else {
		resp = map[string]any{}
		rt, _ := p.str("response_type")
		if !((rt == "code" && o.enableCode) || (rt == "token" && o.enableImplicit)) {
			resp = oauth2Error("unsupported_response_type", "Invalid response_type")
		}
		scope, serr := o.scope(p)
		if serr != nil {
			resp = serr
		}
		clientID, _ := p.str("client_id")
		client := o.client(clientID)
		if client == nil || client.RedirectURIs == nil {
			resp = oauth2Error("invalid_client", "Invalid client authentication")
		} else {
			redirect, _ = p.str("redirect_uri")
			if !p.has("redirect_uri") && len(client.RedirectURIs) > 0 {
				redirect = client.RedirectURIs[0]
			}
			if !slices.Contains(client.RedirectURIs, redirect) {
				resp = oauth2Error("invalid_request", badRedirect)
				redirect = ""
				if len(client.RedirectURIs) > 0 {
					redirect = client.RedirectURIs[0]
				}
			}
		}
		challenge, method, cerr := codeChallenge(p)
		switch {
		case cerr != "":
			resp = oauth2Error("invalid_request", cerr)
		case client != nil && challenge == "" && o.requiresPKCE(client, false):
			resp = oauth2Error("invalid_request", "code_challenge is required for public clients")
		case challenge == "":
			method = ""
		}
		if !isOAuth2Error(resp) {
			if rt == "code" {
				now := o.env.Now()
				code := store.OAuth2Code{ID: entity.NewID(), Code: entity.RandomKey(), CredentialID: client.ID,
					ServiceID: o.serviceID(c), AuthenticatedUserID: uid, Scope: scope, Challenge: challenge,
					ChallengeMethod: method, CreatedAt: now, ExpiresAt: now.Add(oauth2CodeTTL)}
				if err := o.tokens.InsertOAuth2Code(ctx, code); err != nil {
					return err
				}
				resp = map[string]any{"code": code.Code}
			} else {
				var err error
				if resp, err = o.generateToken(ctx, c, client, uid, scope, state, true, nil); err != nil {
					return err
				}
				implicit = true
			}
		}
	}
	if hasState {
		resp["state"] = state
	}
	status := http.StatusOK
	if isOAuth2Error(resp) {
		status = http.StatusBadRequest
	}
	if redirect == "" {
		exitJSON(c, status, resp)
		return nil
	}
	exitJSON(c, status, map[string]any{"redirect_uri": appendRedirectParams(redirect, resp, implicit)})
	return nil
}

// appendRedirectParams adds the response parameters to a redirect URI's
// query (or, for the implicit grant, its fragment), keeping the arguments
// already there; keys are sorted as Kong's encode_args sorts them.
func appendRedirectParams(redirect string, params map[string]any, fragment bool) string {
	u, err := url.Parse(redirect)
	if err != nil {
		return redirect
	}
	existing := u.RawQuery
	if fragment {
		existing = u.Fragment
	}
	merged := oauth2Params{}
	addArgs(merged, existing)
	for k, v := range params {
		merged[k] = v
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		vals, ok := merged[k].([]any)
		if !ok {
			vals = []any{merged[k]}
		}
		for _, v := range vals {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k))
			if v == true {
				continue
			}
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(argString(v)))
		}
	}
	if fragment {
		u.Fragment, u.RawFragment = "", b.String()
		s := u.String()
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		return s + "#" + b.String()
	}
	u.RawQuery = b.String()
	return u.String()
}

func argString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

// clientCredentials is Kong's retrieve_client_credentials.
func (o *oauth2Auth) clientCredentials(c *plugin.Context, p oauth2Params) (id, secret string, hasSecret, fromHeader bool) {
	id, _ = p.str("client_id")
	secret, hasSecret = p.str("client_secret")
	if p.has("client_id") && p.has("client_secret") {
		return id, secret, hasSecret, false
	}
	if h := plugin.HeaderValue(c.Req.Header, o.authHeader); h != "" {
		if raw, ok := basicCredentials(h); ok {
			id, secret, _ = strings.Cut(raw, ":")
			if i := strings.IndexByte(secret, ':'); i >= 0 {
				secret = secret[:i]
			}
			return id, secret, true, true
		}
		return "", "", false, true
	}
	return id, "", false, false
}

// basicCredentials finds "Basic <base64>" (or "basic") in an
// Authorization value and decodes it.
func basicCredentials(h string) (string, bool) {
	i := 0
	for ; i+5 <= len(h); i++ {
		if (h[i] == 'B' || h[i] == 'b') && h[i+1:i+5] == "asic" {
			break
		}
	}
	if i+5 > len(h) {
		return "", false
	}
	v := strings.TrimSpace(h[i+5:])
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(v); err != nil {
			return "", false
		}
	}
	return string(b), true
}

// verifyPKCE is Kong's validate_pkce_verifier.
func verifyPKCE(p oauth2Params, code *store.OAuth2Code) map[string]any {
	raw, present := p["code_verifier"]
	if !present || raw == nil || raw == false {
		return oauth2Error("invalid_request", "code_verifier is required for PKCE authorization requests")
	}
	v, ok := raw.(string)
	if !ok {
		return oauth2Error("invalid_request", "code_verifier is not a string")
	}
	if len(v) < 43 || len(v) > 128 {
		return oauth2Error("invalid_request", "code_verifier must be between 43 and 128 characters")
	}
	sum := sha256.Sum256([]byte(v))
	if code.Challenge == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != code.Challenge {
		return oauth2Error("invalid_grant", "Invalid code")
	}
	return nil
}

// issueToken is Kong's issue_token: POST <route>/oauth2/token.
func (o *oauth2Auth) issueToken(ctx context.Context, c *plugin.Context, p oauth2Params) error {
	resp := map[string]any{}
	state, hasState := p["state"]
	status, www := http.StatusBadRequest, ""
	invalidClient := func(fromHeader bool) {
		resp = oauth2Error("invalid_client", "Invalid client authentication")
		if fromHeader {
			status, www = http.StatusUnauthorized, `Basic realm="OAuth2.0"`
		}
	}
	if ok, msg := o.https(c); !ok {
		if msg == "" {
			msg = "You must use HTTPS"
		}
		resp = oauth2Error("access_denied", msg)
	} else {
		grant, _ := p.str("grant_type")
		if !(grant == "authorization_code" || grant == "refresh_token" || (o.enableCC && grant == "client_credentials") ||
			(o.enablePW && grant == "password")) {
			resp = oauth2Error("unsupported_grant_type", "Invalid grant_type")
		}
		clientID, secret, hasSecret, fromHeader := o.clientCredentials(c, p)
		client := o.client(clientID)
		if grant != "client_credentials" {
			if client != nil && client.RedirectURIs != nil {
				redirect, _ := p.str("redirect_uri")
				if !p.has("redirect_uri") && len(client.RedirectURIs) > 0 {
					redirect = client.RedirectURIs[0]
				}
				if !slices.Contains(client.RedirectURIs, redirect) {
					resp = oauth2Error("invalid_request", badRedirect)
				}
			} else {
				invalidClient(fromHeader)
			}
		}
		if client != nil {
			switch client.ClientType {
			case "public":
				if strings.TrimSpace(secret) != "" {
					resp = oauth2Error("invalid_request", "client_secret is disallowed for public clients")
				}
			default:
				ok := hasSecret && client.ClientSecret == secret
				if client.HashSecret {
					ok = hasSecret && entity.VerifyOAuth2Secret(secret, client.ClientSecret)
				}
				if !ok {
					invalidClient(fromHeader)
				}
			}
		}
		if !isOAuth2Error(resp) {
			var err error
			switch grant {
			case "authorization_code":
				resp, err = o.grantCode(ctx, c, p, client, state)
			case "client_credentials":
				resp, err = o.grantClientCredentials(ctx, c, p, client, state)
			case "password":
				resp, err = o.grantPassword(ctx, c, p, client, state)
			case "refresh_token":
				resp, err = o.grantRefresh(ctx, c, p, client, state)
			}
			if err != nil {
				return err
			}
		}
	}
	if hasState {
		resp["state"] = state
	}
	if !isOAuth2Error(resp) {
		status, www = http.StatusOK, ""
	}
	if www != "" {
		c.SetRespHeader("WWW-Authenticate", www)
	}
	exitJSON(c, status, resp)
	return nil
}

func (o *oauth2Auth) grantCode(ctx context.Context, c *plugin.Context, p oauth2Params, client *entity.OAuth2Credential, state any) (map[string]any, error) {
	invalid := oauth2Error("invalid_request", "Invalid code")
	code, _ := p.str("code")
	if code == "" {
		return invalid, nil
	}
	ac, err := o.tokens.OAuth2CodeByCode(ctx, code, o.env.Now())
	if errors.Is(err, store.ErrNotFound) {
		return invalid, nil
	}
	if err != nil {
		return nil, err
	}
	if sid := o.serviceID(c); (sid != "" && sid != ac.ServiceID) || ac.CredentialID != client.ID {
		return invalid, nil
	}
	if o.requiresPKCE(client, ac.ChallengeMethod != "") {
		if perr := verifyPKCE(p, &ac); perr != nil {
			return perr, nil
		}
	}
	// The code is spent once: of concurrent requests only the one that
	// deletes it gets a token.
	deleted, err := o.tokens.DeleteOAuth2Code(ctx, ac.ID)
	if err != nil {
		return nil, err
	}
	if !deleted {
		return invalid, nil
	}
	return o.generateToken(ctx, c, client, ac.AuthenticatedUserID, ac.Scope, state, false, nil)
}

func (o *oauth2Auth) grantClientCredentials(ctx context.Context, c *plugin.Context, p oauth2Params, client *entity.OAuth2Credential, state any) (map[string]any, error) {
	pk, _ := p.str("provision_key")
	if p.has("authenticated_userid") && (pk != o.provisionKey || !p.has("provision_key")) {
		return oauth2Error("invalid_provision_key", "Invalid provision_key"), nil
	}
	if client == nil {
		return oauth2Error("invalid_client", "Invalid client authentication"), nil
	}
	scope, serr := o.scope(p)
	if serr != nil {
		return serr, nil
	}
	uid, _ := p.str("authenticated_userid")
	return o.generateToken(ctx, c, client, uid, scope, state, true, nil)
}

func (o *oauth2Auth) grantPassword(ctx context.Context, c *plugin.Context, p oauth2Params, client *entity.OAuth2Credential, state any) (map[string]any, error) {
	if pk, _ := p.str("provision_key"); pk != o.provisionKey || !p.has("provision_key") {
		return oauth2Error("invalid_provision_key", "Invalid provision_key"), nil
	}
	uid, _ := p.str("authenticated_userid")
	if strings.TrimSpace(uid) == "" {
		return oauth2Error("invalid_authenticated_userid", "Missing authenticated_userid parameter"), nil
	}
	scope, serr := o.scope(p)
	if serr != nil {
		return serr, nil
	}
	return o.generateToken(ctx, c, client, uid, scope, state, false, nil)
}

func (o *oauth2Auth) grantRefresh(ctx context.Context, c *plugin.Context, p oauth2Params, client *entity.OAuth2Credential, state any) (map[string]any, error) {
	invalid := oauth2Error("invalid_request", "Invalid refresh_token")
	rt, _ := p.str("refresh_token")
	if rt == "" {
		return invalid, nil
	}
	tok, err := o.tokens.OAuth2TokenByRefresh(ctx, rt, o.env.Now())
	if errors.Is(err, store.ErrNotFound) {
		return invalid, nil
	}
	if err != nil {
		return nil, err
	}
	if sid := o.serviceID(c); sid != "" && sid != tok.ServiceID {
		return invalid, nil
	}
	if tok.CredentialID != client.ID {
		return oauth2Error("invalid_client", "Invalid client authentication"), nil
	}
	resp, err := o.generateToken(ctx, c, client, tok.AuthenticatedUserID, tok.Scope, state, false, &tok)
	if err != nil {
		return nil, err
	}
	if !o.reuseRefresh {
		if _, err := o.tokens.DeleteOAuth2Token(ctx, tok.ID); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

const invalidTokenWWW = `Bearer realm="service" error="invalid_token" error_description="The access token is invalid or has expired"`

// accessToken is Kong's parse_access_token, hide_credentials included.
func (o *oauth2Auth) accessToken(c *plugin.Context) (string, bool) {
	if h := plugin.HeaderValue(c.Req.Header, o.authHeader); h != "" {
		tok := h
		fromHeader := false
		if parts := strings.Fields(h); len(parts) == 2 && (strings.EqualFold(parts[0], "bearer") || strings.EqualFold(parts[0], "token")) {
			tok, fromHeader = parts[1], true
		}
		if o.hide && fromHeader {
			c.Req.Header.Del(o.authHeader)
		}
		return tok, true
	}
	p, ok := o.params(c)
	if !ok {
		return "", false
	}
	tok, isStr := p.str("access_token")
	if !isStr {
		return "", true
	}
	if o.hide {
		if q, err := url.ParseQuery(c.UpstreamQuery); err == nil && q.Has("access_token") {
			q.Del("access_token")
			c.UpstreamQuery = q.Encode()
		}
		if c.Req.Method != http.MethodGet && strings.Contains(c.Req.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			if raw, ok := readBody(c); ok {
				if form, err := url.ParseQuery(string(raw)); err == nil {
					form.Del("access_token")
					setBody(c, []byte(form.Encode()))
				}
			}
		}
	}
	return tok, true
}

// authenticate is Kong's do_authentication: status 0 means the request
// carries a valid token and the consumer is set.
func (o *oauth2Auth) authenticate(ctx context.Context, c *plugin.Context) (status int, body map[string]any, www string, err error) {
	invalid := oauth2Error("invalid_token", "The access token is invalid or has expired")
	access, ok := o.accessToken(c)
	if !ok {
		return http.StatusBadRequest, map[string]any{"message": "Cannot process request body"}, "", nil
	}
	if access == "" {
		return http.StatusUnauthorized, oauth2Error("invalid_request", "The access token is missing"), `Bearer realm="service"`, nil
	}
	now := o.env.Now()
	var tok store.OAuth2Token
	c.Blocking(func() { tok, err = o.tokens.OAuth2TokenByAccess(ctx, access, now) })
	if errors.Is(err, store.ErrNotFound) {
		return http.StatusUnauthorized, invalid, invalidTokenWWW, nil
	}
	if err != nil {
		return 0, nil, "", err
	}
	svc := ""
	if c.Service != nil {
		svc = c.Service.ID
	}
	if !o.global {
		if tok.ServiceID == "" {
			return http.StatusUnauthorized, oauth2Error("invalid_token",
				"The access token is global, but the current plugin is configured without 'global_credentials'"), "", nil
		}
		if tok.ServiceID != svc {
			return http.StatusUnauthorized, invalid, invalidTokenWWW, nil
		}
	} else if tok.ServiceID != "" && tok.ServiceID != svc {
		return http.StatusUnauthorized, invalid, invalidTokenWWW, nil
	}
	if tok.ExpiresIn > 0 && now.Sub(tok.CreatedAt) > time.Duration(tok.ExpiresIn)*time.Second {
		return http.StatusUnauthorized, invalid, invalidTokenWWW, nil
	}
	cred := o.env.OAuth2ByID[tok.CredentialID]
	if cred == nil || cred.Consumer == nil {
		// The credential was deleted: Kong cascades the delete to its
		// tokens.
		return http.StatusUnauthorized, invalid, invalidTokenWWW, nil
	}
	consumer := o.env.Config.Consumer(cred.Consumer.ID)
	if consumer == nil {
		return http.StatusUnauthorized, invalid, invalidTokenWWW, nil
	}
	o.setConsumer(c, consumer, cred, &tok)
	return 0, nil, "", nil
}

// setConsumer is Kong's set_consumer: the consumer headers plus
// X-Authenticated-Scope and X-Authenticated-Userid from the token.
func (o *oauth2Auth) setConsumer(c *plugin.Context, consumer *entity.Consumer, cred *entity.OAuth2Credential, tok *store.OAuth2Token) {
	if cred != nil {
		c.AuthenticateCredential(consumer, cred.ID, cred.ClientID)
	} else {
		c.Authenticate(consumer, nil)
	}
	h := c.Req.Header
	delete(h, "X-Authenticated-Scope")
	delete(h, "X-Authenticated-Userid")
	if tok != nil && tok.Scope != "" {
		h["X-Authenticated-Scope"] = []string{tok.Scope}
	}
	if tok != nil && tok.AuthenticatedUserID != "" {
		h["X-Authenticated-Userid"] = []string{tok.AuthenticatedUserID}
	}
}
