// Package balancer implements Kong's upstream load balancing: weighted
// round-robin over a shuffled wheel, consistent hashing over a ring of
// `slots` points (hash_on / hash_fallback inputs), least-connections, plus
// active health probes and passive (circuit-breaker) health checks with
// Kong's config fields, counters and the healthy-weight threshold.
//
// A Manager owns the balancers of one gateway. Update compiles a new set from
// a configuration snapshot and keeps each target's health state and
// connection count across updates, so reconfiguring never resets health.
package balancer

import (
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

// ErrNoPeer is returned when no healthy target is available; Kong answers
// 503 "failure to get a peer from the ring-balancer".
var ErrNoPeer = errors.New("failure to get a peer from the ring-balancer")

// Health states, as GET /upstreams/{u}/health names them.
const (
	Healthy         = "HEALTHY"
	Unhealthy       = "UNHEALTHY"
	HealthchecksOff = "HEALTHCHECKS_OFF"
)

// Target is one balanced address.
type Target struct {
	// Name is the target as configured ("host:port").
	Name string
	// Host and Port split Name; Host is used for the Host header.
	Host   string
	Port   int
	Weight int
	st     *state
}

// Addr is the dial address.
func (t *Target) Addr() string { return t.Name }

// Healthy reports the target's current health.
func (t *Target) Healthy() bool { return !t.st.unhealthy.Load() }

// Release must be called when a request picked with Pick is done.
func (t *Target) Release() { t.st.active.Add(-1) }

// state is a target's health and load, kept across updates.
type state struct {
	unhealthy atomic.Bool
	active    atomic.Int64

	mu                                             sync.Mutex
	successes, tcpFailures, timeouts, httpFailures int
}

// Event is one observation about a target.
type Event int

// Events fed to the health checker.
const (
	EventSuccess Event = iota
	EventHTTPFailure
	EventTCPFailure
	EventTimeout
	// EventNone is a probe answer in neither status list: ignored.
	EventNone
)

// thresholds are the counters that flip health (0 disables a criterion).
type thresholds struct {
	successes, tcpFailures, timeouts, httpFailures int
}

// record applies an event with thresholds; returns true when health changed.
func (s *state) record(ev Event, th thresholds) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev {
	case EventSuccess:
		s.tcpFailures, s.timeouts, s.httpFailures = 0, 0, 0
		s.successes++
		if s.unhealthy.Load() && th.successes > 0 && s.successes >= th.successes {
			s.unhealthy.Store(false)
			s.successes = 0
			return true
		}
		return false
	case EventHTTPFailure:
		s.successes = 0
		s.httpFailures++
		return s.trip(th.httpFailures, s.httpFailures)
	case EventTCPFailure:
		s.successes = 0
		s.tcpFailures++
		return s.trip(th.tcpFailures, s.tcpFailures)
	case EventTimeout:
		s.successes = 0
		s.timeouts++
		return s.trip(th.timeouts, s.timeouts)
	}
	return false
}

func (s *state) trip(limit, n int) bool {
	if limit > 0 && n >= limit && !s.unhealthy.Load() {
		s.unhealthy.Store(true)
		s.tcpFailures, s.timeouts, s.httpFailures = 0, 0, 0
		return true
	}
	return false
}

func (s *state) set(healthy bool) {
	s.mu.Lock()
	s.unhealthy.Store(!healthy)
	s.successes, s.tcpFailures, s.timeouts, s.httpFailures = 0, 0, 0, 0
	s.mu.Unlock()
}

type ringPoint struct {
	hash uint32
	t    int
}

// Balancer balances one upstream. It is immutable except for target state.
type Balancer struct {
	Upstream *entity.Upstream
	targets  []*Target
	algo     string
	wheel    []int
	next     atomic.Uint64
	ring     []ringPoint
	total    int
	passive  passiveConfig
	checks   bool
}

type passiveConfig struct {
	enabled   bool
	healthy   map[int]bool
	unhealthy map[int]bool
	th        thresholds
}

