package plugin

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// latencyBuckets are Kong's prometheus plugin default buckets (ms).
var latencyBuckets = []float64{1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000, 3000, 6000}

type reqKey struct {
	service, route, code, source, consumer string
}

type latKey struct {
	kind, service, route string
}

type bwKey struct {
	service, route, direction, consumer string
}

type histogram struct {
	counts []uint64
	sum    float64
	count  uint64
}

// Metrics is the gateway's Prometheus registry, exposed with Kong's metric
// names (kong_http_requests_total, kong_*_latency_ms, kong_bandwidth_bytes,
// kong_nginx_*, kong_upstream_target_health...).
type Metrics struct {
	mu        sync.Mutex
	requests  map[reqKey]uint64
	latencies map[latKey]*histogram
	bandwidth map[bwKey]uint64

	// Connection gauges maintained by the server.
	ConnsAccepted atomic.Int64
	ConnsActive   atomic.Int64
	TotalRequests atomic.Int64
	// TargetHealth reports upstream target health when set.
	TargetHealth func() []TargetHealth
	// DatastoreReachable reports the database state when set.
	DatastoreReachable func() bool
	NodeID, Version    string
}

// TargetHealth is one upstream target's state for kong_upstream_target_health.
type TargetHealth struct {
	Upstream, Target, Address, State string
}

// NewMetrics returns an empty registry.
func NewMetrics() *Metrics {
	return &Metrics{requests: map[reqKey]uint64{}, latencies: map[latKey]*histogram{}, bandwidth: map[bwKey]uint64{}}
}

// Sample is one request as the prometheus plugin records it.
type Sample struct {
	Service, Route, Consumer string
	Status                   int
	Source                   string // "service" or "kong"
	KongMS, UpstreamMS       float64
	RequestMS                float64
	HasUpstream              bool
	BytesIn, BytesOut        int64
	StatusMetrics            bool
	LatencyMetrics           bool
	BandwidthMetrics         bool
}

// Observe records a request.
func (m *Metrics) Observe(s *Sample) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.StatusMetrics {
		m.requests[reqKey{s.Service, s.Route, statusText(s.Status), s.Source, s.Consumer}]++
	}
	if s.LatencyMetrics {
		m.observe(latKey{"kong", s.Service, s.Route}, s.KongMS)
		m.observe(latKey{"request", s.Service, s.Route}, s.RequestMS)
		if s.HasUpstream {
			m.observe(latKey{"upstream", s.Service, s.Route}, s.UpstreamMS)
		}
	}
	if s.BandwidthMetrics {
		m.bandwidth[bwKey{s.Service, s.Route, "ingress", s.Consumer}] += uint64(s.BytesIn)
		m.bandwidth[bwKey{s.Service, s.Route, "egress", s.Consumer}] += uint64(s.BytesOut)
	}
}

func statusText(code int) string {
	return fmt.Sprint(code)
}

func (m *Metrics) observe(k latKey, v float64) {
	h := m.latencies[k]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets))}
		m.latencies[k] = h
	}
	for i, b := range latencyBuckets {
		if v <= b {
			h.counts[i]++
		}
	}
	h.sum += v
	h.count++
}

