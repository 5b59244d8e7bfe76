package declarative

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// TestTable: the hybrid-mode export leaves disabled services (and what
// hangs off them) and disabled plugins out, flattens foreign keys, keeps
// nulls, and parses back (ParseTable) to the same configuration.
func TestTable(t *testing.T) {
	doc := `_format_version: "3.0"
services:
- name: on
  url: http://127.0.0.1:9000
  routes:
  - name: r-on
    paths: [/on]
    plugins:
    - name: cors
  plugins:
  - name: key-auth
  - name: acl
    enabled: false
    config: {allow: [a]}
- name: off
  enabled: false
  url: http://127.0.0.1:9001
  routes:
  - name: r-off
    paths: [/off]
    plugins:
    - name: rate-limiting
      config: {minute: 1}
  plugins:
  - name: request-termination
plugins:
- name: correlation-id
`
	ctx := context.Background()
	st := store.NewMemory()
	if _, err := Load(ctx, st, []byte(doc), time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	cfg, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	table, err := Table(cfg)
	if err != nil {
		t.Fatal(err)
	}
	names := func(kind, field string) map[string]bool {
		out := map[string]bool{}
		list, _ := table[kind].([]any)
		for _, e := range list {
			if n, ok := e.(map[string]any)[field].(string); ok {
				out[n] = true
			}
		}
		return out
	}
	if got := names("services", "name"); len(got) != 1 || !got["on"] {
		t.Errorf("services %v, want only the enabled one", got)
	}
	if got := names("routes", "name"); len(got) != 1 || !got["r-on"] {
		t.Errorf("routes %v, want only the enabled service's", got)
	}
	if got := names("plugins", "name"); len(got) != 3 || !got["cors"] || !got["key-auth"] || !got["correlation-id"] {
		t.Errorf("plugins %v, want cors, key-auth, correlation-id", got)
	}
	if table["_format_version"] != "3.0" || table["_transform"] != false {
		t.Errorf("header %v %v", table["_format_version"], table["_transform"])
	}
	route := table["routes"].([]any)[0].(map[string]any)
	if _, ok := route["service"].(string); !ok {
		t.Errorf("route.service = %#v, want an id string", route["service"])
	}
	if v, ok := route["hosts"]; !ok || v != nil {
		t.Errorf("route.hosts = %#v (present %v), want null", v, ok)
	}

	// Round trip through JSON, as a data plane receives it.
	raw, err := json.Marshal(table)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	recs, err := ParseTable(back, time.Unix(1800000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	dp := store.NewMemory()
	if err := dp.Replace(ctx, recs); err != nil {
		t.Fatal(err)
	}
	got, err := dp.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Table(got)
	a, _ := json.Marshal(again)
	if string(a) != string(raw) {
		t.Errorf("the table changed through ParseTable:\n%s\n%s", raw, a)
	}
}
