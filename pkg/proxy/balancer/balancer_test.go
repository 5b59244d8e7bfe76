package balancer

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

func upstream(algo string, mutate func(u *entity.Upstream)) *entity.Upstream {
	u := &entity.Upstream{ID: "u1", Name: "backend", Algorithm: algo, HashOn: "none", HashFallback: "none", Slots: 10000}
	u.Healthchecks.Passive.Healthy.HTTPStatuses = []int{200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308}
	u.Healthchecks.Passive.Unhealthy.HTTPStatuses = []int{429, 500, 503}
	u.Healthchecks.Active.Healthy.HTTPStatuses = []int{200, 302}
	u.Healthchecks.Active.Unhealthy.HTTPStatuses = []int{429, 404, 500, 501, 502, 503, 504, 505}
	u.Healthchecks.Active.Type = "http"
	u.Healthchecks.Active.HTTPPath = "/"
	u.Healthchecks.Active.Timeout = 1
	u.Healthchecks.Active.Concurrency = 10
	if mutate != nil {
		mutate(u)
	}
	return u
}

func targets(spec ...any) []*entity.Target {
	var out []*entity.Target
	for i := 0; i < len(spec); i += 2 {
		out = append(out, &entity.Target{ID: fmt.Sprint(i), Upstream: &entity.FK{ID: "u1"}, Target: spec[i].(string), Weight: spec[i+1].(int)})
	}
	return out
}

func pickN(t *testing.T, b *Balancer, n int, key func(i int) string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		k := ""
		if key != nil {
			k = key(i)
		}
		tg, err := b.Pick(k, nil)
		if err != nil {
			t.Fatal(err)
		}
		got[tg.Name]++
		tg.Release()
	}
	return got
}

func TestRoundRobinWeights(t *testing.T) {
	b := newBalancer(upstream("round-robin", nil), targets("a:1", 100, "b:1", 300, "c:1", 0), map[string]*state{})
	got := pickN(t, b, 400, nil)
	if got["a:1"] != 100 || got["b:1"] != 300 || got["c:1"] != 0 {
		t.Fatalf("distribution %v, want a:100 b:300 c:0 over one wheel turn", got)
	}
}

func TestConsistentHashing(t *testing.T) {
	b := newBalancer(upstream("consistent-hashing", nil), targets("a:1", 100, "b:1", 100, "c:1", 100), map[string]*state{})
	first := map[string]string{}
	counts := map[string]int{}
	for i := 0; i < 3000; i++ {
		k := fmt.Sprintf("client-%d", i)
		tg, _ := b.Pick(k, nil)
		first[k] = tg.Name
		counts[tg.Name]++
		tg.Release()
	}
	for name, n := range counts {
		if n < 700 || n > 1300 {
			t.Errorf("target %s got %d of 3000 keys: ring is unbalanced (%v)", name, n, counts)
		}
	}
	// Same key, same target; a removed target only moves its own keys.
	b2 := newBalancer(upstream("consistent-hashing", nil), targets("a:1", 100, "b:1", 100), map[string]*state{})
	moved := 0
	for k, was := range first {
		tg, _ := b2.Pick(k, nil)
		if was != "c:1" && tg.Name != was {
			moved++
		}
		tg.Release()
	}
	if moved > 0 {
		t.Errorf("%d keys of surviving targets moved after removing c", moved)
	}
}

func TestLeastConnections(t *testing.T) {
	b := newBalancer(upstream("least-connections", nil), targets("a:1", 100, "b:1", 100), map[string]*state{})
	held, _ := b.Pick("", nil)
	for i := 0; i < 5; i++ {
		tg, _ := b.Pick("", nil)
		if tg == held {
			t.Fatalf("picked the busy target %s", tg.Name)
		}
		tg.Release()
	}
	held.Release()
}

