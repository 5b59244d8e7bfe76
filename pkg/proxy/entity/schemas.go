package entity

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/schema"
)

// Field constructors keep the schema tables below readable.
func str(name string) schema.Field { return schema.Field{Name: name, Type: schema.String} }
func integer(name string, def any, lo, hi float64) schema.Field {
	return schema.Field{Name: name, Type: schema.Integer, Default: def, Between: &schema.Range{Min: lo, Max: hi}}
}
func boolean(name string, def bool) schema.Field {
	return schema.Field{Name: name, Type: schema.Boolean, Default: def, Required: true}
}
func strArray(name string) schema.Field {
	return schema.Field{Name: name, Type: schema.Array, Elements: &schema.Field{Type: schema.String}}
}
func foreign(name, ref string, required bool) schema.Field {
	return schema.Field{Name: name, Type: schema.Foreign, Reference: ref, Required: required}
}
func oneOf(name string, def string, values ...string) schema.Field {
	f := schema.Field{Name: name, Type: schema.String, Required: def != ""}
	if def != "" {
		f.Default = def
	}
	for _, v := range values {
		f.OneOf = append(f.OneOf, v)
	}
	return f
}

var (
	idField        = schema.Field{Name: "id", Type: schema.String, UUID: true, Auto: true}
	createdAtField = schema.Field{Name: "created_at", Type: schema.Integer, Auto: true}
	updatedAtField = schema.Field{Name: "updated_at", Type: schema.Integer, Auto: true}
	tagsField      = schema.Field{Name: "tags", Type: schema.Set, Elements: &schema.Field{Type: schema.String, Check: checkTag}}
)

func checkTag(v any) string {
	s, _ := v.(string)
	if s == "" || strings.ContainsAny(s, ",/") {
		return "invalid tag '" + s + "': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
	}
	return ""
}

var nameRE = regexp.MustCompile(`^[\p{L}\p{N}.\-_~]+$`)

func checkName(v any) string {
	s, _ := v.(string)
	if !nameRE.MatchString(s) {
		return "invalid value '" + s + "': it must only contain alphanumeric and '., -, _, ~' characters"
	}
	return ""
}

var hostRE = regexp.MustCompile(`^(?i)[a-z0-9_]([a-z0-9_\-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_\-]*[a-z0-9_])?)*\.?$`)

func checkHost(v any) string {
	s, _ := v.(string)
	if net.ParseIP(strings.Trim(s, "[]")) != nil || hostRE.MatchString(s) {
		return ""
	}
	return "invalid hostname: " + s
}

var pathRE = regexp.MustCompile(`^/[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$`)

func checkServicePath(v any) string {
	s, _ := v.(string)
	if !strings.HasPrefix(s, "/") {
		return "should start with: /"
	}
	if strings.Contains(s, "//") {
		return "must not have empty segments"
	}
	if !pathRE.MatchString(s) {
		return "invalid path: '" + s + "' (characters outside of the reserved list of RFC 3986 found)"
	}
	return ""
}

func checkRoutePath(v any) string {
	s, _ := v.(string)
	if strings.HasPrefix(s, "~") {
		re := s[1:]
		if !strings.HasPrefix(re, "/") {
			return "should start with: / (fixed path) or ~/ (regex path)"
		}
		if _, err := regexp.Compile(strings.ReplaceAll(re, "(?<", "(?P<")); err != nil {
			return fmt.Sprintf("invalid regex: '%s' (%v)", re, err)
		}
		return ""
	}
	if !strings.HasPrefix(s, "/") {
		return "should start with: / (fixed path) or ~/ (regex path)"
	}
	if strings.Contains(s, "//") {
		return "must not have empty segments"
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == "." || seg == ".." {
			return "non-normalized path, consider use '" + normalizeDots(s) + "' instead"
		}
	}
	return ""
}

func normalizeDots(p string) string {
	var out []string
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case ".":
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	r := strings.Join(out, "/")
	if r == "" {
		return "/"
	}
	return r
}

