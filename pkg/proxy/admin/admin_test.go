package admin

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/declarative"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

type client struct {
	t    *testing.T
	base string
}

type resp struct {
	status int
	body   map[string]any
	raw    string
}

func (c *client) do(method, path, contentType, body string) resp {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			c.t.Fatalf("%s %s: non-JSON body %q", method, path, raw)
		}
	}
	return r
}

func (c *client) json(method, path, body string) resp {
	return c.do(method, path, "application/json", body)
}

func (c *client) form(method, path, body string) resp {
	return c.do(method, path, "application/x-www-form-urlencoded", body)
}

func (c *client) expect(r resp, status int) resp {
	c.t.Helper()
	if r.status != status {
		c.t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	return r
}

func newClient(t *testing.T, st store.Store) (*client, *Server) {
	srv := New(Options{Store: st, NodeID: "3b7a8f9e-2c1d-4e5f-8a9b-0c1d2e3f4a5b", Hostname: "test"})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &client{t: t, base: ts.URL}, srv
}

func TestServicesAndRoutes(t *testing.T) {
	c, _ := newClient(t, &notOff{store.NewMemory()})
	svc := c.expect(c.json("POST", "/services", `{"name":"httpservice","url":"http://127.0.0.1:9999/base"}`), 201).body
	if svc["host"] != "127.0.0.1" || svc["port"] != 9999.0 || svc["path"] != "/base" || svc["retries"] != 5.0 || svc["url"] != nil {
		t.Fatalf("service: %v", svc)
	}
	if _, ok := svc["tls_verify"]; !ok {
		t.Fatal("null fields must be present")
	}
	// Form body with Kong's array syntax, nested under the service.
	route := c.expect(c.form("POST", "/services/httpservice/routes", "name=r&paths[]=/httpbin&paths[]=/other&strip_path=false"), 201).body
	if p := route["paths"].([]any); len(p) != 2 || p[0] != "/httpbin" || route["strip_path"] != false {
		t.Fatalf("route paths: %v", route)
	}
	if route["service"].(map[string]any)["id"] != svc["id"] {
		t.Fatalf("route service: %v", route["service"])
	}
	c.expect(c.json("POST", "/services/httpservice/routes", `{"name":"r2","paths":["/x"],"methods":["GET"]}`), 201)
	c.expect(c.json("GET", "/routes/r/service", ""), 200)
	list := c.expect(c.json("GET", "/services/httpservice/routes", ""), 200).body
	if n := len(list["data"].([]any)); n != 2 {
		t.Fatalf("nested list: %d", n)
	}
	// A route under the wrong service is not found.
	c.expect(c.json("POST", "/services", `{"name":"other","host":"example.com"}`), 201)
	c.expect(c.json("GET", "/services/other/routes/r", ""), 404)
	c.expect(c.json("GET", "/services/httpservice/routes/r", ""), 200)

	dup := c.expect(c.json("POST", "/services", `{"name":"httpservice","host":"x"}`), 409).body
	if dup["code"] != 5.0 || dup["message"] != `UNIQUE violation detected on '{name="httpservice"}'` {
		t.Fatalf("409 body: %v", dup)
	}
	bad := c.expect(c.json("POST", "/services", `{"port":"eighty"}`), 400).body
	fields := bad["fields"].(map[string]any)
	if bad["code"] != 2.0 || fields["host"] != "required field missing" || fields["port"] != "expected an integer" ||
		bad["message"] != "2 schema violations (host: required field missing; port: expected an integer)" {
		t.Fatalf("400 body: %v", bad)
	}
	c.expect(c.json("POST", "/services", `{"host": `), 400)
	ref := c.expect(c.json("DELETE", "/services/httpservice", ""), 400).body
	if ref["code"] != 4.0 || ref["fields"].(map[string]any)["@referenced_by"] != "routes" {
		t.Fatalf("referenced delete: %v", ref)
	}
	c.expect(c.json("DELETE", "/services/nonexistent", ""), 204)
	c.expect(c.json("DELETE", "/routes/r", ""), 204)
	c.expect(c.json("GET", "/routes/r", ""), 404)
	nf := c.expect(c.json("GET", "/vaults", ""), 404).body
	if nf["message"] != "Not found" {
		t.Fatalf("404 body: %v", nf)
	}
	c.expect(c.json("GET", "/workspaces/default", ""), 404)
	c.expect(c.json("PATCH", "/services", ""), 405)
}

func TestPutPatchUpsert(t *testing.T) {
	c, _ := newClient(t, &notOff{store.NewMemory()})
	created := c.expect(c.json("PUT", "/services/upserted", `{"host":"a.example","port":8080}`), 200).body
	if created["name"] != "upserted" || created["port"] != 8080.0 {
		t.Fatalf("put create: %v", created)
	}
	// PUT replaces: omitted fields return to defaults, id and created_at stay.
	replaced := c.expect(c.json("PUT", "/services/upserted", `{"host":"b.example"}`), 200).body
	if replaced["id"] != created["id"] || replaced["port"] != 80.0 || replaced["created_at"] != created["created_at"] {
		t.Fatalf("put replace: %v", replaced)
	}
	// PUT by name without a name in the body keeps the URL's name.
	if kept := c.expect(c.json("PUT", "/services/upserted", `{"host":"d.example"}`), 200).body; kept["name"] != "upserted" || kept["id"] != created["id"] {
		t.Fatalf("put by name: %v", kept)
	}
	id := "9748f662-7711-4a90-8186-dc02f10eb0f5"
	byID := c.expect(c.json("PUT", "/services/"+id, `{"host":"c.example","name":"byid"}`), 200).body
	if byID["id"] != id {
		t.Fatalf("put by id: %v", byID)
	}
	patched := c.expect(c.json("PATCH", "/services/byid", `{"port":81,"tags":["t1"]}`), 200).body
	if patched["port"] != 81.0 || patched["host"] != "c.example" {
		t.Fatalf("patch: %v", patched)
	}
	c.expect(c.json("PATCH", "/services/missing", `{"port":81}`), 404)
	c.expect(c.json("PATCH", "/services/byid", `{"port":999999}`), 400)
	// Plugin config PATCH merges into the stored config.
	c.expect(c.json("POST", "/plugins", `{"name":"rate-limiting","instance_name":"rl","config":{"minute":10,"hour":100}}`), 201)
	p := c.expect(c.json("PATCH", "/plugins/rl", `{"config":{"minute":20}}`), 200).body
	cfg := p["config"].(map[string]any)
	if cfg["minute"] != 20.0 || cfg["hour"] != 100.0 {
		t.Fatalf("plugin patch merge: %v", cfg)
	}
}

func TestPagingAndTags(t *testing.T) {
	c, _ := newClient(t, &notOff{store.NewMemory()})
	for i := 0; i < 5; i++ {
		tags := `["all"]`
		if i%2 == 0 {
			tags = `["all","even"]`
		}
		c.expect(c.json("POST", "/consumers", `{"username":"u`+string(rune('0'+i))+`","tags":`+tags+`}`), 201)
	}
	seen := 0
	path := "/consumers?size=2"
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		body := c.expect(c.json("GET", path, ""), 200).body
		seen += len(body["data"].([]any))
		next, _ := body["next"].(string)
		if next != "" && body["offset"] == nil {
			t.Fatal("next without offset")
		}
		path = next
	}
	if seen != 5 {
		t.Fatalf("paged %d consumers", seen)
	}
	if n := len(c.expect(c.json("GET", "/consumers?tags=even", ""), 200).body["data"].([]any)); n != 3 {
		t.Fatalf("tags=even: %d", n)
	}
	if n := len(c.expect(c.json("GET", "/consumers?tags=even/nope", ""), 200).body["data"].([]any)); n != 3 {
		t.Fatalf("tags OR: %d", n)
	}
	if body := c.expect(c.json("GET", "/consumers?size=0", ""), 400).body; body["code"] != 9.0 {
		t.Fatalf("size 0: %v", body)
	}
	c.expect(c.json("GET", "/consumers?offset=%21%21", ""), 400)
	tags := c.expect(c.json("GET", "/tags/even", ""), 200).body
	if len(tags["data"].([]any)) != 3 {
		t.Fatalf("/tags/even: %v", tags)
	}
	if got := c.expect(c.json("GET", "/consumers?custom_id=nope", ""), 200).body["data"].([]any); len(got) != 0 {
		t.Fatalf("custom_id filter: %v", got)
	}
}

