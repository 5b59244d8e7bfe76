package entity

import (
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/schema"
)

// JWTAlgorithms are the algorithms a jwt_secrets credential may use (Kong
// 3.x's list). EdDSA means Ed25519: Go's standard library has no Ed448.
var JWTAlgorithms = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
	"PS256", "PS384", "PS512", "EdDSA"}

// HMACAlgorithms are the hmac-auth signature algorithms.
var HMACAlgorithms = []string{"hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"}

// JWTSecretSchema and HMACAuthSchema are the jwt and hmac-auth plugins'
// credential entities (tables jwt_secrets, hmacauth_credentials).
var (
	JWTSecretSchema = &schema.Schema{
		Name: "jwt_secrets", EndpointKey: "key",
		Fields: []schema.Field{
			idField, createdAtField,
			foreign("consumer", "consumers", true),
			{Name: "key", Type: schema.String, Unique: true, Auto: true},
			{Name: "secret", Type: schema.String, Auto: true},
			str("rsa_public_key"),
			{Name: "algorithm", Type: schema.String, Default: "HS256", OneOf: anyList(JWTAlgorithms)},
			tagsField,
		},
	}

	HMACAuthSchema = &schema.Schema{
		Name: "hmacauth_credentials", EndpointKey: "username",
		Fields: []schema.Field{
			idField, createdAtField,
			foreign("consumer", "consumers", true),
			{Name: "username", Type: schema.String, Required: true, Unique: true},
			{Name: "secret", Type: schema.String, Auto: true},
			tagsField,
		},
	}
)

func anyList(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

// JWTUsesPublicKey reports whether a jwt_secrets algorithm verifies with
// rsa_public_key (every algorithm but the HMAC ones).
func JWTUsesPublicKey(alg string) bool { return !strings.HasPrefix(alg, "HS") }

// checkJWTSecret is the jwt_secrets entity check: an asymmetric algorithm
// needs a parseable PEM public key in rsa_public_key.
func checkJWTSecret(rec map[string]any) schema.Errors {
	alg, _ := rec["algorithm"].(string)
	if !JWTUsesPublicKey(alg) {
		return nil
	}
	key, _ := rec["rsa_public_key"].(string)
	if key == "" {
		return schema.Errors{"rsa_public_key": "required field missing",
			schema.EntityKey: []string{"failed conditional validation given value of field 'algorithm'"}}
	}
	if _, err := ParsePublicKeyPEM(key); err != nil {
		return schema.Errors{"rsa_public_key": "invalid key"}
	}
	return nil
}

// ParsePublicKeyPEM parses a PEM public key (PKIX "PUBLIC KEY", PKCS#1
// "RSA PUBLIC KEY") or the public key of a PEM certificate.
func ParsePublicKeyPEM(s string) (any, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, errNoPEM
	}
	if k, err := x509.ParsePKIXPublicKey(b.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PublicKey(b.Bytes); err == nil {
		return k, nil
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, err
	}
	return c.PublicKey, nil
}

type pemError string

func (e pemError) Error() string { return string(e) }

const errNoPEM = pemError("no PEM data found")

// luaCode is Kong's typedefs.lua_code: a map of names to Lua snippets.
// kiln runs no Lua, so a non-empty map is rejected rather than ignored.
func luaCode(name string) schema.Field {
	return schema.Field{Name: name, Type: schema.Map,
		Keys:   &schema.Field{Type: schema.String, LenMin: 1},
		Values: &schema.Field{Type: schema.String, LenMin: 1},
		Check: func(v any) string {
			if m, ok := v.(map[string]any); ok && len(m) > 0 {
				return "kiln does not run Lua: remove " + name + " (or set it to null)"
			}
			return ""
		}}
}

// queueRecord is Kong 3.x's typedefs.queue (the batching queue of the log
// plugins).
var queueRecord = schema.Field{Name: "queue", Type: schema.Record, Fields: []schema.Field{
	integer("max_batch_size", 1, 1, 1000000),
	{Name: "max_coalescing_delay", Type: schema.Number, Default: 1, Between: &schema.Range{Min: 0, Max: 3600}},
	integer("max_entries", 10000, 1, 1000000),
	{Name: "max_bytes", Type: schema.Integer},
	{Name: "max_retry_time", Type: schema.Number, Default: 60},
	{Name: "initial_retry_delay", Type: schema.Number, Default: 0.01, Between: &schema.Range{Min: 0.001, Max: 1000000}},
	{Name: "max_retry_delay", Type: schema.Number, Default: 60, Between: &schema.Range{Min: 0.001, Max: 1000000}},
	{Name: "concurrency_limit", Type: schema.Integer, Default: 1, OneOf: []any{-1, 1}},
}}

func checkHTTPEndpoint(v any) string {
	s, _ := v.(string)
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "missing host in url"
	}
	return ""
}