func checkRouteHost(v any) string {
	s, _ := v.(string)
	h := s
	if i := strings.LastIndex(h, ":"); i > 0 && !strings.Contains(h[:i], ":") {
		h = h[:i]
	}
	if strings.Count(h, "*") > 1 {
		return "invalid wildcard: must have at most one wildcard"
	}
	if strings.Contains(h, "*") {
		if !strings.HasPrefix(h, "*.") && !strings.HasSuffix(h, ".*") {
			return "invalid wildcard: must be placed at leftmost or rightmost label"
		}
		h = strings.NewReplacer("*.", "x.", ".*", ".x").Replace(h)
	}
	return checkHost(h)
}

func checkCIDR(v any) string {
	s, _ := v.(string)
	if net.ParseIP(s) != nil {
		return ""
	}
	if _, _, err := net.ParseCIDR(s); err == nil {
		return ""
	}
	return "invalid ip or cidr range: '" + s + "'"
}

func checkPEMCert(v any) string {
	s, _ := v.(string)
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return "invalid certificate: x509.new: asn1/tasn_dec.c:309:error:068000A8:asn1 encoding routines::wrong tag"
	}
	if _, err := x509.ParseCertificate(b.Bytes); err != nil {
		return "invalid certificate: " + err.Error()
	}
	return ""
}

func checkPEMKey(v any) string {
	s, _ := v.(string)
	if b, _ := pem.Decode([]byte(s)); b == nil {
		return "invalid key: pem.Decode: no PEM data found"
	}
	return ""
}

func checkCertKeyPair(certField, keyField string) schema.Check {
	return func(rec map[string]any) []string {
		c, _ := rec[certField].(string)
		k, _ := rec[keyField].(string)
		if c == "" && k == "" {
			return nil
		}
		if c == "" || k == "" {
			return []string{fmt.Sprintf("all or none of these fields must be set: '%s', '%s'", certField, keyField)}
		}
		if _, err := tls.X509KeyPair([]byte(c), []byte(k)); err != nil {
			return []string{"certificate does not match key"}
		}
		return nil
	}
}

func atLeastOneOf(fields ...string) schema.Check {
	return func(rec map[string]any) []string {
		for _, f := range fields {
			if !isEmpty(rec[f]) {
				return nil
			}
		}
		quoted := make([]string, len(fields))
		for i, f := range fields {
			quoted[i] = "'" + f + "'"
		}
		return []string{"at least one of these fields must be non-empty: " + strings.Join(quoted, ", ")}
	}
}

func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	}
	return false
}

var timeoutRange = func(name string) schema.Field { return integer(name, 60000, 1, 2147483646) }

