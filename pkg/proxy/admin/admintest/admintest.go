// Package admintest is the Admin API's behaviour suite over real HTTP: CRUD,
// nested endpoints, upserts, PATCH merges, pagination, tags, Kong's error
// bodies, plugins, credentials, upstreams and certificates. Run it against
// any writable store (memory, SQLite, PostgreSQL).
package admintest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/pki"
	"github.com/kiln-dev/kiln/pkg/proxy/admin"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// Run runs every test; open returns a fresh, empty store that accepts
// writes (Database() != "off").
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"ServicesAndRoutes", testServicesAndRoutes},
		{"PutPatchUpsert", testPutPatchUpsert},
		{"PagingAndTags", testPagingAndTags},
		{"PluginsCredentialsUpstreams", testPluginsCredentialsUpstreams},
		{"CertificatesSNIs", testCertificatesSNIs},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// Client talks to an Admin API over HTTP and fails the test on surprises.
type Client struct {
	t    *testing.T
	base string
}

// Resp is a decoded response.
type Resp struct {
	Status int
	Body   map[string]any
	Raw    string
}

// Do sends a request with an optional content type and body.
func (c *Client) Do(method, path, contentType, body string) Resp {
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
	r := Resp{Status: res.StatusCode, Raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.Body); err != nil {
			c.t.Fatalf("%s %s: non-JSON body %q", method, path, raw)
		}
	}
	return r
}

// JSON sends a JSON body.
func (c *Client) JSON(method, path, body string) Resp {
	return c.Do(method, path, "application/json", body)
}

// Form sends a form-urlencoded body.
func (c *Client) Form(method, path, body string) Resp {
	return c.Do(method, path, "application/x-www-form-urlencoded", body)
}

// Expect fails the test unless r has the status.
func (c *Client) Expect(r Resp, status int) Resp {
	c.t.Helper()
	if r.Status != status {
		c.t.Fatalf("status %d, want %d: %s", r.Status, status, r.Raw)
	}
	return r
}

// NewClient serves an Admin API on st over loopback HTTP.
func NewClient(t *testing.T, st store.Store) (*Client, *admin.Server) {
	return NewClientOptions(t, admin.Options{Store: st, NodeID: "3b7a8f9e-2c1d-4e5f-8a9b-0c1d2e3f4a5b", Hostname: "test"})
}

// NewClientOptions serves an Admin API made with opts over loopback HTTP.
func NewClientOptions(t *testing.T, opts admin.Options) (*Client, *admin.Server) {
	srv := admin.New(opts)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &Client{t: t, base: ts.URL}, srv
}

