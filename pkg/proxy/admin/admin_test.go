package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/admin"
	"github.com/kiln-dev/kiln/pkg/proxy/admin/admintest"
	"github.com/kiln-dev/kiln/pkg/proxy/declarative"
	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/headerconf"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

func TestAdminOnMemoryStore(t *testing.T) {
	admintest.Run(t, func(*testing.T) store.Store { return &notOff{store.NewMemory()} })
}

func TestNodeEndpoints(t *testing.T) {
	c, _ := admintest.NewClient(t, store.NewMemory())
	root := c.Expect(c.JSON("GET", "/", ""), 200).Body
	if v := root["version"].(string); strings.Count(v, ".") != 2 {
		t.Fatalf("version %q is not 3-part", v)
	}
	if root["configuration"].(map[string]any)["database"] != "off" {
		t.Fatalf("configuration: %v", root["configuration"])
	}
	c.Expect(c.JSON("GET", "/schemas/services", ""), 200)
	c.Expect(c.JSON("GET", "/schemas/key-auths", ""), 200)
	ps := c.Expect(c.JSON("GET", "/schemas/plugins/key-auth", ""), 200).Body
	if !strings.Contains(c.JSON("GET", "/schemas/plugins/key-auth", "").Raw, `"apikey"`) || ps["fields"] == nil {
		t.Fatalf("plugin schema: %v", ps)
	}
	c.Expect(c.JSON("GET", "/schemas/plugins/nope", ""), 404)
	c.Expect(c.JSON("POST", "/schemas/services/validate", `{"host":"x"}`), 200)
	c.Expect(c.JSON("POST", "/schemas/services/validate", `{}`), 400)
	c.Expect(c.JSON("POST", "/schemas/plugins/validate", `{"name":"cors"}`), 200)
	c.Expect(c.JSON("GET", "/plugins/enabled", ""), 200)
	st := c.Expect(c.JSON("GET", "/status", ""), 200).Body
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
	c, _ := admintest.NewClient(t, store.NewMemory())
	ready := c.Expect(c.JSON("GET", "/status/ready", ""), 503).Body
	if !strings.Contains(ready["message"].(string), "no configuration available") {
		t.Fatalf("ready: %v", ready)
	}
	ro := c.Expect(c.JSON("POST", "/services", `{"host":"x"}`), 405).Body
	if ro["code"] != 12.0 || ro["message"] != "cannot create 'services' entities when not using a database" {
		t.Fatalf("405: %v", ro)
	}
	c.Expect(c.JSON("DELETE", "/services/x", ""), 405)
	c.Expect(c.JSON("PUT", "/services/x", `{}`), 405)
	loaded := c.Expect(c.Do("POST", "/config", "application/yaml", dbless), 201).Body
	if len(loaded["services"].(map[string]any)) != 1 {
		t.Fatalf("loaded: %v", loaded)
	}
	c.Expect(c.JSON("GET", "/status/ready", ""), 200)
	c.Expect(c.JSON("GET", "/routes/r", ""), 200)
	c.Expect(c.JSON("GET", "/key-auths/bobkey", ""), 200)
	c.Expect(c.Do("POST", "/config?check_hash=1", "application/yaml", dbless), 304)
	// {"config": "<doc>"} wrapper and form field.
	wrapped, _ := json.Marshal(map[string]string{"config": dbless + "- username: carol\n"})
	c.Expect(c.JSON("POST", "/config", string(wrapped)), 201)
	c.Expect(c.JSON("GET", "/consumers/carol", ""), 200)
	c.Expect(c.Form("POST", "/config", "config="+url.QueryEscape(dbless)), 201)
	c.Expect(c.JSON("GET", "/consumers/carol", ""), 404)
	bad := c.Expect(c.Do("POST", "/config?flatten_errors=1", "application/yaml", "_format_version: \"3.0\"\nservices:\n- name: x\n"), 400).Body
	if bad["code"] != 14.0 || len(bad["flattened_errors"].([]any)) != 1 {
		t.Fatalf("invalid config: %v", bad)
	}
	c.Expect(c.JSON("GET", "/routes/r", ""), 200) // the old configuration is still there
	exp := c.Expect(c.JSON("GET", "/config", ""), 200).Body
	if !strings.Contains(exp["config"].(string), "_format_version") {
		t.Fatalf("export: %v", exp)
	}
	st := c.Expect(c.JSON("GET", "/status", ""), 200).Body
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
	c, _ := admintest.NewClient(t, st)
	c.Expect(c.Do("POST", "/config?check_hash=1", "application/yaml", dbless), 304)
	if h := c.Expect(c.JSON("GET", "/status", ""), 200).Body["configuration_hash"]; h != declarative.SourceHash([]byte(dbless)) {
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
	srv := admin.New(admin.Options{Store: store.NewMemory()})
	sqlish := admin.New(admin.Options{Store: &notOff{store.NewMemory()}})
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

// TestAdminHeadersSetting checks that Kong's headers setting gates Server
// and X-Kong-Admin-Latency on Admin API responses.
func TestAdminHeadersSetting(t *testing.T) {
	off, err := headerconf.ParseHeaders("off")
	if err != nil {
		t.Fatal(err)
	}
	latencyOnly, err := headerconf.ParseHeaders("X-Kong-Admin-Latency")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name            string
		headers         headerconf.Set
		server, latency bool
	}{
		{"default", 0, true, true},
		{"off", off, false, false},
		{"admin latency", latencyOnly, false, true},
	} {
		srv := admin.New(admin.Options{Store: store.NewMemory(), Headers: tt.headers})
		for _, path := range []string{"/", "/services", "/nothing-here"} {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			h := rec.Header()
			if got := h.Get("Server"); (got == "kong/"+entity.KongVersion) != tt.server || (!tt.server && got != "") {
				t.Errorf("%s: GET %s: Server %q, want it %v", tt.name, path, got, tt.server)
			}
			if _, got := h["X-Kong-Admin-Latency"]; got != tt.latency {
				t.Errorf("%s: GET %s: X-Kong-Admin-Latency present %v, want %v", tt.name, path, got, tt.latency)
			}
		}
	}
}