// Service, Route, ... are the entity schemas.
var (
	ServiceSchema = &schema.Schema{
		Name: "services", EndpointKey: "name",
		Fields: []schema.Field{
			idField, createdAtField, updatedAtField,
			{Name: "name", Type: schema.String, Unique: true, Check: checkName},
			integer("retries", 5, 0, 32767),
			oneOf("protocol", "http", "grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"),
			{Name: "host", Type: schema.String, Required: true, Check: checkHost},
			{Name: "port", Type: schema.Integer, Required: true, Default: 80, Between: &schema.Range{Min: 0, Max: 65535}},
			{Name: "path", Type: schema.String, Check: checkServicePath},
			timeoutRange("connect_timeout"), timeoutRange("write_timeout"), timeoutRange("read_timeout"),
			tagsField,
			foreign("client_certificate", "certificates", false),
			{Name: "tls_verify", Type: schema.Boolean},
			{Name: "tls_verify_depth", Type: schema.Integer, Between: &schema.Range{Min: 0, Max: 64}},
			{Name: "ca_certificates", Type: schema.Array, Elements: &schema.Field{Type: schema.String, UUID: true}},
			boolean("enabled", true),
		},
		Checks: []schema.Check{checkServiceProtocol},
	}

	RouteSchema = &schema.Schema{
		Name: "routes", EndpointKey: "name",
		Fields: []schema.Field{
			idField, createdAtField, updatedAtField,
			{Name: "name", Type: schema.String, Unique: true, Check: checkName},
			{Name: "protocols", Type: schema.Set, Required: true, Default: []string{"http", "https"},
				Elements: &schema.Field{Type: schema.String, OneOf: []any{"grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"}}},
			{Name: "methods", Type: schema.Set, Elements: &schema.Field{Type: schema.String, Check: checkMethod}},
			{Name: "hosts", Type: schema.Array, Elements: &schema.Field{Type: schema.String, Check: checkRouteHost}},
			{Name: "paths", Type: schema.Array, Elements: &schema.Field{Type: schema.String, Check: checkRoutePath}},
			{Name: "headers", Type: schema.Map, Keys: &schema.Field{Type: schema.String, Check: checkHeaderName},
				Values: &schema.Field{Type: schema.Array, Elements: &schema.Field{Type: schema.String}}},
			{Name: "https_redirect_status_code", Type: schema.Integer, Required: true, Default: 426, OneOf: []any{426, 301, 302, 307, 308}},
			{Name: "regex_priority", Type: schema.Integer, Default: 0},
			{Name: "strip_path", Type: schema.Boolean, Required: true, Default: true, DefaultFor: stripPathDefault},
			oneOf("path_handling", "v0", "v0", "v1"),
			boolean("preserve_host", false),
			boolean("request_buffering", true),
			boolean("response_buffering", true),
			{Name: "snis", Type: schema.Set, Elements: &schema.Field{Type: schema.String}},
			{Name: "sources", Type: schema.Set, Elements: &endpointRecord},
			{Name: "destinations", Type: schema.Set, Elements: &endpointRecord},
			tagsField,
			foreign("service", "services", false),
		},
		Checks:      []schema.Check{checkRouteMatch},
		FieldChecks: []schema.FieldCheck{checkGRPCStripPath, checkGRPCMethods},
	}

	ConsumerSchema = &schema.Schema{
		Name: "consumers", EndpointKey: "username",
		Fields: []schema.Field{
			idField, createdAtField, updatedAtField,
			{Name: "username", Type: schema.String, Unique: true},
			{Name: "custom_id", Type: schema.String, Unique: true},
			tagsField,
		},
		Checks: []schema.Check{atLeastOneOf("custom_id", "username")},
	}

	PluginSchema = &schema.Schema{
		Name: "plugins", EndpointKey: "instance_name",
		Fields: []schema.Field{
			idField, createdAtField, updatedAtField,
			{Name: "name", Type: schema.String, Required: true},
			{Name: "instance_name", Type: schema.String, Unique: true, Check: checkName},
			foreign("route", "routes", false),
			foreign("service", "services", false),
			foreign("consumer", "consumers", false),
			// config is validated against the named plugin's schema by ProcessPlugin.
			{Name: "config", Type: schema.Map, Keys: &schema.Field{Type: schema.String}, Values: &anyField},
			{Name: "protocols", Type: schema.Set, Required: true, Default: []string{"grpc", "grpcs", "http", "https"},
				Elements: &schema.Field{Type: schema.String, OneOf: []any{"grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"}}},
			boolean("enabled", true),
			tagsField,
		},
	}

	UpstreamSchema = &schema.Schema{
		Name: "upstreams", EndpointKey: "name",
		Fields: []schema.Field{
			idField, createdAtField, updatedAtField,
			{Name: "name", Type: schema.String, Required: true, Unique: true, Check: checkUpstreamName},
			oneOf("algorithm", "round-robin", "consistent-hashing", "least-connections", "round-robin", "latency"),
			oneOf("hash_on", "none", hashInputs...),
			oneOf("hash_fallback", "none", hashInputs...),
			str("hash_on_header"), str("hash_fallback_header"),
			str("hash_on_cookie"),
			{Name: "hash_on_cookie_path", Type: schema.String, Required: true, Default: "/", StartsWith: "/"},
			str("hash_on_query_arg"), str("hash_fallback_query_arg"),
			str("hash_on_uri_capture"), str("hash_fallback_uri_capture"),
			integer("slots", 10000, 10, 65536),
			healthchecksField,
			tagsField,
			{Name: "host_header", Type: schema.String, Check: checkHost},
			foreign("client_certificate", "certificates", false),
			boolean("use_srv_name", false),
		},
		Checks: []schema.Check{checkUpstreamHash},
	}

	TargetSchema = &schema.Schema{
		Name: "targets", EndpointKey: "target",
		Fields: []schema.Field{
			idField,
			{Name: "created_at", Type: schema.Number, Auto: true},
			{Name: "updated_at", Type: schema.Number, Auto: true},
			foreign("upstream", "upstreams", true),
			{Name: "target", Type: schema.String, Required: true, Check: checkTarget},
			integer("weight", 100, 0, 65535),
			tagsField,
		},
	}

	CertificateSchema = &schema.Schema{
		Name: "certificates",
		Fields: []schema.Field{
			idField, createdAtField, updatedAtField,
			{Name: "cert", Type: schema.String, Required: true, Check: checkPEMCert},
			{Name: "key", Type: schema.String, Required: true, Check: checkPEMKey},
			{Name: "cert_alt", Type: schema.String, Check: checkPEMCert},
			{Name: "key_alt", Type: schema.String, Check: checkPEMKey},
			// snis is Kong's transient shorthand: names of SNI rows to attach.
			{Name: "snis", Type: schema.Array, Elements: &schema.Field{Type: schema.String, Check: checkSNIName}},
			tagsField,
		},
		Checks: []schema.Check{checkCertKeyPair("cert", "key"), checkCertKeyPair("cert_alt", "key_alt")},
	}

	SNISchema = &schema.Schema{
		Name: "snis", EndpointKey: "name",
		Fields: []schema.Field{
			idField, createdAtField, updatedAtField,
			{Name: "name", Type: schema.String, Required: true, Unique: true, Check: checkSNIName},
			tagsField,
			foreign("certificate", "certificates", true),
		},
	}

	CACertificateSchema = &schema.Schema{
		Name: "ca_certificates",
		Fields: []schema.Field{
			idField, createdAtField, updatedAtField,
			{Name: "cert", Type: schema.String, Required: true, Check: checkCACert},
			{Name: "cert_digest", Type: schema.String, Unique: true},
			tagsField,
		},
	}

	KeyAuthSchema = &schema.Schema{
		Name: "keyauth_credentials", EndpointKey: "key",
		Fields: []schema.Field{
			idField, createdAtField,
			foreign("consumer", "consumers", true),
			{Name: "key", Type: schema.String, Unique: true, Auto: true, Required: true},
			{Name: "ttl", Type: schema.Integer},
			tagsField,
		},
	}

	BasicAuthSchema = &schema.Schema{
		Name: "basicauth_credentials", EndpointKey: "username",
		Fields: []schema.Field{
			idField, createdAtField,
			foreign("consumer", "consumers", true),
			{Name: "username", Type: schema.String, Required: true, Unique: true},
			{Name: "password", Type: schema.String, Required: true},
			tagsField,
		},
	}

	ACLSchema = &schema.Schema{
		Name: "acls",
		Fields: []schema.Field{
			idField, createdAtField,
			foreign("consumer", "consumers", true),
			{Name: "group", Type: schema.String, Required: true},
			tagsField,
		},
	}
)