func testServicesAndRoutes(t *testing.T, st store.Store) {
	c, _ := NewClient(t, st)
	svc := c.Expect(c.JSON("POST", "/services", `{"name":"httpservice","url":"http://127.0.0.1:9999/base"}`), 201).Body
	if svc["host"] != "127.0.0.1" || svc["port"] != 9999.0 || svc["path"] != "/base" || svc["retries"] != 5.0 || svc["url"] != nil {
		t.Fatalf("service: %v", svc)
	}
	if _, ok := svc["tls_verify"]; !ok {
		t.Fatal("null fields must be present")
	}
	// Form body with Kong's array syntax, nested under the service.
	route := c.Expect(c.Form("POST", "/services/httpservice/routes", "name=r&paths[]=/httpbin&paths[]=/other&strip_path=false"), 201).Body
	if p := route["paths"].([]any); len(p) != 2 || p[0] != "/httpbin" || route["strip_path"] != false {
		t.Fatalf("route paths: %v", route)
	}
	if route["service"].(map[string]any)["id"] != svc["id"] {
		t.Fatalf("route service: %v", route["service"])
	}
	c.Expect(c.JSON("POST", "/services/httpservice/routes", `{"name":"r2","paths":["/x"],"methods":["GET"]}`), 201)
	// Form bodies may name the foreign entity: service=<name> or service.name=<name>.
	for _, body := range []string{"name=r3&hosts[]=a.example&service=httpservice", "name=r4&hosts[]=b.example&service.name=httpservice"} {
		if got := c.Expect(c.Form("POST", "/routes", body), 201).Body; got["service"].(map[string]any)["id"] != svc["id"] {
			t.Fatalf("route by service name (%s): %v", body, got)
		}
	}
	c.Expect(c.JSON("GET", "/routes/r/service", ""), 200)
	if via := c.Expect(c.JSON("PATCH", "/routes/r/service", `{"retries":3}`), 200).Body; via["retries"] != 3.0 || via["id"] != svc["id"] {
		t.Fatalf("PATCH /routes/r/service: %v", via)
	}
	c.Expect(c.JSON("DELETE", "/routes/r/service", ""), 405)
	list := c.Expect(c.JSON("GET", "/services/httpservice/routes", ""), 200).Body
	if n := len(list["data"].([]any)); n != 4 {
		t.Fatalf("nested list: %d", n)
	}
	// A route under the wrong service is not found.
	c.Expect(c.JSON("POST", "/services", `{"name":"other","host":"example.com"}`), 201)
	c.Expect(c.JSON("GET", "/services/other/routes/r", ""), 404)
	c.Expect(c.JSON("GET", "/services/httpservice/routes/r", ""), 200)

	dup := c.Expect(c.JSON("POST", "/services", `{"name":"httpservice","host":"x"}`), 409).Body
	if dup["code"] != 5.0 || dup["message"] != `UNIQUE violation detected on '{name="httpservice"}'` {
		t.Fatalf("409 body: %v", dup)
	}
	bad := c.Expect(c.JSON("POST", "/services", `{"port":"eighty"}`), 400).Body
	fields := bad["fields"].(map[string]any)
	if bad["code"] != 2.0 || fields["host"] != "required field missing" || fields["port"] != "expected an integer" ||
		bad["message"] != "2 schema violations (host: required field missing; port: expected an integer)" {
		t.Fatalf("400 body: %v", bad)
	}
	c.Expect(c.JSON("POST", "/services", `{"host": `), 400)
	ref := c.Expect(c.JSON("DELETE", "/services/httpservice", ""), 400).Body
	if ref["code"] != 4.0 || ref["fields"].(map[string]any)["@referenced_by"] != "routes" {
		t.Fatalf("referenced delete: %v", ref)
	}
	c.Expect(c.JSON("DELETE", "/services/nonexistent", ""), 204)
	c.Expect(c.JSON("DELETE", "/routes/r", ""), 204)
	c.Expect(c.JSON("GET", "/routes/r", ""), 404)
	nf := c.Expect(c.JSON("GET", "/vaults", ""), 404).Body
	if nf["message"] != "Not found" {
		t.Fatalf("404 body: %v", nf)
	}
	c.Expect(c.JSON("GET", "/workspaces/default", ""), 404)
	c.Expect(c.JSON("PATCH", "/services", ""), 405)
}

func testPutPatchUpsert(t *testing.T, st store.Store) {
	c, _ := NewClient(t, st)
	created := c.Expect(c.JSON("PUT", "/services/upserted", `{"host":"a.example","port":8080}`), 200).Body
	if created["name"] != "upserted" || created["port"] != 8080.0 {
		t.Fatalf("put create: %v", created)
	}
	// PUT replaces: omitted fields return to defaults, id and created_at stay.
	replaced := c.Expect(c.JSON("PUT", "/services/upserted", `{"host":"b.example"}`), 200).Body
	if replaced["id"] != created["id"] || replaced["port"] != 80.0 || replaced["created_at"] != created["created_at"] {
		t.Fatalf("put replace: %v", replaced)
	}
	// PUT by name without a name in the body keeps the URL's name.
	if kept := c.Expect(c.JSON("PUT", "/services/upserted", `{"host":"d.example"}`), 200).Body; kept["name"] != "upserted" || kept["id"] != created["id"] {
		t.Fatalf("put by name: %v", kept)
	}
	id := "9748f662-7711-4a90-8186-dc02f10eb0f5"
	byID := c.Expect(c.JSON("PUT", "/services/"+id, `{"host":"c.example","name":"byid"}`), 200).Body
	if byID["id"] != id {
		t.Fatalf("put by id: %v", byID)
	}
	patched := c.Expect(c.JSON("PATCH", "/services/byid", `{"port":81,"tags":["t1"]}`), 200).Body
	if patched["port"] != 81.0 || patched["host"] != "c.example" {
		t.Fatalf("patch: %v", patched)
	}
	c.Expect(c.JSON("PATCH", "/services/missing", `{"port":81}`), 404)
	c.Expect(c.JSON("PATCH", "/services/byid", `{"port":999999}`), 400)
	// Plugin config PATCH merges into the stored config.
	c.Expect(c.JSON("POST", "/plugins", `{"name":"rate-limiting","instance_name":"rl","config":{"minute":10,"hour":100}}`), 201)
	p := c.Expect(c.JSON("PATCH", "/plugins/rl", `{"config":{"minute":20}}`), 200).Body
	cfg := p["config"].(map[string]any)
	if cfg["minute"] != 20.0 || cfg["hour"] != 100.0 {
		t.Fatalf("plugin patch merge: %v", cfg)
	}
}

