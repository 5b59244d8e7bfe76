package entity

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/schema"
)

// ForeignKey describes a reference from one kind to another.
type ForeignKey struct {
	Field string // field holding {"id":...}
	Ref   string // referenced kind name
	// Cascade deletes this entity when the referenced one is deleted;
	// otherwise the referenced entity cannot be deleted while referenced.
	Cascade bool
}

// Kind describes one entity collection: schema, unique keys and relations.
type Kind struct {
	Name     string // table / declarative key, e.g. "keyauth_credentials"
	Singular string // e.g. "keyauth_credential" (declarative error reports)
	Schema   *schema.Schema
	// Unique lists field sets whose combined value must be unique; a set
	// with a null member is not checked.
	Unique [][]string
	// Foreign lists the kind's references.
	Foreign []ForeignKey
	// AdminPath is the top-level Admin API collection ("key-auths");
	// NestedPath the name under /consumers/{c}/ ("key-auth").
	AdminPath  string
	NestedPath string
}

// Kinds is every entity kind in dependency order (referenced kinds first).
var Kinds = []*Kind{
	{Name: "certificates", Singular: "certificate", Schema: CertificateSchema, AdminPath: "certificates"},
	{Name: "ca_certificates", Singular: "ca_certificate", Schema: CACertificateSchema, AdminPath: "ca_certificates",
		Unique: [][]string{{"cert_digest"}}},
	{Name: "snis", Singular: "sni", Schema: SNISchema, AdminPath: "snis", Unique: [][]string{{"name"}},
		Foreign: []ForeignKey{{Field: "certificate", Ref: "certificates", Cascade: true}}},
	{Name: "services", Singular: "service", Schema: ServiceSchema, AdminPath: "services", Unique: [][]string{{"name"}},
		Foreign: []ForeignKey{{Field: "client_certificate", Ref: "certificates"}}},
	{Name: "routes", Singular: "route", Schema: RouteSchema, AdminPath: "routes", Unique: [][]string{{"name"}},
		Foreign: []ForeignKey{{Field: "service", Ref: "services"}}},
	{Name: "consumers", Singular: "consumer", Schema: ConsumerSchema, AdminPath: "consumers",
		Unique: [][]string{{"username"}, {"custom_id"}}},
	{Name: "upstreams", Singular: "upstream", Schema: UpstreamSchema, AdminPath: "upstreams", Unique: [][]string{{"name"}},
		Foreign: []ForeignKey{{Field: "client_certificate", Ref: "certificates"}}},
	{Name: "targets", Singular: "target", Schema: TargetSchema, Unique: [][]string{{"upstream", "target"}},
		Foreign: []ForeignKey{{Field: "upstream", Ref: "upstreams", Cascade: true}}},
	{Name: "plugins", Singular: "plugin", Schema: PluginSchema, AdminPath: "plugins",
		Unique: [][]string{{"instance_name"}, {"name", "route", "service", "consumer"}},
		Foreign: []ForeignKey{
			{Field: "route", Ref: "routes", Cascade: true},
			{Field: "service", Ref: "services", Cascade: true},
			{Field: "consumer", Ref: "consumers", Cascade: true},
		}},
	{Name: "key_sets", Singular: "key_set", Schema: KeySetSchema, AdminPath: "key-sets", Unique: [][]string{{"name"}}},
	{Name: "keys", Singular: "key", Schema: KeySchema, AdminPath: "keys", Unique: [][]string{{"name"}, {"kid", "set"}},
		Foreign: []ForeignKey{{Field: "set", Ref: "key_sets", Cascade: true}}},
	{Name: "keyauth_credentials", Singular: "keyauth_credential", Schema: KeyAuthSchema, AdminPath: "key-auths", NestedPath: "key-auth",
		Unique:  [][]string{{"key"}},
		Foreign: []ForeignKey{{Field: "consumer", Ref: "consumers", Cascade: true}}},
	{Name: "basicauth_credentials", Singular: "basicauth_credential", Schema: BasicAuthSchema, AdminPath: "basic-auths", NestedPath: "basic-auth",
		Unique:  [][]string{{"username"}},
		Foreign: []ForeignKey{{Field: "consumer", Ref: "consumers", Cascade: true}}},
	{Name: "jwt_secrets", Singular: "jwt_secret", Schema: JWTSecretSchema, AdminPath: "jwts", NestedPath: "jwt",
		Unique:  [][]string{{"key"}},
		Foreign: []ForeignKey{{Field: "consumer", Ref: "consumers", Cascade: true}}},
	{Name: "hmacauth_credentials", Singular: "hmacauth_credential", Schema: HMACAuthSchema, AdminPath: "hmac-auths", NestedPath: "hmac-auth",
		Unique:  [][]string{{"username"}},
		Foreign: []ForeignKey{{Field: "consumer", Ref: "consumers", Cascade: true}}},
	{Name: "oauth2_credentials", Singular: "oauth2_credential", Schema: OAuth2CredentialSchema, AdminPath: "oauth2", NestedPath: "oauth2",
		Unique:  [][]string{{"client_id"}},
		Foreign: []ForeignKey{{Field: "consumer", Ref: "consumers", Cascade: true}}},
	{Name: "acls", Singular: "acl", Schema: ACLSchema, AdminPath: "acls", NestedPath: "acls",
		Unique:  [][]string{{"consumer", "group"}},
		Foreign: []ForeignKey{{Field: "consumer", Ref: "consumers", Cascade: true}}},
}

// KindByName returns the kind with the given table name, or nil.
func KindByName(name string) *Kind {
	for _, k := range Kinds {
		if k.Name == name {
			return k
		}
	}
	return nil
}

