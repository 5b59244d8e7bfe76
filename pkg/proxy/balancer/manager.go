package balancer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

// Manager owns the balancers built from successive configuration snapshots
// and runs their active health checks.
type Manager struct {
	log *slog.Logger

	mu      sync.Mutex
	states  map[string]map[string]*state // upstream id → target → state
	cancel  context.CancelFunc
	current map[string]*Balancer // by upstream id
	byName  map[string]*Balancer
	wg      sync.WaitGroup
}

// NewManager returns an empty manager.
func NewManager(log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{log: log, states: map[string]map[string]*state{}}
}

// Set is the balancers of one snapshot.
type Set struct {
	byName map[string]*Balancer
	byID   map[string]*Balancer
}

// ByName returns the balancer of the upstream named host (a service whose
// host is an upstream name is balanced), or nil.
func (s *Set) ByName(host string) *Balancer {
	if s == nil {
		return nil
	}
	return s.byName[host]
}

// ByID returns the balancer of an upstream id, or nil.
func (s *Set) ByID(id string) *Balancer {
	if s == nil {
		return nil
	}
	return s.byID[id]
}

// Update builds balancers for cfg, keeping target states of upstreams and
// targets that still exist, and restarts active health checks. ctx bounds
// the health checkers' lifetime.
func (m *Manager) Update(ctx context.Context, cfg *entity.Config) *Set {
	byUp := map[string][]*entity.Target{}
	for _, t := range cfg.Targets {
		if t.Upstream != nil {
			byUp[t.Upstream.ID] = append(byUp[t.Upstream.ID], t)
		}
	}
	set := &Set{byName: map[string]*Balancer{}, byID: map[string]*Balancer{}}
	m.mu.Lock()
	newStates := map[string]map[string]*state{}
	for _, up := range cfg.Upstreams {
		st := m.states[up.ID]
		if st == nil {
			st = map[string]*state{}
		}
		kept := map[string]*state{}
		b := newBalancer(up, byUp[up.ID], st)
		for _, t := range b.targets {
			kept[t.Name] = t.st
		}
		newStates[up.ID] = kept
		set.byName[up.Name] = b
		set.byID[up.ID] = b
	}
	m.states = newStates
	if m.cancel != nil {
		m.cancel()
	}
	cctx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	m.current = set.byID
	m.byName = set.byName
	m.mu.Unlock()
	for _, b := range set.byID {
		a := b.Upstream.Healthchecks.Active
		if a.Healthy.Interval > 0 || a.Unhealthy.Interval > 0 {
			m.wg.Add(1)
			go func(b *Balancer) {
				defer m.wg.Done()
				m.runActive(cctx, b)
			}(b)
		}
	}
	return set
}

// Close stops the health checkers and waits for them.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.cancel != nil {
		m.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// SetHealth is the manual override (PUT /upstreams/{u}/targets/{t}/healthy).
func (m *Manager) SetHealth(upstreamID, target string, healthy bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.states[upstreamID][target]
	if st == nil {
		return fmt.Errorf("target %q of upstream %s not found", target, upstreamID)
	}
	st.set(healthy)
	return nil
}

// UpstreamHealth reports one upstream's targets (by target name) and the
// balancer's overall state, for GET /upstreams/{u}/health.
func (m *Manager) UpstreamHealth(upstreamID string) (map[string]string, string) {
	m.mu.Lock()
	b := m.current[upstreamID]
	m.mu.Unlock()
	out := map[string]string{}
	if b == nil {
		return out, Unhealthy
	}
	for _, t := range b.targets {
		out[t.Name] = b.TargetHealth(t)
	}
	return out, b.Health()
}

// Health reports every target's state, for GET /upstreams/{u}/health and
// the kong_upstream_target_health metric.
func (m *Manager) Health() map[string]map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[string]string{}
	for id, b := range m.current {
		h := map[string]string{}
		for _, t := range b.targets {
			h[t.Name] = b.TargetHealth(t)
		}
		out[id] = h
	}
	return out
}

func (m *Manager) runActive(ctx context.Context, b *Balancer) {
	a := b.Upstream.Healthchecks.Active
	th := thresholds{successes: a.Healthy.Successes, tcpFailures: a.Unhealthy.TCPFailures,
		timeouts: a.Unhealthy.Timeouts, httpFailures: a.Unhealthy.HTTPFailures}
	p := newProber(b.Upstream)
	defer p.close()
	last := map[*Target]time.Time{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	sem := make(chan struct{}, max(1, a.Concurrency))
	for {
		now := time.Now()
		var wg sync.WaitGroup
		for _, t := range b.targets {
			iv := a.Healthy.Interval
			if !t.Healthy() {
				iv = a.Unhealthy.Interval
			}
			if iv <= 0 || now.Sub(last[t]) < time.Duration(iv)*time.Second {
				continue
			}
			last[t] = now
			wg.Add(1)
			sem <- struct{}{}
			go func(t *Target) {
				defer wg.Done()
				defer func() { <-sem }()
				ev := p.probe(ctx, t)
				before := t.Healthy()
				if t.st.record(ev, th) {
					m.log.Info("upstream target health changed", "upstream", b.Upstream.Name, "target", t.Name,
						"healthy", t.Healthy(), "was_healthy", before)
				}
			}(t)
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
