package declarative

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

const sample = `
_format_version: "3.0"
_comment: top-level comments are ignored
services:
- name: httpbin
  url: http://127.0.0.1:9000/anything
  routes:
  - name: r1
    paths: ["/httpbin"]
    plugins:
    - name: key-auth
  plugins:
  - name: rate-limiting
    config: {minute: 5}
routes:
- name: r2
  hosts: [example.com]
  service: httpbin
consumers:
- username: alice
  keyauth_credentials:
  - key: alice-key
  basicauth_credentials:
  - username: alice
    password: s3cret
  acls:
  - group: admins
  jwt_secrets:
  - key: alice-iss
    secret: alice-jwt-secret
  hmacauth_credentials:
  - username: alice-hmac
    secret: alice-hmac-secret
upstreams:
- name: backend
  targets:
  - target: 127.0.0.1
  - target: 127.0.0.2:9000
    weight: 50
plugins:
- name: cors
- name: acl
  route: r2
  config: {allow: [admins]}
`

func TestParseNestedAndDeterministic(t *testing.T) {
	now := time.Unix(1700000000, 0)
	a, err := Parse([]byte(sample), now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte(sample), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{"services": 1, "routes": 2, "plugins": 4, "consumers": 1, "keyauth_credentials": 1,
		"basicauth_credentials": 1, "acls": 1, "jwt_secrets": 1, "hmacauth_credentials": 1, "upstreams": 1, "targets": 2}
	for kind, n := range counts {
		if len(a[kind]) != n {
			t.Errorf("%s: %d entities, want %d", kind, len(a[kind]), n)
		}
		for i := range a[kind] {
			if a[kind][i]["id"] != b[kind][i]["id"] {
				t.Errorf("%s[%d]: id not deterministic", kind, i)
			}
		}
	}
	svc := a["services"][0]
	if svc["id"] != entity.DeterministicID("services", "httpbin") || svc["path"] != "/anything" || svc["port"] != 9000.0 {
		t.Errorf("service: %v", svc)
	}
	for _, r := range a["routes"] {
		if entity.FKID(r, "service") != svc["id"] {
			t.Errorf("route %v not linked to service", r["name"])
		}
	}
	// Kong's key rules: a target's address as written plus its upstream,
	// cache keys for plugins and ACLs.
	upID := a["upstreams"][0]["id"].(string)
	consumerID := a["consumers"][0]["id"].(string)
	wantIDs := map[string]string{
		"targets":  entity.DeterministicID("targets", "127.0.0.1:"+upID),
		"acls":     entity.DeterministicID("acls", "acls:"+consumerID+":admins"),
		"upstream": entity.DeterministicID("upstreams", "backend"),
	}
	if a["targets"][0]["id"] != wantIDs["targets"] || a["acls"][0]["id"] != wantIDs["acls"] || upID != wantIDs["upstream"] {
		t.Errorf("ids: target %v acl %v upstream %v", a["targets"][0]["id"], a["acls"][0]["id"], upID)
	}
	plugins := map[string]bool{}
	for _, p := range a["plugins"] {
		plugins[p["id"].(string)] = true
	}
	for _, key := range []string{"plugins:cors:::", "plugins:rate-limiting::" + svc["id"].(string) + ":"} {
		if !plugins[entity.DeterministicID("plugins", key)] {
			t.Errorf("no plugin with the id of cache key %q", key)
		}
	}
	if a["targets"][0]["target"] != "127.0.0.1:8000" {
		t.Errorf("target default port: %v", a["targets"][0]["target"])
	}
	if pw := a["basicauth_credentials"][0]["password"]; pw != entity.HashBasicAuthPassword("s3cret", a["consumers"][0]["id"].(string)) {
		t.Errorf("password not hashed: %v", pw)
	}
	st := store.NewMemory()
	if err := st.Replace(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	cfg, _ := st.Snapshot(context.Background())
	out, err := Export(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The export loads back to the same entities.
	again, err := Parse(out, now)
	if err != nil {
		t.Fatalf("re-parse export: %v\n%s", err, out)
	}
	for kind, n := range counts {
		if len(again[kind]) != n {
			t.Errorf("export round trip %s: %d", kind, len(again[kind]))
		}
	}
	if again["basicauth_credentials"][0]["password"] != a["basicauth_credentials"][0]["password"] {
		t.Error("_transform: false re-hashed the password")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ doc, want string }{
		{`services: []`, "_format_version"},
		{`_format_version: "9.9"`, "expected one of"},
		{"_format_version: \"3.0\"\nservices:\n- name: x\n", "host: required field missing"},
		{"_format_version: \"3.0\"\nroutes:\n- paths: [/x]\n  service: nope\n", "could not find service 'nope'"},
		{"_format_version: \"3.0\"\nwidgets: []\n", "unknown entity collection"},
		{"_format_version: \"3.0\"\nservices: {a: 1}\n", "expected an array"},
		{"{", "failed parsing"},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(tc.doc), time.Now())
		var de *Error
		if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.doc, err, tc.want)
		}
	}
	_, err := Parse([]byte("_format_version: \"3.0\"\nservices:\n- name: x\n  port: 99999\n"), time.Now())
	de := err.(*Error)
	if len(de.Entities) != 1 || de.Entities[0].EntityType != "service" || *de.Entities[0].EntityName != "x" ||
		de.Entities[0].Errors[0].Field == "" {
		t.Fatalf("flattened: %+v", de.Entities)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte(`{"_format_version":"3.0","services":[{"host":"a","routes":[{"paths":["/"]}]}]}`))
	f.Add([]byte("_format_version: \"3.0\"\nconsumers:\n- custom_id: x\n  acls: [{group: g}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := Parse(data, time.Unix(0, 0))
		if err != nil {
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		// Whatever parses must load into a store or fail with a store error, never panic.
		_ = store.NewMemory().Replace(context.Background(), recs)
	})
}