func TestPluginsCredentialsUpstreams(t *testing.T) {
	c, _ := newClient(t, &notOff{store.NewMemory()})
	c.expect(c.json("POST", "/services", `{"name":"s","host":"example.com"}`), 201)
	p := c.expect(c.form("POST", "/services/s/plugins", "name=rate-limiting&config.minute=5&config.limit_by=ip"), 201).body
	cfg := p["config"].(map[string]any)
	if cfg["minute"] != 5.0 || cfg["limit_by"] != "ip" || cfg["policy"] != "local" {
		t.Fatalf("plugin config: %v", cfg)
	}
	c.expect(c.json("POST", "/plugins", `{"name":"rate-limiting","service":{"name":"s"},"config":{"second":1}}`), 409)
	unknown := c.expect(c.json("POST", "/plugins", `{"name":"no-such-plugin"}`), 400).body
	if !strings.Contains(unknown["message"].(string), "plugin 'no-such-plugin' not enabled") {
		t.Fatalf("unknown plugin: %v", unknown)
	}
	c.expect(c.json("POST", "/consumers", `{"username":"alice"}`), 201)
	key := c.expect(c.json("POST", "/consumers/alice/key-auth", `{}`), 201).body
	k, _ := key["key"].(string)
	if len(k) != 32 {
		t.Fatalf("generated key: %v", key)
	}
	c.expect(c.json("GET", "/key-auths/"+k, ""), 200)
	c.expect(c.json("GET", "/consumers/alice/key-auth/"+k, ""), 200)
	c.expect(c.json("GET", "/key-auths/"+k+"/consumer", ""), 200)
	ba := c.expect(c.json("POST", "/consumers/alice/basic-auth", `{"username":"alice","password":"pw"}`), 201).body
	if ba["password"] == "pw" {
		t.Fatal("basic-auth password stored in clear")
	}
	c.expect(c.json("POST", "/consumers/alice/acls", `{"group":"admins"}`), 201)
	c.expect(c.json("GET", "/consumers/alice/acls/admins", ""), 200)
	c.expect(c.json("POST", "/plugins", `{"name":"key-auth","consumer":{"username":"alice"}}`), 400)

	c.expect(c.json("POST", "/upstreams", `{"name":"backend","hash_on":"ip"}`), 201)
	tg := c.expect(c.form("POST", "/upstreams/backend/targets", "target=10.0.0.1&weight=5"), 201).body
	if tg["target"] != "10.0.0.1:8000" || tg["weight"] != 5.0 {
		t.Fatalf("target: %v", tg)
	}
	up := c.expect(c.json("GET", "/upstreams/backend", ""), 200).body
	if up["algorithm"] != "consistent-hashing" || up["healthchecks"].(map[string]any)["active"].(map[string]any)["http_path"] != "/" {
		t.Fatalf("upstream: %v", up)
	}
	c.expect(c.json("GET", "/upstreams/backend/targets/10.0.0.1:8000", ""), 200)
	health := c.expect(c.json("GET", "/upstreams/backend/health", ""), 200).body
	if h := health["data"].([]any)[0].(map[string]any)["health"]; h != "HEALTHCHECKS_OFF" {
		t.Fatalf("health: %v", health)
	}
	c.expect(c.json("DELETE", "/consumers/alice", ""), 204)
	c.expect(c.json("GET", "/key-auths/"+k, ""), 404)
}