// Targets lists the balancer's targets (weight > 0 and 0 alike).
func (b *Balancer) Targets() []*Target { return b.targets }

// HealthchecksOn reports whether any active or passive check is configured.
func (b *Balancer) HealthchecksOn() bool { return b.checks }

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func newBalancer(up *entity.Upstream, tgts []*entity.Target, states map[string]*state) *Balancer {
	b := &Balancer{Upstream: up, algo: up.Algorithm}
	// Kong keeps the last entry for a repeated target; sorting gives the
	// deterministic ring Kong builds (addresses sorted lexically).
	seen := map[string]*entity.Target{}
	var names []string
	for _, t := range tgts {
		if _, ok := seen[t.Target]; !ok {
			names = append(names, t.Target)
		}
		seen[t.Target] = t
	}
	sort.Strings(names)
	g := 0
	for _, n := range names {
		et := seen[n]
		host, portS, err := net.SplitHostPort(n)
		if err != nil {
			host, portS = n, "8000"
		}
		port, _ := strconv.Atoi(portS)
		st := states[n]
		if st == nil {
			st = &state{}
			states[n] = st
		}
		t := &Target{Name: n, Host: host, Port: port, Weight: et.Weight, st: st}
		b.targets = append(b.targets, t)
		if t.Weight > 0 {
			g = gcd(g, t.Weight)
			b.total += t.Weight
		}
	}
	hc := up.Healthchecks
	b.passive = passiveConfig{
		healthy: intSet(hc.Passive.Healthy.HTTPStatuses), unhealthy: intSet(hc.Passive.Unhealthy.HTTPStatuses),
		th: thresholds{successes: hc.Passive.Healthy.Successes, tcpFailures: hc.Passive.Unhealthy.TCPFailures,
			timeouts: hc.Passive.Unhealthy.Timeouts, httpFailures: hc.Passive.Unhealthy.HTTPFailures},
	}
	b.passive.enabled = b.passive.th.tcpFailures > 0 || b.passive.th.timeouts > 0 || b.passive.th.httpFailures > 0
	active := hc.Active.Healthy.Interval > 0 || hc.Active.Unhealthy.Interval > 0
	b.checks = b.passive.enabled || active
	switch b.algo {
	case "consistent-hashing":
		b.buildRing(up.Slots)
	case "least-connections":
	default:
		b.algo = "round-robin"
		for i, t := range b.targets {
			if t.Weight <= 0 {
				continue
			}
			for k := 0; k < t.Weight/g; k++ {
				b.wheel = append(b.wheel, i)
			}
		}
		rand.Shuffle(len(b.wheel), func(i, j int) { b.wheel[i], b.wheel[j] = b.wheel[j], b.wheel[i] })
	}
	return b
}

func intSet(list []int) map[int]bool {
	m := make(map[int]bool, len(list))
	for _, v := range list {
		m[v] = true
	}
	return m
}

func (b *Balancer) buildRing(slots int) {
	if slots <= 0 {
		slots = 10000
	}
	if b.total == 0 {
		return
	}
	// Points per weight unit depend only on slots, never on the other
	// targets, so adding or removing a target moves only its own keys.
	perUnit := max(1, slots/1000)
	for i, t := range b.targets {
		if t.Weight <= 0 {
			continue
		}
		n := min(t.Weight*perUnit, 1<<16)
		for k := 0; k < n; k++ {
			h := crc32.ChecksumIEEE([]byte(t.Name + " " + strconv.Itoa(k)))
			b.ring = append(b.ring, ringPoint{hash: h, t: i})
		}
	}
	sort.Slice(b.ring, func(i, j int) bool {
		if b.ring[i].hash != b.ring[j].hash {
			return b.ring[i].hash < b.ring[j].hash
		}
		return b.ring[i].t < b.ring[j].t
	})
}

