package entity

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/schema"
)

// PluginDef is what the Admin API and the data plane share about a bundled
// plugin: its name, run priority (Kong's handler PRIORITY), version and
// config schema with Kong's defaults.
type PluginDef struct {
	Name     string
	Priority int
	// NoConsumer marks plugins that cannot be scoped to a consumer (auth
	// plugins, Kong's typedefs.no_consumer).
	NoConsumer bool
	Config     schema.Field
}

// PluginVersion is reported for every bundled plugin.
const PluginVersion = KongVersion

func cfg(checks []schema.Check, fields ...schema.Field) schema.Field {
	return schema.Field{Name: "config", Type: schema.Record, Required: true, Fields: fields, EntityChecks: checks}
}

// redisShorthands are rate-limiting's deprecated flat redis_* inputs.
func redisShorthands(plugin string) []schema.Shorthand {
	var out []schema.Shorthand
	for _, f := range []struct {
		name string
		typ  schema.Type
	}{{"host", schema.String}, {"port", schema.Integer}, {"password", schema.String}, {"username", schema.String},
		{"ssl", schema.Boolean}, {"ssl_verify", schema.Boolean}, {"server_name", schema.String},
		{"timeout", schema.Integer}, {"database", schema.Integer}} {
		out = append(out, schema.Shorthand{Name: "redis_" + f.name, Type: f.typ, Path: []string{"redis", f.name},
			Message: plugin + ": config.redis_" + f.name + " is deprecated, please use config.redis." + f.name + " instead"})
	}
	return out
}

func strArrayDef(name string, def ...string) schema.Field {
	f := strArray(name)
	f.Default = append([]string{}, def...)
	return f
}

func optBool(name string, def bool) schema.Field {
	return schema.Field{Name: name, Type: schema.Boolean, Default: def}
}

func num(name string) schema.Field {
	zero := 0.0
	return schema.Field{Name: name, Type: schema.Number, Gt: &zero}
}

func transformList(name string, fields ...string) schema.Field {
	rec := schema.Field{Name: name, Type: schema.Record}
	for _, f := range fields {
		if f == "uri" {
			rec.Fields = append(rec.Fields, str("uri"))
			continue
		}
		if f == "json_types" {
			rec.Fields = append(rec.Fields, schema.Field{Name: f, Type: schema.Array, Default: []string{},
				Elements: &schema.Field{Type: schema.String, OneOf: []any{"boolean", "number", "string"}}})
			continue
		}
		rec.Fields = append(rec.Fields, strArrayDef(f))
	}
	return rec
}

func cidrArray(name string) schema.Field {
	return schema.Field{Name: name, Type: schema.Array, Elements: &schema.Field{Type: schema.String, Check: checkCIDR}}
}

func onlyOneOf(a, b string) schema.Check {
	return func(rec map[string]any) []string {
		if !isEmpty(rec[a]) && !isEmpty(rec[b]) {
			return []string{fmt.Sprintf("only one of these fields must be non-empty: 'config.%s', 'config.%s'", a, b)}
		}
		if isEmpty(rec[a]) && isEmpty(rec[b]) {
			return []string{fmt.Sprintf("at least one of these fields must be non-empty: 'config.%s', 'config.%s'", a, b)}
		}
		return nil
	}
}

// RateLimitPeriods are the rate-limiting windows, shortest first.
var RateLimitPeriods = []string{"second", "minute", "hour", "day", "month", "year"}

func checkRateLimits(rec map[string]any) []string {
	seen := false
	for i, lower := range RateLimitPeriods {
		v1, ok := rec[lower].(float64)
		if !ok {
			continue
		}
		seen = true
		for _, upper := range RateLimitPeriods[i+1:] {
			if v2, ok := rec[upper].(float64); ok && v2 < v1 {
				return []string{fmt.Sprintf("The limit for %s(%.1f) cannot be lower than the limit for %s(%.1f)", upper, v2, lower, v1)}
			}
		}
	}
	if !seen {
		return []string{"at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'"}
	}
	var errs []string
	switch rec["limit_by"] {
	case "header":
		if isEmpty(rec["header_name"]) {
			errs = append(errs, "failed conditional validation given value of field 'config.limit_by'")
		}
	case "path":
		if isEmpty(rec["path"]) {
			errs = append(errs, "failed conditional validation given value of field 'config.limit_by'")
		}
	}
	if rec["policy"] == "redis" {
		if r, _ := rec["redis"].(map[string]any); r == nil || isEmpty(r["host"]) {
			errs = append(errs, "failed conditional validation given value of field 'config.policy'")
		}
	}
	return errs
}