var anyField = schema.Field{Type: ""}

var endpointRecord = schema.Field{Type: schema.Record, Fields: []schema.Field{
	{Name: "ip", Type: schema.String, Check: checkCIDR},
	{Name: "port", Type: schema.Integer, Between: &schema.Range{Min: 0, Max: 65535}},
}}

var hashInputs = []string{"none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture"}

func intList(v ...int) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func statusList(name string, def []any) schema.Field {
	return schema.Field{Name: name, Type: schema.Array, Default: def,
		Elements: &schema.Field{Type: schema.Integer, Between: &schema.Range{Min: 100, Max: 999}}}
}

func counter(name string) schema.Field { return integer(name, 0, 0, 255) }

var healthchecksField = schema.Field{Name: "healthchecks", Type: schema.Record, Fields: []schema.Field{
	{Name: "active", Type: schema.Record, Fields: []schema.Field{
		oneOf("type", "http", "tcp", "http", "https", "grpc", "grpcs"),
		{Name: "timeout", Type: schema.Number, Default: 1, Between: &schema.Range{Min: 0, Max: 65535}},
		integer("concurrency", 10, 1, 2147483648),
		{Name: "http_path", Type: schema.String, Default: "/", StartsWith: "/"},
		str("https_sni"),
		{Name: "https_verify_certificate", Type: schema.Boolean, Default: true},
		{Name: "headers", Type: schema.Map, Keys: &schema.Field{Type: schema.String},
			Values: &schema.Field{Type: schema.Array, Elements: &schema.Field{Type: schema.String}}},
		{Name: "healthy", Type: schema.Record, Fields: []schema.Field{
			integer("interval", 0, 0, 65535),
			statusList("http_statuses", intList(200, 302)),
			counter("successes"),
		}},
		{Name: "unhealthy", Type: schema.Record, Fields: []schema.Field{
			integer("interval", 0, 0, 65535),
			statusList("http_statuses", intList(429, 404, 500, 501, 502, 503, 504, 505)),
			counter("tcp_failures"), counter("timeouts"), counter("http_failures"),
		}},
	}},
	{Name: "passive", Type: schema.Record, Fields: []schema.Field{
		oneOf("type", "http", "tcp", "http", "https", "grpc", "grpcs"),
		{Name: "healthy", Type: schema.Record, Fields: []schema.Field{
			statusList("http_statuses", intList(200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308)),
			counter("successes"),
		}},
		{Name: "unhealthy", Type: schema.Record, Fields: []schema.Field{
			statusList("http_statuses", intList(429, 500, 503)),
			counter("tcp_failures"), counter("timeouts"), counter("http_failures"),
		}},
	}},
	{Name: "threshold", Type: schema.Number, Default: 0, Between: &schema.Range{Min: 0, Max: 100}},
}}

