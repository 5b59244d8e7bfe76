package plugins

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
)

type jwtAuth struct {
	env                           *plugin.Env
	uriParams, cookies, headers   []string
	keyClaim, anonymous           string
	base64Secret, preflight       bool
	claimsToVerify                []string
	maxExpiration                 float64
	wwwAuthBase, wwwAuthWithError string
	// keys holds each credential's verification key, prepared once per
	// configuration rather than per request: an asymmetric credential's
	// parsed public key, an HMAC credential's secret as bytes (decoded when
	// secret_is_base64). A credential whose key cannot be prepared has none.
	keys map[string]any
}

func newJWT(p *entity.Plugin, env *plugin.Env) (any, error) {
	cf := conf(p.Config)
	j := &jwtAuth{env: env, uriParams: cf.strs("uri_param_names"), cookies: cf.strs("cookie_names"), headers: cf.strs("header_names"),
		keyClaim: cf.str("key_claim_name"), anonymous: cf.str("anonymous"), base64Secret: cf.boolean("secret_is_base64"),
		preflight: true, claimsToVerify: cf.strs("claims_to_verify"), keys: map[string]any{}}
	if _, set := p.Config["uri_param_names"]; !set {
		j.uriParams = []string{"jwt"}
	}
	if _, set := p.Config["header_names"]; !set {
		j.headers = []string{"authorization"}
	}
	if j.keyClaim == "" {
		j.keyClaim = "iss"
	}
	if v, set := p.Config["run_on_preflight"].(bool); set {
		j.preflight = v
	}
	j.maxExpiration, _ = cf.num("maximum_expiration")
	j.wwwAuthBase = "Bearer"
	if realm := cf.str("realm"); realm != "" {
		j.wwwAuthBase = `Bearer realm="` + realm + `"`
	}
	j.wwwAuthWithError = j.wwwAuthBase + ` error="invalid_token"`
	for _, cred := range env.Config.JWTSecrets {
		if k := j.verificationKey(cred); k != nil {
			j.keys[cred.ID] = k
		}
	}
	return j, nil
}

// verificationKey prepares cred's key for keys, or returns nil.
func (j *jwtAuth) verificationKey(cred *entity.JWTSecret) any {
	switch {
	case entity.JWTUsesPublicKey(cred.Algorithm):
		if cred.RSAPublicKey == nil {
			return nil
		}
		k, err := entity.ParsePublicKeyPEM(*cred.RSAPublicKey)
		if err != nil {
			return nil
		}
		return k
	case cred.Secret == nil:
		return nil
	case j.base64Secret:
		b, err := b64Decode(*cred.Secret)
		if err != nil {
			return nil
		}
		return b
	}
	return []byte(*cred.Secret)
}

// jwtFailure is a rejected token: a Kong message or per-claim errors.
type jwtFailure struct {
	message string
	claims  map[string]string
	www     string
}

func (j *jwtAuth) Access(c *plugin.Context) {
	if !j.preflight && c.Req.Method == http.MethodOptions {
		return
	}
	if j.anonymous != "" && c.Credential != nil {
		return
	}
	f := j.authenticate(c)
	if f == nil {
		return
	}
	rejectAuth(c, j.env, j.anonymous, f.www, func() {
		if f.claims != nil {
			b, _ := json.Marshal(f.claims)
			c.ExitWith(&plugin.Exit{Status: http.StatusUnauthorized, Body: b, ContentType: "application/json; charset=utf-8"})
			return
		}
		c.Error(http.StatusUnauthorized, f.message)
	})
}

// tokens collects the distinct non-empty tokens of the request: query
// parameters, then cookies, then the bearer headers.
// bareQueryToken stands for a query parameter without a value, which is no
// token at all.
const bareQueryToken = "\x00"

func (j *jwtAuth) tokens(c *plugin.Context) []string {
	var out []string
	add := func(t string) {
		if t == "" {
			return
		}
		for _, x := range out {
			if x == t {
				return
			}
		}
		out = append(out, t)
	}
	if len(j.uriParams) > 0 && c.Req.URL.RawQuery != "" {
		for _, part := range strings.Split(c.Req.URL.RawQuery, "&") {
			k, v, hasValue := strings.Cut(part, "=")
			if k, err := url.QueryUnescape(k); err != nil || !slices.Contains(j.uriParams, k) {
				continue
			}
			if !hasValue {
				// Kong reads a bare "?jwt" as the boolean true.
				add(bareQueryToken)
				continue
			}
			if v, err := url.QueryUnescape(v); err == nil {
				add(v)
			}
		}
	}
	for _, name := range j.cookies {
		if ck, err := c.Req.Cookie(name); err == nil {
			add(ck.Value)
		}
	}
	for _, name := range j.headers {
		v := c.Req.Header.Get(name)
		if v == "" {
			continue
		}
		if tok, ok := bearerToken(v); ok {
			add(tok)
		}
	}
	return out
}

func (j *jwtAuth) authenticate(c *plugin.Context) *jwtFailure {
	bad := func(msg string) *jwtFailure { return &jwtFailure{message: msg, www: j.wwwAuthWithError} }
	toks := j.tokens(c)
	switch len(toks) {
	case 0:
		return &jwtFailure{message: "Unauthorized", www: j.wwwAuthBase}
	case 1:
		if toks[0] == bareQueryToken {
			return bad("Unrecognizable token")
		}
	default:
		return bad("Multiple tokens provided")
	}
	tok, err := parseJWT(toks[0])
	if err != nil {
		return bad("Bad token; " + err.Error())
	}
	raw, found := tok.claims[j.keyClaim]
	if !found || raw == nil || raw == false {
		raw, found = tok.header[j.keyClaim]
	}
	if !found || raw == nil || raw == false {
		return bad("No mandatory '" + j.keyClaim + "' in claims")
	}
	key, _ := raw.(string)
	if s, isStr := raw.(string); isStr && s == "" {
		return bad("Invalid '" + j.keyClaim + "' in claims")
	}
	cred := j.env.JWT[key]
	if cred == nil || cred.Consumer == nil {
		return bad("No credentials found for given '" + j.keyClaim + "'")
	}
	alg := cred.Algorithm
	if alg == "" {
		alg = "HS256"
	}
	if tok.alg != alg {
		return bad("Invalid algorithm")
	}
	vk := j.keys[cred.ID]
	if vk == nil {
		return bad("Invalid key/secret")
	}
	if !tok.verify(vk) {
		return bad("Invalid signature")
	}
	now := float64(j.env.Now().Unix())
	if errs := tok.verifyClaims(j.claimsToVerify, now); errs != nil {
		return &jwtFailure{claims: errs, www: j.wwwAuthWithError}
	}
	if j.maxExpiration > 0 {
		exp, ok := tok.claims["exp"].(float64)
		if !ok || exp-now > j.maxExpiration {
			return &jwtFailure{claims: map[string]string{"exp": "exceeds maximum allowed expiration"}, www: j.wwwAuthWithError}
		}
	}
	consumer := j.env.Config.Consumer(cred.Consumer.ID)
	if consumer == nil {
		return &jwtFailure{message: fmt.Sprintf("Could not find consumer for '%s=%s'", j.keyClaim, key)}
	}
	c.AuthenticateCredential(consumer, cred.ID, cred.Key)
	c.Set("authenticated_jwt_token", tok.raw)
	return nil
}