func checkTermination(rec map[string]any) []string {
	if !isEmpty(rec["message"]) && (!isEmpty(rec["body"]) || !isEmpty(rec["content_type"])) {
		return []string{"message cannot be used with content_type or body"}
	}
	return nil
}

var redisRecord = schema.Field{Name: "redis", Type: schema.Record, Fields: []schema.Field{
	str("host"),
	{Name: "port", Type: schema.Integer, Default: 6379, Between: &schema.Range{Min: 0, Max: 65535}},
	{Name: "timeout", Type: schema.Integer, Default: 2000, Between: &schema.Range{Min: 0, Max: 2147483646}},
	{Name: "connect_timeout", Type: schema.Integer, Default: 2000, Between: &schema.Range{Min: 0, Max: 2147483646}},
	{Name: "send_timeout", Type: schema.Integer, Default: 2000, Between: &schema.Range{Min: 0, Max: 2147483646}},
	{Name: "read_timeout", Type: schema.Integer, Default: 2000, Between: &schema.Range{Min: 0, Max: 2147483646}},
	str("username"), str("password"),
	{Name: "database", Type: schema.Integer, Default: 0},
	{Name: "keepalive_pool_size", Type: schema.Integer, Default: 256, Between: &schema.Range{Min: 1, Max: 2147483646}},
	{Name: "keepalive_backlog", Type: schema.Integer, Between: &schema.Range{Min: 0, Max: 2147483646}},
	optBool("ssl", false), optBool("ssl_verify", false),
	str("server_name"),
}}