func testPagingAndTags(t *testing.T, st store.Store) {
	c, _ := NewClient(t, st)
	for i := 0; i < 5; i++ {
		tags := `["all"]`
		if i%2 == 0 {
			tags = `["all","even"]`
		}
		c.Expect(c.JSON("POST", "/consumers", `{"username":"u`+string(rune('0'+i))+`","tags":`+tags+`}`), 201)
	}
	seen := 0
	path := "/consumers?size=2"
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		body := c.Expect(c.JSON("GET", path, ""), 200).Body
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
	if n := len(c.Expect(c.JSON("GET", "/consumers?tags=even", ""), 200).Body["data"].([]any)); n != 3 {
		t.Fatalf("tags=even: %d", n)
	}
	if n := len(c.Expect(c.JSON("GET", "/consumers?tags=even/nope", ""), 200).Body["data"].([]any)); n != 3 {
		t.Fatalf("tags OR: %d", n)
	}
	if body := c.Expect(c.JSON("GET", "/consumers?size=0", ""), 400).Body; body["code"] != 9.0 {
		t.Fatalf("size 0: %v", body)
	}
	c.Expect(c.JSON("GET", "/consumers?offset=%21%21", ""), 400)
	tags := c.Expect(c.JSON("GET", "/tags/even", ""), 200).Body
	if len(tags["data"].([]any)) != 3 {
		t.Fatalf("/tags/even: %v", tags)
	}
	if got := c.Expect(c.JSON("GET", "/consumers?custom_id=nope", ""), 200).Body["data"].([]any); len(got) != 0 {
		t.Fatalf("custom_id filter: %v", got)
	}
}

