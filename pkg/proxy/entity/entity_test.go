package entity

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestUUIDv5(t *testing.T) {
	// RFC 4122 DNS namespace, checked against Python's uuid.uuid5.
	if got := UUIDv5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "example.com"); got != "cfbff0d1-9375-5685-968c-48ce8b15ae17" {
		t.Fatalf("UUIDv5 = %s", got)
	}
	if a, b := NewID(), NewID(); a == b || len(a) != 36 || a[14] != '4' {
		t.Fatalf("NewID: %s %s", a, b)
	}
}

func TestValidateDefaults(t *testing.T) {
	tests := []struct {
		kind  string
		in    string
		field string
		want  any
	}{
		{"services", `{"host":"example.com"}`, "retries", 5.0},
		{"services", `{"host":"example.com"}`, "protocol", "http"},
		{"services", `{"host":"example.com"}`, "read_timeout", 60000.0},
		{"services", `{"host":"example.com"}`, "path", nil},
		{"routes", `{"paths":["/x"]}`, "protocols", []any{"http", "https"}},
		{"routes", `{"paths":["/x"]}`, "strip_path", true},
		{"routes", `{"paths":["/pkg.Svc/"],"protocols":["grpc","grpcs"]}`, "strip_path", false},
		{"routes", `{"paths":["/x"],"protocols":["https"]}`, "strip_path", true},
		{"routes", `{"paths":["/x"]}`, "path_handling", "v0"},
		{"routes", `{"paths":["/x"]}`, "https_redirect_status_code", 426.0},
		{"routes", `{"paths":["/x"]}`, "preserve_host", false},
		{"upstreams", `{"name":"up"}`, "slots", 10000.0},
		{"upstreams", `{"name":"up"}`, "algorithm", "round-robin"},
		{"targets", `{"target":"10.0.0.1","upstream":{"id":"cfbff0d1-9375-5685-968c-48ce8b15ae17"}}`, "target", "10.0.0.1:8000"},
		{"targets", `{"target":"10.0.0.1:80","upstream":{"id":"cfbff0d1-9375-5685-968c-48ce8b15ae17"}}`, "weight", 100.0},
	}
	for _, tc := range tests {
		t.Run(tc.kind+"/"+tc.field, func(t *testing.T) {
			out, errs := Validate(KindByName(tc.kind), decode(t, tc.in))
			if errs != nil {
				t.Fatalf("errors: %v", errs)
			}
			if !reflect.DeepEqual(out[tc.field], tc.want) {
				t.Fatalf("%s = %#v, want %#v", tc.field, out[tc.field], tc.want)
			}
		})
	}
}

func TestUpstreamHealthcheckDefaults(t *testing.T) {
	out, errs := Validate(KindByName("upstreams"), map[string]any{"name": "u"})
	if errs != nil {
		t.Fatal(errs)
	}
	c, err := NewConfig(1, Records{"upstreams": {out}})
	if err != nil {
		t.Fatal(err)
	}
	hc := c.Upstreams[0].Healthchecks
	if hc.Active.Timeout != 1 || hc.Active.Concurrency != 10 || hc.Active.HTTPPath != "/" ||
		!reflect.DeepEqual(hc.Active.Healthy.HTTPStatuses, []int{200, 302}) ||
		!reflect.DeepEqual(hc.Passive.Unhealthy.HTTPStatuses, []int{429, 500, 503}) ||
		len(hc.Passive.Healthy.HTTPStatuses) != 19 {
		t.Fatalf("healthchecks defaults: %+v", hc)
	}
	if c.UpstreamByName("u") == nil || c.Hash == EmptyHash {
		t.Fatal("lookup/hash")
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		kind, in, wantMsg string
	}{
		{"services", `{}`, "schema violation (host: required field missing)"},
		{"services", `{"host":"x","port":70000}`, "schema violation (port: value should be between 0 and 65535)"},
		{"services", `{"host":"x","protocol":"ftp"}`, "expected one of:"},
		{"services", `{"host":"x","bogus":1}`, "schema violation (bogus: unknown field)"},
		{"services", `{"host":"x","retries":"a"}`, "expected an integer"},
		{"routes", `{}`, "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"},
		{"routes", `{"paths":["x"]}`, "should start with: / (fixed path) or ~/ (regex path)"},
		{"routes", `{"hosts":["*.a.*"]}`, "at most one wildcard"},
		{"routes", `{"paths":["/p.S/"],"protocols":["grpc"],"strip_path":true}`, "schema violation (strip_path: cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs')"},
		{"routes", `{"paths":["/p.S/"],"protocols":["grpcs"],"methods":["POST"]}`, "schema violation (methods: cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs')"},
		{"consumers", `{}`, "at least one of these fields must be non-empty: 'custom_id', 'username'"},
		{"plugins", `{"name":"nope"}`, "plugin 'nope' not enabled"},
		{"plugins", `{"name":"rate-limiting","config":{}}`, "at least one of these fields must be non-empty: 'config.second'"},
		{"plugins", `{"name":"rate-limiting","config":{"second":10,"minute":20,"hour":5}}`, "The limit for hour(5.0) cannot be lower than the limit for second(10.0)"},
		{"plugins", `{"name":"key-auth","consumer":{"id":"cfbff0d1-9375-5685-968c-48ce8b15ae17"}}`, "consumer: value must be null"},
		{"plugins", `{"name":"acl","config":{"allow":["a"],"deny":["b"]}}`, "only one of these fields"},
		{"upstreams", `{"name":"10.0.0.1"}`, "no ip addresses allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, errs := Validate(KindByName(tc.kind), decode(t, tc.in))
			if errs == nil {
				t.Fatal("no error")
			}
			if msg := errs.Message(); !strings.Contains(msg, tc.wantMsg) {
				t.Fatalf("message %q does not contain %q", msg, tc.wantMsg)
			}
		})
	}
}