func esc(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// WriteText writes the registry in the Prometheus text format.
func (m *Metrics) WriteText(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# HELP kong_datastore_reachable Datastore reachable from Kong, 0 is unreachable\n# TYPE kong_datastore_reachable gauge\n")
	reach := 1
	if m.DatastoreReachable != nil && !m.DatastoreReachable() {
		reach = 0
	}
	fmt.Fprintf(&b, "kong_datastore_reachable %d\n", reach)
	b.WriteString("# HELP kong_node_info Kong Node metadata information\n# TYPE kong_node_info gauge\n")
	fmt.Fprintf(&b, "kong_node_info{node_id=\"%s\",version=\"%s\"} 1\n", esc(m.NodeID), esc(m.Version))
	b.WriteString("# HELP kong_nginx_connections_total Number of connections by subsystem\n# TYPE kong_nginx_connections_total gauge\n")
	fmt.Fprintf(&b, "kong_nginx_connections_total{node_id=\"%s\",subsystem=\"http\",state=\"accepted\"} %d\n", esc(m.NodeID), m.ConnsAccepted.Load())
	fmt.Fprintf(&b, "kong_nginx_connections_total{node_id=\"%s\",subsystem=\"http\",state=\"active\"} %d\n", esc(m.NodeID), m.ConnsActive.Load())
	b.WriteString("# HELP kong_nginx_requests_total Number of requests total\n# TYPE kong_nginx_requests_total gauge\n")
	fmt.Fprintf(&b, "kong_nginx_requests_total{node_id=\"%s\",subsystem=\"http\"} %d\n", esc(m.NodeID), m.TotalRequests.Load())
	if m.TargetHealth != nil {
		b.WriteString("# HELP kong_upstream_target_health Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, value is 1 when state is populated.\n# TYPE kong_upstream_target_health gauge\n")
		for _, t := range m.TargetHealth() {
			for _, st := range []string{"healthchecks_off", "healthy", "unhealthy", "dns_error"} {
				v := 0
				if st == t.State {
					v = 1
				}
				fmt.Fprintf(&b, "kong_upstream_target_health{upstream=\"%s\",target=\"%s\",address=\"%s\",state=\"%s\",subsystem=\"http\"} %d\n",
					esc(t.Upstream), esc(t.Target), esc(t.Address), st, v)
			}
		}
	}
	m.mu.Lock()
	if len(m.requests) > 0 {
		b.WriteString("# HELP kong_http_requests_total HTTP status codes per consumer/service/route in Kong\n# TYPE kong_http_requests_total counter\n")
		keys := make([]reqKey, 0, len(m.requests))
		for k := range m.requests {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			fmt.Fprintf(&b, "kong_http_requests_total{service=\"%s\",route=\"%s\",code=\"%s\",source=\"%s\",workspace=\"default\",consumer=\"%s\"} %d\n",
				esc(k.service), esc(k.route), k.code, k.source, esc(k.consumer), m.requests[k])
		}
	}
	for _, kind := range []string{"kong", "upstream", "request"} {
		var keys []latKey
		for k := range m.latencies {
			if k.kind == kind {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			continue
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i].service+keys[i].route < keys[j].service+keys[j].route })
		name := "kong_" + kind + "_latency_ms"
		fmt.Fprintf(&b, "# HELP %s Latency added by %s in ms\n# TYPE %s histogram\n", name, kind, name)
		for _, k := range keys {
			h := m.latencies[k]
			lbl := fmt.Sprintf("service=\"%s\",route=\"%s\",workspace=\"default\"", esc(k.service), esc(k.route))
			for i, bnd := range latencyBuckets {
				fmt.Fprintf(&b, "%s_bucket{%s,le=\"%05d\"} %d\n", name, lbl, int(bnd), h.counts[i])
			}
			fmt.Fprintf(&b, "%s_bucket{%s,le=\"+Inf\"} %d\n%s_count{%s} %d\n%s_sum{%s} %g\n", name, lbl, h.count, name, lbl, h.count, name, lbl, h.sum)
		}
	}
	if len(m.bandwidth) > 0 {
		b.WriteString("# HELP kong_bandwidth_bytes Total bandwidth (ingress/egress) throughput in bytes\n# TYPE kong_bandwidth_bytes counter\n")
		keys := make([]bwKey, 0, len(m.bandwidth))
		for k := range m.bandwidth {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			fmt.Fprintf(&b, "kong_bandwidth_bytes{service=\"%s\",route=\"%s\",direction=\"%s\",workspace=\"default\",consumer=\"%s\"} %d\n",
				esc(k.service), esc(k.route), k.direction, esc(k.consumer), m.bandwidth[k])
		}
	}
	m.mu.Unlock()
	_, err := io.WriteString(w, b.String())
	return err
}