func testPluginsCredentialsUpstreams(t *testing.T, st store.Store) {
	c, _ := NewClient(t, st)
	c.Expect(c.JSON("POST", "/services", `{"name":"s","host":"example.com"}`), 201)
	p := c.Expect(c.Form("POST", "/services/s/plugins", "name=rate-limiting&config.minute=5&config.limit_by=ip"), 201).Body
	cfg := p["config"].(map[string]any)
	if cfg["minute"] != 5.0 || cfg["limit_by"] != "ip" || cfg["policy"] != "local" {
		t.Fatalf("plugin config: %v", cfg)
	}
	c.Expect(c.JSON("POST", "/plugins", `{"name":"rate-limiting","service":{"name":"s"},"config":{"second":1}}`), 409)
	unknown := c.Expect(c.JSON("POST", "/plugins", `{"name":"no-such-plugin"}`), 400).Body
	if !strings.Contains(unknown["message"].(string), "plugin 'no-such-plugin' not enabled") {
		t.Fatalf("unknown plugin: %v", unknown)
	}
	c.Expect(c.JSON("POST", "/consumers", `{"username":"alice"}`), 201)
	key := c.Expect(c.JSON("POST", "/consumers/alice/key-auth", `{}`), 201).Body
	k, _ := key["key"].(string)
	if len(k) != 32 {
		t.Fatalf("generated key: %v", key)
	}
	c.Expect(c.JSON("GET", "/key-auths/"+k, ""), 200)
	c.Expect(c.JSON("GET", "/consumers/alice/key-auth/"+k, ""), 200)
	c.Expect(c.JSON("GET", "/key-auths/"+k+"/consumer", ""), 200)
	ba := c.Expect(c.JSON("POST", "/consumers/alice/basic-auth", `{"username":"alice","password":"pw"}`), 201).Body
	if ba["password"] == "pw" {
		t.Fatal("basic-auth password stored in clear")
	}
	c.Expect(c.JSON("POST", "/consumers/alice/acls", `{"group":"admins"}`), 201)
	c.Expect(c.JSON("GET", "/consumers/alice/acls/admins", ""), 200)
	c.Expect(c.JSON("POST", "/plugins", `{"name":"key-auth","consumer":{"username":"alice"}}`), 400)
	jwt := c.Expect(c.JSON("POST", "/consumers/alice/jwt", `{}`), 201).Body
	jk, _ := jwt["key"].(string)
	if len(jk) != 32 || jwt["algorithm"] != "HS256" || jwt["secret"] == nil {
		t.Fatalf("generated jwt credential: %v", jwt)
	}
	c.Expect(c.JSON("GET", "/jwts/"+jk+"/consumer", ""), 200)
	rs := c.Expect(c.JSON("POST", "/consumers/alice/jwt", `{"algorithm":"RS256"}`), 400).Body
	if f := rs["fields"].(map[string]any); f["rsa_public_key"] != "required field missing" {
		t.Fatalf("RS256 without a key: %v", rs)
	}
	c.Expect(c.JSON("POST", "/consumers/alice/jwt", `{"algorithm":"ES256","rsa_public_key":"not a key"}`), 400)
	c.Expect(c.JSON("POST", "/consumers/alice/hmac-auth", `{}`), 400)
	hm := c.Expect(c.Form("POST", "/consumers/alice/hmac-auth", "username=alice-hmac"), 201).Body
	if s, _ := hm["secret"].(string); s == "" {
		t.Fatalf("hmac-auth secret not generated: %v", hm)
	}
	c.Expect(c.JSON("GET", "/hmac-auths/alice-hmac", ""), 200)
	lua := c.Expect(c.JSON("POST", "/plugins", `{"name":"http-log","config":{"http_endpoint":"http://127.0.0.1:9/","custom_fields_by_lua":{"x":"return 1"}}}`), 400).Body
	if !strings.Contains(fmt.Sprint(lua["fields"]), "kiln does not run Lua") {
		t.Fatalf("http-log with Lua: %v", lua)
	}

	c.Expect(c.JSON("POST", "/upstreams", `{"name":"backend","hash_on":"ip"}`), 201)
	tg := c.Expect(c.Form("POST", "/upstreams/backend/targets", "target=10.0.0.1&weight=5"), 201).Body
	if tg["target"] != "10.0.0.1:8000" || tg["weight"] != 5.0 {
		t.Fatalf("target: %v", tg)
	}
	up := c.Expect(c.JSON("GET", "/upstreams/backend", ""), 200).Body
	if up["algorithm"] != "consistent-hashing" || up["healthchecks"].(map[string]any)["active"].(map[string]any)["http_path"] != "/" {
		t.Fatalf("upstream: %v", up)
	}
	c.Expect(c.JSON("GET", "/upstreams/backend/targets/10.0.0.1:8000", ""), 200)
	health := c.Expect(c.JSON("GET", "/upstreams/backend/health", ""), 200).Body
	if h := health["data"].([]any)[0].(map[string]any)["health"]; h != "HEALTHCHECKS_OFF" {
		t.Fatalf("health: %v", health)
	}
	c.Expect(c.JSON("DELETE", "/consumers/alice", ""), 204)
	c.Expect(c.JSON("GET", "/key-auths/"+k, ""), 404)
	c.Expect(c.JSON("GET", "/jwts/"+jk, ""), 404)
	c.Expect(c.JSON("GET", "/hmac-auths/alice-hmac", ""), 404)
}

func selfSigned(t *testing.T) (string, string) {
	t.Helper()
	c, k, err := pki.SelfSignedPEM(pki.Options{CommonName: "example.com", Hosts: []string{"example.com"}, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return string(c), string(k)
}

func testCertificatesSNIs(t *testing.T, st store.Store) {
	c, _ := NewClient(t, st)
	cert, key := selfSigned(t)
	body, _ := json.Marshal(map[string]any{"cert": cert, "key": key, "snis": []string{"example.com", "*.example.org"}})
	created := c.Expect(c.JSON("POST", "/certificates", string(body)), 201).Body
	if snis := created["snis"].([]any); len(snis) != 2 {
		t.Fatalf("snis: %v", created)
	}
	c.Expect(c.JSON("GET", "/snis/example.com", ""), 200)
	c.Expect(c.JSON("GET", "/certificates/example.com", ""), 200)
	c.Expect(c.JSON("POST", "/certificates", string(body)), 409)
	mismatched, _ := json.Marshal(map[string]any{"cert": cert, "key": strings.Replace(key, "A", "B", 5)})
	c.Expect(c.JSON("POST", "/certificates", string(mismatched)), 400)
	c.Expect(c.JSON("DELETE", "/certificates/"+created["id"].(string), ""), 204)
	c.Expect(c.JSON("GET", "/snis/example.com", ""), 404)
}
