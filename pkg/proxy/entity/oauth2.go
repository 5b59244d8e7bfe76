package entity

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/schema"
)

// OAuth2Credential is a consumer's OAuth 2.0 application (table
// oauth2_credentials, Admin API /oauth2): the client id and secret the
// token endpoint authenticates and the redirect URIs it accepts.
type OAuth2Credential struct {
	ID           string   `json:"id"`
	CreatedAt    int64    `json:"created_at"`
	Consumer     *FK      `json:"consumer"`
	Name         string   `json:"name"`
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret"`
	HashSecret   bool     `json:"hash_secret"`
	RedirectURIs []string `json:"redirect_uris"`
	ClientType   string   `json:"client_type"`
	Tags         []string `json:"tags"`
}

// OAuth2CredentialSchema is Kong's oauth2_credentials schema.
var OAuth2CredentialSchema = &schema.Schema{
	Name: "oauth2_credentials", EndpointKey: "client_id",
	Fields: []schema.Field{
		idField, createdAtField,
		foreign("consumer", "consumers", true),
		{Name: "name", Type: schema.String, Required: true},
		{Name: "client_id", Type: schema.String, Unique: true, Auto: true},
		{Name: "client_secret", Type: schema.String, Auto: true},
		boolean("hash_secret", false),
		{Name: "redirect_uris", Type: schema.Array, Elements: &schema.Field{Type: schema.String, Check: checkRedirectURI}},
		tagsField,
		oneOf("client_type", "confidential", "confidential", "public"),
	},
}

// checkRedirectURI accepts absolute URIs without a fragment, as Kong does.
func checkRedirectURI(v any) string {
	s, _ := v.(string)
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "cannot parse '" + s + "'"
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return "fragment not allowed in '" + s + "'"
	}
	return ""
}

// oauth2Plugin is the oauth2 plugin's definition (Kong priority 1400).
var oauth2Plugin = &PluginDef{Name: "oauth2", Priority: 1400, NoConsumer: true, Config: cfg([]schema.Check{checkOAuth2Config},
	strArray("scopes"),
	boolean("mandatory_scope", false),
	schema.Field{Name: "provision_key", Type: schema.String, Required: true, Auto: true},
	schema.Field{Name: "token_expiration", Type: schema.Number, Default: 7200, Required: true},
	boolean("enable_authorization_code", false),
	boolean("enable_implicit_grant", false),
	boolean("enable_client_credentials", false),
	boolean("enable_password_grant", false),
	boolean("hide_credentials", false),
	boolean("accept_http_if_already_terminated", false),
	str("anonymous"),
	boolean("global_credentials", false),
	schema.Field{Name: "auth_header_name", Type: schema.String, Default: "authorization"},
	schema.Field{Name: "refresh_token_ttl", Type: schema.Number, Default: 1209600, Required: true, Between: &schema.Range{Min: 0, Max: 100000000}},
	boolean("reuse_refresh_token", false),
	oneOf("pkce", "lax", "none", "lax", "strict"),
	// Kong has no persistent_refresh_token (its docs once listed it by
	// mistake): the field is rejected as unknown, as Kong does.
)}

// checkOAuth2Config is the plugin's entity check: one grant flow at least,
// and scopes when a scope is mandatory.
func checkOAuth2Config(rec map[string]any) []string {
	var out []string
	enabled := false
	for _, f := range []string{"enable_authorization_code", "enable_implicit_grant", "enable_client_credentials", "enable_password_grant"} {
		if b, _ := rec[f].(bool); b {
			enabled = true
		}
	}
	if !enabled {
		out = append(out, "at least one of these fields must be true: enable_authorization_code, enable_implicit_grant, enable_client_credentials, enable_password_grant")
	}
	if b, _ := rec["mandatory_scope"].(bool); b && rec["scopes"] == nil {
		out = append(out, "failed conditional validation given value of field 'config.mandatory_scope'")
	}
	return out
}

// OAuth2 client secrets stored with hash_secret are PBKDF2-SHA512 hashes in
// the PHC string format "$pbkdf2-sha512$i=<iterations>,l=<length>$<salt>$<hash>"
// (base64 without padding), which Kong's secret module also reads.
const (
	oauth2HashPrefix = "$pbkdf2-sha512$"
	oauth2HashIter   = 10000
	oauth2HashLen    = 32
)

// IsOAuth2SecretHash reports whether s is a hash HashOAuth2Secret made.
func IsOAuth2SecretHash(s string) bool { return strings.HasPrefix(s, oauth2HashPrefix) }

// HashOAuth2Secret hashes a client secret with a random salt.
func HashOAuth2Secret(secret string) (string, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key, err := pbkdf2.Key(sha512.New, secret, salt, oauth2HashIter, oauth2HashLen)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return oauth2HashPrefix + "i=" + strconv.Itoa(oauth2HashIter) + ",l=" + strconv.Itoa(oauth2HashLen) + "$" +
		enc.EncodeToString(salt) + "$" + enc.EncodeToString(key), nil
}

// VerifyOAuth2Secret checks secret against a HashOAuth2Secret hash.
func VerifyOAuth2Secret(secret, hash string) bool {
	rest, ok := strings.CutPrefix(hash, oauth2HashPrefix)
	if !ok {
		return false
	}
	parts := strings.Split(rest, "$")
	if len(parts) != 3 {
		return false
	}
	iter, length := 0, 0
	for _, kv := range strings.Split(parts[0], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 10000000 {
			return false
		}
		switch k {
		case "i":
			iter = n
		case "l":
			length = n
		}
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[1])
	want, err2 := enc.DecodeString(parts[2])
	if err1 != nil || err2 != nil || iter == 0 || length != len(want) {
		return false
	}
	got, err := pbkdf2.Key(sha512.New, secret, salt, iter, length)
	return err == nil && hmac.Equal(got, want)
}

// hashOAuth2Secret applies Kong's hash_secret transformation: a credential
// with hash_secret stores a hash of its client_secret (never re-hashed).
func hashOAuth2Secret(rec map[string]any) schema.Errors {
	if b, _ := rec["hash_secret"].(bool); !b {
		return nil
	}
	s, _ := rec["client_secret"].(string)
	if s == "" || IsOAuth2SecretHash(s) {
		return nil
	}
	h, err := HashOAuth2Secret(s)
	if err != nil {
		return schema.Errors{"client_secret": "cannot hash the secret: " + err.Error()}
	}
	rec["client_secret"] = h
	return nil
}