// healthyEnough applies healthchecks.threshold (percentage of total weight
// that must be healthy).
func (b *Balancer) healthyEnough() bool {
	th := b.Upstream.Healthchecks.Threshold
	if th <= 0 || b.total == 0 {
		return true
	}
	hw := 0
	for _, t := range b.targets {
		if t.Weight > 0 && t.Healthy() {
			hw += t.Weight
		}
	}
	return float64(hw)*100/float64(b.total) >= th
}

// Pick chooses a target. hashKey is the consistent-hashing input (ignored
// by the other algorithms). exclude, when not nil, is a target to avoid if
// another healthy one exists (a retry). The caller must Release the target.
func (b *Balancer) Pick(hashKey string, exclude *Target) (*Target, error) {
	if !b.healthyEnough() {
		return nil, ErrNoPeer
	}
	var t *Target
	switch b.algo {
	case "consistent-hashing":
		t = b.pickHash(hashKey, exclude)
	case "least-connections":
		t = b.pickLeast(exclude)
	default:
		t = b.pickRR(exclude)
	}
	if t == nil {
		return nil, ErrNoPeer
	}
	t.st.active.Add(1)
	return t, nil
}

func (b *Balancer) usable(t *Target) bool { return t.Weight > 0 && t.Healthy() }

func (b *Balancer) pickRR(exclude *Target) *Target {
	n := len(b.wheel)
	if n == 0 {
		return nil
	}
	var fallback *Target
	for i := 0; i < n; i++ {
		t := b.targets[b.wheel[b.next.Add(1)%uint64(n)]]
		if !b.usable(t) {
			continue
		}
		if t == exclude {
			fallback = t
			continue
		}
		return t
	}
	return fallback
}

func (b *Balancer) pickLeast(exclude *Target) *Target {
	var best *Target
	var bestScore float64
	for _, t := range b.targets {
		if !b.usable(t) || (t == exclude && len(b.targets) > 1) {
			continue
		}
		score := float64(t.st.active.Load()+1) / float64(t.Weight)
		if best == nil || score < bestScore {
			best, bestScore = t, score
		}
	}
	if best == nil && exclude != nil && b.usable(exclude) {
		return exclude
	}
	return best
}

func (b *Balancer) pickHash(key string, exclude *Target) *Target {
	n := len(b.ring)
	if n == 0 {
		return nil
	}
	h := crc32.ChecksumIEEE([]byte(key))
	i := sort.Search(n, func(i int) bool { return b.ring[i].hash >= h })
	var fallback *Target
	for k := 0; k < n; k++ {
		t := b.targets[b.ring[(i+k)%n].t]
		if !b.usable(t) {
			continue
		}
		if t == exclude {
			fallback = t
			continue
		}
		return t
	}
	return fallback
}

// Report feeds a proxied response (status > 0) or a connection failure /
// timeout to the passive health checker.
func (b *Balancer) Report(t *Target, status int, connErr, timeout bool) {
	if !b.passive.enabled && b.passive.th.successes == 0 {
		return
	}
	var ev Event
	switch {
	case timeout:
		ev = EventTimeout
	case connErr:
		ev = EventTCPFailure
	case b.passive.unhealthy[status]:
		ev = EventHTTPFailure
	case b.passive.healthy[status]:
		ev = EventSuccess
	default:
		return
	}
	t.st.record(ev, b.passive.th)
}

// TargetHealth returns a target's state name.
func (b *Balancer) TargetHealth(t *Target) string {
	if !b.checks {
		return HealthchecksOff
	}
	if t.Healthy() {
		return Healthy
	}
	return Unhealthy
}

// Health returns the balancer's overall state (HEALTHY when the threshold
// is met).
func (b *Balancer) Health() string {
	if b.healthyEnough() && b.anyUsable() {
		return Healthy
	}
	return Unhealthy
}

func (b *Balancer) anyUsable() bool {
	for _, t := range b.targets {
		if b.usable(t) {
			return true
		}
	}
	return false
}