func checkMethod(v any) string {
	s, _ := v.(string)
	if s == "" || strings.ToUpper(s) != s {
		return "invalid value: " + s
	}
	return ""
}

func checkHeaderName(v any) string {
	s, _ := v.(string)
	if strings.EqualFold(s, "host") {
		return "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
	}
	return ""
}

func checkSNIName(v any) string {
	s, _ := v.(string)
	if net.ParseIP(s) != nil {
		return "must not be an IP"
	}
	if strings.Contains(s, ":") {
		return "must not have a port"
	}
	return checkRouteHost(s)
}

func checkUpstreamName(v any) string {
	s, _ := v.(string)
	if net.ParseIP(s) != nil {
		return "Invalid name ('" + s + "'); no ip addresses allowed"
	}
	if strings.Contains(s, ":") {
		return "Invalid name ('" + s + "'); no port allowed"
	}
	if checkHost(s) != "" {
		return "Invalid name ('" + s + "'); must be a valid hostname"
	}
	return ""
}

func checkTarget(v any) string {
	s, _ := v.(string)
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		host = strings.Trim(s, "[]")
	}
	if checkHost(host) != "" {
		return "Invalid target ('" + s + "'); not a valid hostname or ip address"
	}
	return ""
}

func checkCACert(v any) string {
	s, _ := v.(string)
	rest := []byte(s)
	b, rest := pem.Decode(rest)
	if b == nil {
		return "invalid certificate: x509.new: error:068000A8:asn1 encoding routines::wrong tag"
	}
	if more, _ := pem.Decode(rest); more != nil {
		return "please submit only one certificate at a time"
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "invalid certificate: " + err.Error()
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		return "certificate does not appear to be a CA because it is missing the \"CA\" basic constraint"
	}
	if time.Now().After(c.NotAfter) {
		return "certificate expired, \"Not After\" time is in the past"
	}
	return ""
}

// CertDigest is the sha256 hex digest Kong stores as ca_certificates.cert_digest.
func CertDigest(pemCert string) string {
	b, _ := pem.Decode([]byte(pemCert))
	if b == nil {
		return ""
	}
	sum := sha256.Sum256(b.Bytes)
	return hex.EncodeToString(sum[:])
}