// Plugins lists the plugins kiln bundles, keyed by name.
var Plugins = map[string]*PluginDef{
	"jwt":       jwtPlugin,
	"hmac-auth": hmacAuthPlugin,
	"http-log":  httpLogPlugin,
	"oauth2":    oauth2Plugin,
	"correlation-id": {Name: "correlation-id", Priority: 100001, Config: cfg(nil,
		schema.Field{Name: "header_name", Type: schema.String, Default: "Kong-Request-ID"},
		oneOf("generator", "uuid#counter", "uuid", "uuid#counter", "tracker"),
		optBool("echo_downstream", false),
	)},
	"cors": {Name: "cors", Priority: 2000, Config: cfg(nil,
		schema.Field{Name: "origins", Type: schema.Array, Elements: &schema.Field{Type: schema.String}},
		strArray("headers"), strArray("exposed_headers"),
		schema.Field{Name: "methods", Type: schema.Array,
			Default:  []string{"GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"},
			Elements: &schema.Field{Type: schema.String, OneOf: []any{"GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"}}},
		schema.Field{Name: "max_age", Type: schema.Number},
		boolean("credentials", false),
		boolean("private_network", false),
		boolean("preflight_continue", false),
		optBool("allow_origin_absent", true),
	)},
	"key-auth": {Name: "key-auth", Priority: 1250, NoConsumer: true, Config: cfg(nil,
		schema.Field{Name: "key_names", Type: schema.Array, Required: true, Default: []string{"apikey"},
			Elements: &schema.Field{Type: schema.String, Check: checkHeaderToken}},
		optBool("hide_credentials", false),
		str("anonymous"),
		boolean("key_in_header", true),
		boolean("key_in_query", true),
		boolean("key_in_body", false),
		boolean("run_on_preflight", true),
		str("realm"),
	)},
	"basic-auth": {Name: "basic-auth", Priority: 1100, NoConsumer: true, Config: cfg(nil,
		str("anonymous"),
		optBool("hide_credentials", false),
		schema.Field{Name: "realm", Type: schema.String, Required: true, Default: "service"},
	)},
	"ip-restriction": {Name: "ip-restriction", Priority: 990, Config: cfg([]schema.Check{atLeastOneOfCfg("allow", "deny")},
		cidrArray("allow"), cidrArray("deny"),
		schema.Field{Name: "status", Type: schema.Number},
		str("message"),
	)},
	"acl": {Name: "acl", Priority: 950, Config: cfg([]schema.Check{onlyOneOf("allow", "deny")},
		strArray("allow"), strArray("deny"),
		optBool("hide_groups_header", false),
		optBool("always_use_authenticated_groups", false),
	)},
	"rate-limiting": {Name: "rate-limiting", Priority: 910, Config: withShorthands(redisShorthands("rate-limiting"), []schema.Check{checkRateLimits},
		num("second"), num("minute"), num("hour"), num("day"), num("month"), num("year"),
		oneOf("limit_by", "consumer", "consumer", "credential", "ip", "service", "header", "path", "consumer-group"),
		str("header_name"),
		schema.Field{Name: "path", Type: schema.String, Check: checkServicePath},
		oneOf("policy", "local", "local", "cluster", "redis"),
		boolean("fault_tolerant", true),
		redisRecord,
		boolean("hide_client_headers", false),
		schema.Field{Name: "error_code", Type: schema.Number, Default: 429, Gt: ptr(0.0)},
		schema.Field{Name: "error_message", Type: schema.String, Default: "API rate limit exceeded"},
		schema.Field{Name: "sync_rate", Type: schema.Number, Default: -1},
	)},
	"request-transformer": {Name: "request-transformer", Priority: 801, Config: cfg(nil,
		schema.Field{Name: "http_method", Type: schema.String, Check: checkMethod},
		transformList("remove", "body", "headers", "querystring"),
		transformList("rename", "body", "headers", "querystring"),
		transformList("replace", "body", "headers", "querystring", "uri"),
		transformList("add", "body", "headers", "querystring"),
		transformList("append", "body", "headers", "querystring"),
	)},
	"response-transformer": {Name: "response-transformer", Priority: 800, Config: cfg(nil,
		transformList("remove", "json", "headers"),
		transformList("rename", "json", "headers"),
		transformList("replace", "json", "json_types", "headers"),
		transformList("add", "json", "json_types", "headers"),
		transformList("append", "json", "json_types", "headers"),
	)},
	"prometheus": {Name: "prometheus", Priority: 13, Config: cfg(nil,
		optBool("per_consumer", false),
		optBool("status_code_metrics", false),
		optBool("ai_metrics", false),
		optBool("latency_metrics", false),
		optBool("bandwidth_metrics", false),
		optBool("upstream_health_metrics", false),
	)},
	"request-termination": {Name: "request-termination", Priority: 2, Config: cfg([]schema.Check{checkTermination},
		schema.Field{Name: "status_code", Type: schema.Integer, Default: 503, Between: &schema.Range{Min: 100, Max: 599}},
		str("message"), str("content_type"), str("body"),
		optBool("echo", false),
		str("trigger"),
	)},
}

func ptr[T any](v T) *T { return &v }

func withShorthands(sh []schema.Shorthand, checks []schema.Check, fields ...schema.Field) schema.Field {
	f := cfg(checks, fields...)
	f.Shorthands = sh
	return f
}

func atLeastOneOfCfg(a, b string) schema.Check {
	return func(rec map[string]any) []string {
		if isEmpty(rec[a]) && isEmpty(rec[b]) {
			return []string{fmt.Sprintf("at least one of these fields must be non-empty: 'config.%s', 'config.%s'", a, b)}
		}
		return nil
	}
}

func checkHeaderToken(v any) string {
	s, _ := v.(string)
	if s == "" {
		return "length must be at least 1"
	}
	for _, c := range s {
		if c <= ' ' || c >= 127 || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return "bad header name '" + s + "', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
		}
	}
	return ""
}

// PluginNames returns the bundled plugin names, sorted.
func PluginNames() []string {
	names := make([]string, 0, len(Plugins))
	for n := range Plugins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