func selfSigned(t *testing.T) (string, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
}

func TestCertificatesSNIs(t *testing.T) {
	c, _ := newClient(t, &notOff{store.NewMemory()})
	cert, key := selfSigned(t)
	body, _ := json.Marshal(map[string]any{"cert": cert, "key": key, "snis": []string{"example.com", "*.example.org"}})
	created := c.expect(c.json("POST", "/certificates", string(body)), 201).body
	if snis := created["snis"].([]any); len(snis) != 2 {
		t.Fatalf("snis: %v", created)
	}
	c.expect(c.json("GET", "/snis/example.com", ""), 200)
	c.expect(c.json("GET", "/certificates/example.com", ""), 200)
	c.expect(c.json("POST", "/certificates", string(body)), 409)
	mismatched, _ := json.Marshal(map[string]any{"cert": cert, "key": strings.Replace(key, "A", "B", 5)})
	c.expect(c.json("POST", "/certificates", string(mismatched)), 400)
	c.expect(c.json("DELETE", "/certificates/"+created["id"].(string), ""), 204)
	c.expect(c.json("GET", "/snis/example.com", ""), 404)
}

func TestNodeEndpoints(t *testing.T) {
	c, _ := newClient(t, store.NewMemory())
	root := c.expect(c.json("GET", "/", ""), 200).body
	if v := root["version"].(string); strings.Count(v, ".") != 2 {
		t.Fatalf("version %q is not 3-part", v)
	}
	if root["configuration"].(map[string]any)["database"] != "off" {
		t.Fatalf("configuration: %v", root["configuration"])
	}
	c.expect(c.json("GET", "/schemas/services", ""), 200)
	c.expect(c.json("GET", "/schemas/key-auths", ""), 200)
	ps := c.expect(c.json("GET", "/schemas/plugins/key-auth", ""), 200).body
	if !strings.Contains(c.json("GET", "/schemas/plugins/key-auth", "").raw, `"apikey"`) || ps["fields"] == nil {
		t.Fatalf("plugin schema: %v", ps)
	}
	c.expect(c.json("GET", "/schemas/plugins/nope", ""), 404)
	c.expect(c.json("POST", "/schemas/services/validate", `{"host":"x"}`), 200)
	c.expect(c.json("POST", "/schemas/services/validate", `{}`), 400)
	c.expect(c.json("POST", "/schemas/plugins/validate", `{"name":"cors"}`), 200)
	c.expect(c.json("GET", "/plugins/enabled", ""), 200)
	st := c.expect(c.json("GET", "/status", ""), 200).body
	if st["configuration_hash"] != "00000000000000000000000000000000" {
		t.Fatalf("status: %v", st)
	}
}