// UniqueValue renders the combined value of a unique field set, and false
// when one of its members is null (then the set is not enforced).
func UniqueValue(rec map[string]any, fields []string) (string, bool) {
	parts := make([]string, len(fields))
	for i, f := range fields {
		v := rec[f]
		if m, ok := v.(map[string]any); ok {
			v = m["id"]
		}
		if v == nil {
			// A plugin's scope columns may be null: null is a value there.
			if len(fields) > 1 {
				parts[i] = "<null>"
				continue
			}
			return "", false
		}
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, ":"), true
}

// FKID returns the id a foreign-key field points to, or "".
func FKID(rec map[string]any, field string) string {
	if m, ok := rec[field].(map[string]any); ok {
		id, _ := m["id"].(string)
		return id
	}
	return ""
}

// Transform applies Kong's write-time shorthands and transformations to
// user input (a full body or a PATCH): the service "url" shorthand, an
// upstream hash_on switching the algorithm, basic-auth password hashing. It
// returns a new map. The consumer id is needed to salt basic-auth passwords.
func Transform(k *Kind, input map[string]any) (map[string]any, schema.Errors) {
	out := make(map[string]any, len(input))
	for key, v := range input {
		out[key] = v
	}
	switch k.Name {
	case "services":
		if raw, ok := out["url"]; ok {
			delete(out, "url")
			if raw == nil {
				break
			}
			s, _ := raw.(string)
			u, err := url.Parse(s)
			if err != nil || u.Scheme == "" || u.Host == "" {
				return nil, schema.Errors{"url": "missing host in url"}
			}
			out["protocol"] = u.Scheme
			out["host"] = u.Hostname()
			port := u.Port()
			switch {
			case port != "":
				n, _ := strconv.Atoi(port)
				out["port"] = float64(n)
			case u.Scheme == "https":
				out["port"] = float64(443)
			default:
				out["port"] = float64(80)
			}
			if u.EscapedPath() != "" {
				out["path"] = u.EscapedPath()
			} else {
				out["path"] = nil
			}
		}
	case "upstreams":
		if h, ok := out["hash_on"].(string); ok && h != "none" {
			if _, set := out["algorithm"]; !set {
				out["algorithm"] = "consistent-hashing"
			}
		}
	}
	return out, nil
}

// HashBasicAuthPassword returns what Kong stores for a basic-auth password:
// hex(sha1(password + consumer id)).
func HashBasicAuthPassword(password, consumerID string) string {
	sum := sha1.Sum([]byte(password + consumerID))
	return hex.EncodeToString(sum[:])
}

// Validate processes a complete entity record: it fills defaults, checks the
// schema (and a plugin's config against its own schema), and applies the
// derived values Kong computes (target default port, CA digest, generated
// key-auth keys). The returned errors are Kong's "fields" object.
func Validate(k *Kind, rec map[string]any) (map[string]any, schema.Errors) {
	in := rec
	// Kong's "auto" credential fields: generated when absent.
	copied := false
	for _, f := range autoFields[k.Name] {
		if in[f] == nil || in[f] == "" {
			if !copied {
				in, copied = copyMap(in), true
			}
			in[f] = RandomKey()
		}
	}
	if k.Name == "ca_certificates" {
		if c, ok := in["cert"].(string); ok {
			in = copyMap(in)
			in["cert_digest"] = CertDigest(c)
		}
	}
	out, errs := k.Schema.Process(in, schema.Options{})
	if k.Name == "plugins" {
		errs = validatePlugin(out, rec, errs)
	}
	if k.Name == "jwt_secrets" && len(errs) == 0 {
		errs = checkJWTSecret(out)
	}
	if k.Name == "oauth2_credentials" && len(errs) == 0 {
		errs = hashOAuth2Secret(out)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if k.Name == "targets" {
		out["target"] = NormalizeTarget(out["target"].(string))
	}
	return out, nil
}

// autoFields are the credential fields Kong generates when a write leaves
// them out: the API key, and the jwt / hmac-auth shared secrets.
var autoFields = map[string][]string{
	"keyauth_credentials":  {"key"},
	"jwt_secrets":          {"key", "secret"},
	"hmacauth_credentials": {"secret"},
	"oauth2_credentials":   {"client_id", "client_secret"},
}

func validatePlugin(out, in map[string]any, errs schema.Errors) schema.Errors {
	if errs == nil {
		errs = schema.Errors{}
	}
	name, _ := in["name"].(string)
	def := Plugins[name]
	if name != "" && def == nil {
		errs["name"] = fmt.Sprintf("plugin '%s' not enabled; add it to the 'plugins' configuration property", name)
		return errs
	}
	if def == nil {
		return errs
	}
	if def.NoConsumer && in["consumer"] != nil {
		errs["consumer"] = "value must be null"
	}
	raw, _ := in["config"].(map[string]any)
	if raw == nil {
		raw = map[string]any{}
	}
	if name == "oauth2" && (raw["provision_key"] == nil || raw["provision_key"] == "") {
		// Kong generates the provision key when the config has none.
		raw = copyMap(raw)
		raw["provision_key"] = RandomKey()
	}
	f := def.Config
	cfgOut, cfgErr := schema.ProcessField(&f, raw)
	if cfgErr != nil {
		errs["config"] = cfgErr
	} else if out != nil {
		out["config"] = cfgOut
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// NormalizeTarget adds Kong's default target port 8000 when none is given.
func NormalizeTarget(t string) string {
	if _, _, err := net.SplitHostPort(t); err == nil {
		return t
	}
	if ip := net.ParseIP(strings.Trim(t, "[]")); ip != nil && ip.To4() == nil {
		return "[" + strings.Trim(t, "[]") + "]:8000"
	}
	return t + ":8000"
}

// RandomKey returns a 32-character random key, as Kong generates for
// key-auth credentials created without one.
func RandomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}