func checkLogHeaderName(v any) string {
	s, _ := v.(string)
	switch strings.ToLower(s) {
	case "host":
		return "cannot contain 'Host' header"
	case "content-length":
		return "cannot contain 'Content-Length' header"
	case "content-type":
		return "cannot contain 'Content-Type' header"
	}
	return checkHeaderToken(s)
}

func checkHTTPLog(rec map[string]any) []string {
	s, _ := rec["http_endpoint"].(string)
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return nil
	}
	if h, ok := rec["headers"].(map[string]any); ok {
		for k := range h {
			if strings.EqualFold(k, "authorization") {
				return []string{"specifying both an 'Authorization' header and user info in 'http_endpoint' is not allowed"}
			}
		}
	}
	return nil
}

func checkJWTConfig(rec map[string]any) []string {
	if m, _ := rec["maximum_expiration"].(float64); m > 0 {
		for _, c := range listOf(rec["claims_to_verify"]) {
			if c == "exp" {
				return nil
			}
		}
		return []string{"failed conditional validation given value of field 'config.maximum_expiration'"}
	}
	return nil
}

// Plugin definitions of the jwt, hmac-auth and http-log plugins.
var (
	jwtPlugin = &PluginDef{Name: "jwt", Priority: 1450, NoConsumer: true, Config: cfg([]schema.Check{checkJWTConfig},
		schema.Field{Name: "uri_param_names", Type: schema.Set, Default: []string{"jwt"}, Elements: &schema.Field{Type: schema.String}},
		schema.Field{Name: "cookie_names", Type: schema.Set, Default: []string{}, Elements: &schema.Field{Type: schema.String}},
		schema.Field{Name: "key_claim_name", Type: schema.String, Default: "iss"},
		boolean("secret_is_base64", false),
		schema.Field{Name: "claims_to_verify", Type: schema.Set, Elements: &schema.Field{Type: schema.String, OneOf: []any{"exp", "nbf"}}},
		str("anonymous"),
		boolean("run_on_preflight", true),
		schema.Field{Name: "maximum_expiration", Type: schema.Number, Default: 0, Between: &schema.Range{Min: 0, Max: 31536000}},
		schema.Field{Name: "header_names", Type: schema.Set, Default: []string{"authorization"}, Elements: &schema.Field{Type: schema.String}},
		str("realm"),
	)}
	hmacAuthPlugin = &PluginDef{Name: "hmac-auth", Priority: 1030, NoConsumer: true, Config: cfg(nil,
		boolean("hide_credentials", false),
		schema.Field{Name: "clock_skew", Type: schema.Number, Default: 300, Gt: ptr(0.0)},
		str("anonymous"),
		boolean("validate_request_body", false),
		schema.Field{Name: "enforce_headers", Type: schema.Array, Default: []string{}, Elements: &schema.Field{Type: schema.String}},
		schema.Field{Name: "algorithms", Type: schema.Array, Default: append([]string{}, HMACAlgorithms...),
			Elements: &schema.Field{Type: schema.String, OneOf: anyList(HMACAlgorithms)}},
		str("realm"),
	)}
	httpLogPlugin = &PluginDef{Name: "http-log", Priority: 12, Config: cfg([]schema.Check{checkHTTPLog},
		schema.Field{Name: "http_endpoint", Type: schema.String, Required: true, Check: checkHTTPEndpoint},
		oneOf("method", "POST", "POST", "PUT", "PATCH"),
		oneOf("content_type", "application/json", "application/json", "application/json; charset=utf-8"),
		schema.Field{Name: "timeout", Type: schema.Number, Default: 10000},
		schema.Field{Name: "keepalive", Type: schema.Number, Default: 60000},
		// Deprecated since Kong 3.3 in favour of queue.*; accepted without
		// defaults, mapped onto the queue when set.
		schema.Field{Name: "retry_count", Type: schema.Integer},
		schema.Field{Name: "queue_size", Type: schema.Integer},
		schema.Field{Name: "flush_timeout", Type: schema.Number},
		schema.Field{Name: "headers", Type: schema.Map, Keys: &schema.Field{Type: schema.String, Check: checkLogHeaderName},
			Values: &schema.Field{Type: schema.String}},
		queueRecord,
		luaCode("custom_fields_by_lua"),
	)}
)