const dbless = `_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:1234
  routes:
  - name: r
    paths: [/s]
consumers:
- username: bob
  keyauth_credentials:
  - key: bobkey
`

func TestDBless(t *testing.T) {
	c, _ := newClient(t, store.NewMemory())
	ready := c.expect(c.json("GET", "/status/ready", ""), 503).body
	if !strings.Contains(ready["message"].(string), "no configuration available") {
		t.Fatalf("ready: %v", ready)
	}
	ro := c.expect(c.json("POST", "/services", `{"host":"x"}`), 405).body
	if ro["code"] != 12.0 || ro["message"] != "cannot create 'services' entities when not using a database" {
		t.Fatalf("405: %v", ro)
	}
	c.expect(c.json("DELETE", "/services/x", ""), 405)
	c.expect(c.json("PUT", "/services/x", `{}`), 405)
	loaded := c.expect(c.do("POST", "/config", "application/yaml", dbless), 201).body
	if len(loaded["services"].(map[string]any)) != 1 {
		t.Fatalf("loaded: %v", loaded)
	}
	c.expect(c.json("GET", "/status/ready", ""), 200)
	c.expect(c.json("GET", "/routes/r", ""), 200)
	c.expect(c.json("GET", "/key-auths/bobkey", ""), 200)
	c.expect(c.do("POST", "/config?check_hash=1", "application/yaml", dbless), 304)
	// {"config": "<doc>"} wrapper and form field.
	wrapped, _ := json.Marshal(map[string]string{"config": dbless + "- username: carol\n"})
	c.expect(c.json("POST", "/config", string(wrapped)), 201)
	c.expect(c.json("GET", "/consumers/carol", ""), 200)
	c.expect(c.form("POST", "/config", "config="+url.QueryEscape(dbless)), 201)
	c.expect(c.json("GET", "/consumers/carol", ""), 404)
	bad := c.expect(c.do("POST", "/config?flatten_errors=1", "application/yaml", "_format_version: \"3.0\"\nservices:\n- name: x\n"), 400).body
	if bad["code"] != 14.0 || len(bad["flattened_errors"].([]any)) != 1 {
		t.Fatalf("invalid config: %v", bad)
	}
	c.expect(c.json("GET", "/routes/r", ""), 200) // the old configuration is still there
	exp := c.expect(c.json("GET", "/config", ""), 200).body
	if !strings.Contains(exp["config"].(string), "_format_version") {
		t.Fatalf("export: %v", exp)
	}
	st := c.expect(c.json("GET", "/status", ""), 200).body
	if h := st["configuration_hash"].(string); len(h) != 32 || h == "00000000000000000000000000000000" {
		t.Fatalf("configuration_hash %q", h)
	}
}

