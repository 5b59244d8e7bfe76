package balancer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
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
	okStatus, badStatus := intSet(a.Healthy.HTTPStatuses), intSet(a.Unhealthy.HTTPStatuses)
	timeout := time.Duration(a.Timeout * float64(time.Second))
	if timeout <= 0 {
		timeout = time.Second
	}
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: !a.HTTPSVerifyCertificate}, //nolint:gosec // Kong's https_verify_certificate=false
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
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
				ev := probe(ctx, client, a, t, timeout, okStatus, badStatus)
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

func probe(ctx context.Context, client *http.Client, a entity.ActiveHealthcheck, t *Target, timeout time.Duration, ok, bad map[int]bool) Event {
	if a.Type == "tcp" {
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, "tcp", t.Name)
		if err != nil {
			return connEvent(err)
		}
		_ = c.Close()
		return EventSuccess
	}
	scheme := "http"
	if a.Type == "https" {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+t.Name+a.HTTPPath, nil)
	if err != nil {
		return EventTCPFailure
	}
	for k, vs := range a.Headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if a.HTTPSSNI != nil {
		req.Host = *a.HTTPSSNI
	}
	resp, err := client.Do(req)
	if err != nil {
		return connEvent(err)
	}
	_ = resp.Body.Close()
	switch {
	case ok[resp.StatusCode]:
		return EventSuccess
	case bad[resp.StatusCode]:
		return EventHTTPFailure
	}
	return EventNone
}

func connEvent(err error) Event {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return EventTimeout
	}
	return EventTCPFailure
}