func TestPluginDefaults(t *testing.T) {
	out, errs := Validate(KindByName("plugins"), map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 5.0}})
	if errs != nil {
		t.Fatal(errs)
	}
	cfg := out["config"].(map[string]any)
	for k, want := range map[string]any{"limit_by": "consumer", "policy": "local", "error_code": 429.0,
		"error_message": "API rate limit exceeded", "fault_tolerant": true, "hour": nil} {
		if !reflect.DeepEqual(cfg[k], want) {
			t.Errorf("config.%s = %#v, want %#v", k, cfg[k], want)
		}
	}
	for _, name := range PluginNames() {
		in := map[string]any{"name": name, "config": map[string]any{}}
		switch name {
		case "rate-limiting":
			in["config"] = map[string]any{"second": 1.0}
		case "acl":
			in["config"] = map[string]any{"allow": []any{"g"}}
		case "ip-restriction":
			in["config"] = map[string]any{"deny": []any{"10.0.0.0/8"}}
		case "http-log":
			in["config"] = map[string]any{"http_endpoint": "http://127.0.0.1:9/log"}
		case "oauth2":
			in["config"] = map[string]any{"enable_client_credentials": true}
		}
		if _, errs := Validate(KindByName("plugins"), in); errs != nil {
			t.Errorf("%s: %v", name, errs)
		}
	}
}

func TestTransformServiceURL(t *testing.T) {
	tests := []struct {
		url, proto, host, path string
		port                   float64
	}{
		{"http://127.0.0.1:8080/get", "http", "127.0.0.1", "/get", 8080},
		{"https://example.com", "https", "example.com", "", 443},
		{"http://example.com", "http", "example.com", "", 80},
	}
	for _, tc := range tests {
		out, errs := Transform(KindByName("services"), map[string]any{"url": tc.url})
		if errs != nil {
			t.Fatal(errs)
		}
		if out["protocol"] != tc.proto || out["host"] != tc.host || out["port"] != tc.port {
			t.Errorf("%s → %v", tc.url, out)
		}
		if p, _ := out["path"].(string); p != tc.path {
			t.Errorf("%s path %q", tc.url, p)
		}
	}
}

func TestRateLimitingRedisShorthands(t *testing.T) {
	out, errs := Validate(KindByName("plugins"), map[string]any{"name": "rate-limiting",
		"config": map[string]any{"minute": 1.0, "policy": "redis", "redis_host": "localhost", "redis_port": 6380.0}})
	if errs != nil {
		t.Fatal(errs)
	}
	redis := out["config"].(map[string]any)["redis"].(map[string]any)
	if redis["host"] != "localhost" || redis["port"] != 6380.0 || out["config"].(map[string]any)["redis_host"] != nil {
		t.Fatalf("redis: %v", out["config"])
	}
}