func TestLoadDeclarativeForStartup(t *testing.T) {
	st := store.NewMemory()
	// A file loaded at start-up (before the Admin API exists) counts for
	// check_hash and configuration_hash like one posted to /config.
	if _, err := declarative.Load(context.Background(), st, []byte(dbless), time.Now()); err != nil {
		t.Fatal(err)
	}
	c, _ := newClient(t, st)
	c.expect(c.do("POST", "/config?check_hash=1", "application/yaml", dbless), 304)
	if h := c.expect(c.json("GET", "/status", ""), 200).body["configuration_hash"]; h != declarative.SourceHash([]byte(dbless)) {
		t.Fatalf("configuration_hash %v", h)
	}
	cfg, _ := st.Snapshot(context.Background())
	if len(cfg.Routes) != 1 || cfg.Routes[0].Paths[0] != "/s" {
		t.Fatalf("routes: %+v", cfg.Routes)
	}
}

// FuzzAdminJSONBody posts arbitrary JSON bodies to the write endpoints: the
// API must answer with a JSON body and never a 500.
func FuzzAdminJSONBody(f *testing.F) {
	for _, s := range []string{`{"name":"a","url":"http://x:1/p"}`, `{"paths":["/x"],"service":{"name":"a"}}`,
		`{"name":"rate-limiting","config":{"minute":1}}`, `{"username":"u","tags":["a"]}`, `{"name":"up","healthchecks":{"active":{"healthy":{"interval":1}}}}`,
		`[]`, `{"host":null}`, `{"port":1e400}`} {
		f.Add(s)
	}
	srv := New(Options{Store: store.NewMemory()})
	sqlish := New(Options{Store: &notOff{store.NewMemory()}})
	paths := []string{"/services", "/routes", "/plugins", "/consumers", "/upstreams", "/services/a/routes", "/consumers/u/key-auth", "/certificates"}
	f.Fuzz(func(t *testing.T, body string) {
		for _, p := range paths {
			for _, h := range []http.Handler{srv, sqlish} {
				for _, m := range []string{"POST", "PUT"} {
					path := p
					if m == "PUT" {
						path += "/x"
					}
					req := httptest.NewRequest(m, path, bytes.NewBufferString(body))
					req.Header.Set("Content-Type", "application/json")
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code >= 500 {
						t.Fatalf("%s %s %q → %d %s", m, path, body, rec.Code, rec.Body)
					}
					if rec.Body.Len() > 0 && !json.Valid(rec.Body.Bytes()) {
						t.Fatalf("%s %s: invalid JSON response %q", m, path, rec.Body)
					}
				}
			}
		}
	})
}

// notOff makes a memory store look like a database so writes are allowed.
type notOff struct{ *store.Memory }

func (notOff) Database() string { return "postgres" }
