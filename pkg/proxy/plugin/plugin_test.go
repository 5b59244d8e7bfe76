package plugin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

type named string

func TestScopingPrecedence(t *testing.T) {
	const r, s, c = "route-1", "svc-1", "cons-1"
	fk := func(id string) *entity.FK {
		if id == "" {
			return nil
		}
		return &entity.FK{ID: id}
	}
	plug := func(id, route, svc, cons string) *entity.Plugin {
		return &entity.Plugin{ID: id, Name: "p", Enabled: true, Route: fk(route), Service: fk(svc), Consumer: fk(cons)}
	}
	all := []*entity.Plugin{
		plug("global", "", "", ""),
		plug("service", "", s, ""),
		plug("route", r, "", ""),
		plug("consumer", "", "", c),
		plug("route+service", r, s, ""),
		plug("service+consumer", "", s, c),
		plug("route+consumer", r, "", c),
		plug("route+service+consumer", r, s, c),
	}
	reg := Registry{"p": {Name: "p", Priority: 1, New: func(p *entity.Plugin, _ *Env) (any, error) { return named(p.ID), nil }}}
	// Removing the most specific instance one by one must fall back in
	// Kong's order.
	order := []string{"route+service+consumer", "route+consumer", "service+consumer", "route+service", "consumer", "route", "service", "global"}
	for i := range order {
		cfg := &entity.Config{Routes: []*entity.Route{{ID: r, Service: fk(s)}}}
		for _, p := range all {
			keep := true
			for _, removed := range order[:i] {
				if p.ID == removed {
					keep = false
				}
			}
			if keep {
				cfg.Plugins = append(cfg.Plugins, p)
			}
		}
		set, err := Compile(cfg, reg, &Env{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		ch := set.ForRoute(r)
		got := ch.slots[0].resolve(c)
		if got == nil || string(got.Handler.(named)) != order[i] {
			t.Fatalf("with %v removed: resolved %v, want %s", order[:i], got, order[i])
		}
	}
	// Without a consumer only the non-consumer scopes apply.
	cfg := &entity.Config{Routes: []*entity.Route{{ID: r, Service: fk(s)}}, Plugins: all}
	set, _ := Compile(cfg, reg, &Env{Config: cfg})
	if got := set.ForRoute(r).slots[0].resolve(""); string(got.Handler.(named)) != "route+service" {
		t.Fatalf("anonymous request resolved %v", got.Handler)
	}
	// Requests outside the route see the global instance.
	if got := set.Global().slots[0].resolve(""); string(got.Handler.(named)) != "global" {
		t.Fatalf("global chain resolved %v", got.Handler)
	}
}

func TestPriorityOrderAndUnknownPlugin(t *testing.T) {
	reg := Registry{}
	for name, prio := range map[string]int{"low": 10, "high": 1000, "mid": 500} {
		reg[name] = &Factory{Name: name, Priority: prio, New: func(p *entity.Plugin, _ *Env) (any, error) { return named(p.Name), nil }}
	}
	cfg := &entity.Config{Plugins: []*entity.Plugin{{ID: "1", Name: "low", Enabled: true}, {ID: "2", Name: "high", Enabled: true},
		{ID: "3", Name: "mid", Enabled: true}, {ID: "4", Name: "off", Enabled: false}}}
	set, err := Compile(cfg, reg, &Env{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range set.Global().slots {
		names = append(names, s.name)
	}
	if strings.Join(names, ",") != "high,mid,low" {
		t.Fatalf("order %v", names)
	}
	// An unknown plugin does not block the configuration; it fails closed.
	cfg.Plugins = append(cfg.Plugins, &entity.Plugin{ID: "5", Name: "jwt", Enabled: true})
	set, err = Compile(cfg, reg, &Env{Config: cfg})
	if err != nil || len(set.Problems) != 1 || !strings.Contains(set.Problems[0].Error(), "jwt") {
		t.Fatalf("unknown plugin: %v %v", err, set.Problems)
	}
	c := &Context{Req: &http.Request{Header: http.Header{}}, Scheme: "http"}
	c.RunAccess(set.Global())
	if ex := c.Exited(); ex == nil || ex.Status != 500 {
		t.Fatalf("a broken plugin let the request through: %+v", ex)
	}
}

func TestErrorBodyNegotiation(t *testing.T) {
	for _, c := range []struct{ accept, ct, body string }{
		{"", "application/json; charset=utf-8", `{"message":"nope","request_id":"id1"}`},
		{"application/json", "application/json; charset=utf-8", `{"message":"nope","request_id":"id1"}`},
		{"text/plain", "text/plain; charset=utf-8", "nope\nrequest_id: id1\n"},
		{"text/html", "text/html; charset=utf-8", "<p>nope.</p>"},
		{"application/xml", "application/xml; charset=utf-8", "<message>nope</message>"},
	} {
		ct, body := ErrorBody(c.accept, "nope", "id1")
		if ct != c.ct || !strings.Contains(string(body), c.body) {
			t.Errorf("Accept %q: %s %q", c.accept, ct, body)
		}
	}
	if DefaultMessage(503) != "The upstream server is currently unavailable" || DefaultMessage(599) != "The upstream server responded with 599" {
		t.Error("default messages")
	}
}

func TestCountersAndAuthenticate(t *testing.T) {
	cs := NewCounters()
	k := CounterKey{Plugin: "p", Identifier: "ip", Period: 1, Window: 60}
	end := func(CounterKey) int64 { return 120 }
	cs.Add(k, 1, 61, end)
	if v := cs.Add(k, 1, 61, end); v != 2 || cs.Get(k) != 2 {
		t.Fatalf("count %d", v)
	}
	// New windows in the same shard (the plugin id is not hashed) trigger
	// a sweep every 1024 insertions.
	for i := 0; i < 1100; i++ {
		cs.Add(CounterKey{Plugin: fmt.Sprint("q", i), Identifier: "ip", Period: 1, Window: 60}, 1, 200, end)
	}
	if _, ok := cs.shard(&k).m[k]; ok {
		t.Fatal("expired window was not swept")
	}
	user := "alice"
	c := &Context{Req: &http.Request{Header: http.Header{"X-Consumer-Username": {"forged"}}}}
	c.Authenticate(&entity.Consumer{ID: "c1", Username: &user}, &Credential{ID: "k1", Identifier: "k1"})
	if c.Req.Header.Get("X-Consumer-Username") != "alice" || c.Req.Header.Get("X-Consumer-Id") != "c1" || c.Anonymous {
		t.Fatalf("headers %v", c.Req.Header)
	}
}

func TestSharedKeepsObjectsOfConfiguredPlugins(t *testing.T) {
	st := NewState()
	made := 0
	get := func(version int) any {
		return st.Shared.Get("p1", func(v any) bool { return v.(*int) != nil && *v.(*int) == version }, func() any {
			made++
			v := version
			return &v
		})
	}
	a := get(1)
	if b := get(1); a != b || made != 1 {
		t.Fatalf("same config: a new object (made %d)", made)
	}
	if get(2); made != 2 {
		t.Fatalf("changed config kept the old object")
	}
	NewEnv(&entity.Config{Plugins: []*entity.Plugin{{ID: "p1"}}}, st)
	if get(2); made != 2 {
		t.Fatalf("a configured plugin's object was dropped")
	}
	NewEnv(&entity.Config{}, st)
	if get(2); made != 3 {
		t.Fatalf("a removed plugin's object was kept")
	}
}