func TestPassiveHealthTransitions(t *testing.T) {
	up := upstream("round-robin", func(u *entity.Upstream) {
		u.Healthchecks.Passive.Unhealthy.HTTPFailures = 2
		u.Healthchecks.Passive.Unhealthy.TCPFailures = 1
	})
	b := newBalancer(up, targets("a:1", 100, "b:1", 100), map[string]*state{})
	a := b.targets[0]
	b.Report(a, 500, false, false)
	if !a.Healthy() {
		t.Fatal("one failure of two tripped the breaker")
	}
	b.Report(a, 200, false, false) // a success resets the failure count
	b.Report(a, 500, false, false)
	if !a.Healthy() {
		t.Fatal("failures were not consecutive but tripped the breaker")
	}
	b.Report(a, 503, false, false)
	if a.Healthy() {
		t.Fatal("two consecutive failures did not trip the breaker")
	}
	if got := pickN(t, b, 10, nil); got["a:1"] != 0 {
		t.Fatalf("unhealthy target still picked: %v", got)
	}
	if b.TargetHealth(a) != Unhealthy || b.Health() != Healthy {
		t.Fatalf("health %s / %s", b.TargetHealth(a), b.Health())
	}
	b.Report(b.targets[1], 0, true, false)
	if _, err := b.Pick("", nil); err != ErrNoPeer {
		t.Fatalf("all targets unhealthy: err %v, want ErrNoPeer", err)
	}
}

func TestThreshold(t *testing.T) {
	up := upstream("round-robin", func(u *entity.Upstream) {
		u.Healthchecks.Passive.Unhealthy.TCPFailures = 1
		u.Healthchecks.Threshold = 60
	})
	b := newBalancer(up, targets("a:1", 100, "b:1", 100), map[string]*state{})
	b.Report(b.targets[0], 0, true, false)
	if _, err := b.Pick("", nil); err != ErrNoPeer {
		t.Fatalf("50%% healthy weight under a 60%% threshold: err %v", err)
	}
}

func TestActiveHealthChecks(t *testing.T) {
	var failing atomic.Bool
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	addr := ln.Addr().String()
	up := upstream("round-robin", func(u *entity.Upstream) {
		u.Healthchecks.Active.Healthy.Interval = 1
		u.Healthchecks.Active.Healthy.Successes = 1
		u.Healthchecks.Active.Unhealthy.Interval = 1
		u.Healthchecks.Active.Unhealthy.HTTPFailures = 1
	})
	cfg := &entity.Config{Upstreams: []*entity.Upstream{up}, Targets: targets(addr, 100)}
	m := NewManager(nil)
	defer m.Close()
	set := m.Update(context.Background(), cfg)
	b := set.ByName("backend")
	if b == nil {
		t.Fatal("no balancer for upstream backend")
	}
	waitFor := func(healthy bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if b.targets[0].Healthy() == healthy {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("target never became healthy=%v", healthy)
	}
	failing.Store(true)
	waitFor(false)
	// Health survives a configuration update.
	set = m.Update(context.Background(), cfg)
	b = set.ByName("backend")
	if b.targets[0].Healthy() {
		t.Fatal("update reset the target's health")
	}
	if h := m.Health()["u1"][addr]; h != Unhealthy {
		t.Fatalf("Health() = %q", h)
	}
	failing.Store(false)
	waitFor(true)
	if err := m.SetHealth("u1", addr, false); err != nil || b.targets[0].Healthy() {
		t.Fatalf("manual override: %v", err)
	}
}

func TestHashKey(t *testing.T) {
	hdr := "X-User"
	b := newBalancer(upstream("consistent-hashing", func(u *entity.Upstream) {
		u.HashOn, u.HashOnHeader, u.HashFallback = "header", &hdr, "ip"
	}), targets("a:1", 100), map[string]*state{})
	in := &HashInput{ClientIP: "10.0.0.1", Header: http.Header{"X-User": {"u42"}}}
	if k, _ := b.HashKey(in, nil); k != "u42" {
		t.Fatalf("header hash key %q", k)
	}
	in.Header = http.Header{}
	if k, _ := b.HashKey(in, nil); k != "10.0.0.1" {
		t.Fatalf("fallback hash key %q", k)
	}
	cookie := "sess"
	b = newBalancer(upstream("consistent-hashing", func(u *entity.Upstream) {
		u.HashOn, u.HashOnCookie, u.HashOnCookiePath = "cookie", &cookie, "/"
	}), targets("a:1", 100), map[string]*state{})
	k, set := b.HashKey(in, func() string { return "generated" })
	if k != "generated" || set == nil || set.Name != "sess" {
		t.Fatalf("cookie hash: %q %v", k, set)
	}
}