func listOf(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func checkServiceProtocol(rec map[string]any) []string {
	proto, _ := rec["protocol"].(string)
	var errs []string
	switch proto {
	case "tcp", "tls", "tls_passthrough", "udp", "grpc", "grpcs":
		if rec["path"] != nil {
			errs = append(errs, "value must be null when 'protocol' is '"+proto+"'")
		}
	}
	if proto != "https" && proto != "tls" && proto != "wss" {
		for _, f := range []string{"client_certificate", "tls_verify", "tls_verify_depth", "ca_certificates"} {
			if !isEmpty(rec[f]) {
				errs = append(errs, fmt.Sprintf("failed conditional validation given value of field 'protocol'"))
				break
			}
		}
	}
	return errs
}

// grpcOnly reports whether a route's protocols are gRPC's (grpc, grpcs):
// Kong's grpc subschema applies then (protocols of two families are
// refused).
func grpcOnly(protocols any) bool {
	var first string
	switch p := protocols.(type) {
	case []any:
		if len(p) > 0 {
			first, _ = p[0].(string)
		}
	case []string:
		if len(p) > 0 {
			first = p[0]
		}
	case string:
		first = p
	}
	return first == "grpc" || first == "grpcs"
}

// stripPathDefault is strip_path's default: false on a gRPC route (a gRPC
// method's path is the whole path), true otherwise.
func stripPathDefault(input map[string]any) any {
	return !grpcOnly(input["protocols"])
}

// checkGRPCStripPath refuses strip_path on a gRPC route, as Kong does.
func checkGRPCStripPath(rec map[string]any) (string, string) {
	if strip, _ := rec["strip_path"].(bool); strip && grpcOnly(rec["protocols"]) {
		return "strip_path", "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"
	}
	return "", ""
}

// checkGRPCMethods refuses methods on a gRPC route, as Kong does (every
// gRPC call is a POST).
func checkGRPCMethods(rec map[string]any) (string, string) {
	if !isEmpty(rec["methods"]) && grpcOnly(rec["protocols"]) {
		return "methods", "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"
	}
	return "", ""
}

func checkRouteMatch(rec map[string]any) []string {
	protos := listOf(rec["protocols"])
	has := func(f string) bool { return !isEmpty(rec[f]) }
	var errs []string
	group := map[string]int{"http": 0, "https": 0, "ws": 0, "wss": 0, "tcp": 1, "tls": 1, "udp": 1, "tls_passthrough": 2, "grpc": 3, "grpcs": 3}
	if len(protos) > 1 {
		g := group[protos[0]]
		for _, p := range protos[1:] {
			if group[p] != g {
				errs = append(errs, "mixing http and non-http protocols is not allowed")
				return errs
			}
		}
	}
	isHTTP, isGRPC, isStream := false, false, false
	httpsLike := false
	for _, p := range protos {
		switch group[p] {
		case 0:
			isHTTP = true
		case 3:
			isGRPC = true
		default:
			isStream = true
		}
		if p == "https" || p == "grpcs" || p == "tls" || p == "tls_passthrough" || p == "wss" {
			httpsLike = true
		}
	}
	if has("snis") && !httpsLike {
		errs = append(errs, "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls', 'tls_passthrough' or 'wss'")
	}
	switch {
	case isHTTP || isGRPC:
		if !(has("methods") || has("hosts") || has("headers") || has("paths") || (httpsLike && has("snis"))) {
			p := protos[0]
			if len(protos) > 1 && protos[0] == "http" {
				p = "http"
			}
			if httpsLike && !contains(protos, "http") {
				errs = append(errs, fmt.Sprintf("must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is '%s'", p))
			} else {
				errs = append(errs, fmt.Sprintf("must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is '%s'", p))
			}
		}
	case isStream:
		if !(has("sources") || has("destinations") || has("snis")) {
			errs = append(errs, "must set one of 'sources', 'destinations', 'snis' when 'protocols' is '"+protos[0]+"'")
		}
	}
	return errs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func checkUpstreamHash(rec map[string]any) []string {
	on, _ := rec["hash_on"].(string)
	fb, _ := rec["hash_fallback"].(string)
	var errs []string
	need := map[string]string{"header": "header", "cookie": "cookie", "query_arg": "query_arg", "uri_capture": "uri_capture"}
	if p, ok := need[on]; ok && isEmpty(rec["hash_on_"+p]) {
		errs = append(errs, fmt.Sprintf("failed conditional validation given value of field 'hash_on'"))
	}
	if p, ok := need[fb]; ok && p != "cookie" && isEmpty(rec["hash_fallback_"+p]) {
		errs = append(errs, fmt.Sprintf("failed conditional validation given value of field 'hash_fallback'"))
	}
	if on == "none" && fb != "none" {
		errs = append(errs, "failed conditional validation given value of field 'hash_on'")
	}
	if fb == "cookie" || (on == "cookie" && fb != "none") || (on == fb && on != "none" && on != "header" && on != "query_arg" && on != "uri_capture") {
		errs = append(errs, "failed conditional validation given value of field 'hash_fallback'")
	}
	return errs
}

// TagSchema describes the read-only /tags collection (GET /schemas/tags).
var TagSchema = &schema.Schema{
	Name: "tags",
	Fields: []schema.Field{
		{Name: "entity_name", Type: schema.String, Required: true},
		{Name: "entity_id", Type: schema.String, Required: true, UUID: true},
		{Name: "tag", Type: schema.String, Required: true},
	},
}

// KeySetSchema and KeySchema are Kong's key storage (/key-sets, /keys):
// JWK or PEM keys that plugins can reference.
var (
	KeySetSchema = &schema.Schema{
		Name: "key_sets", EndpointKey: "name",
		Fields: []schema.Field{
			idField, createdAtField, updatedAtField,
			{Name: "name", Type: schema.String, Unique: true},
			tagsField,
		},
	}
	KeySchema = &schema.Schema{
		Name: "keys", EndpointKey: "name",
		Fields: []schema.Field{
			idField, createdAtField, updatedAtField,
			foreign("set", "key_sets", false),
			{Name: "name", Type: schema.String, Unique: true},
			{Name: "kid", Type: schema.String, Required: true},
			{Name: "jwk", Type: schema.String, Check: checkJWK},
			{Name: "pem", Type: schema.Record, Nullable: true, Fields: []schema.Field{
				{Name: "private_key", Type: schema.String, Check: checkPEMKey},
				{Name: "public_key", Type: schema.String, Check: checkPEMPublic},
			}},
			tagsField,
		},
		Checks: []schema.Check{checkKeyMaterial},
	}
)

func checkJWK(v any) string {
	s, _ := v.(string)
	var jwk map[string]any
	if err := json.Unmarshal([]byte(s), &jwk); err != nil {
		return "could not json decode jwk string"
	}
	if _, ok := jwk["kty"].(string); !ok {
		return "could not load JWK, likely not a valid key"
	}
	return ""
}

func checkPEMPublic(v any) string {
	s, _ := v.(string)
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return "could not load public key"
	}
	if _, err := x509.ParsePKIXPublicKey(b.Bytes); err != nil {
		if _, err := x509.ParsePKCS1PublicKey(b.Bytes); err != nil {
			return "could not load public key"
		}
	}
	return ""
}

func checkKeyMaterial(rec map[string]any) []string {
	jwk, hasJWK := rec["jwk"].(string)
	pemRec, _ := rec["pem"].(map[string]any)
	hasPEM := pemRec != nil && (!isEmpty(pemRec["private_key"]) || !isEmpty(pemRec["public_key"]))
	switch {
	case hasJWK && hasPEM:
		return []string{"only one of these fields must be non-empty: 'jwk', 'pem'"}
	case !hasJWK && !hasPEM:
		return []string{"at least one of these fields must be non-empty: 'jwk', 'pem'"}
	case hasJWK:
		var parsed map[string]any
		_ = json.Unmarshal([]byte(jwk), &parsed)
		if kid, ok := parsed["kid"].(string); ok && kid != rec["kid"] {
			return []string{"kid in jwk.kid must be equal to keys.kid"}
		}
	}
	return nil
}
