// Package metrics holds the Prometheus counters of kiln's netboot services
// in a registry of their own (no global state) and serves /metrics.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the netboot counters. All methods are safe on a nil *Metrics.
type Metrics struct {
	Registry    *prometheus.Registry
	httpReqs    *prometheus.CounterVec
	dhcpReplies *prometheus.CounterVec
	dhcpIgnored *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	syslogLines *prometheus.CounterVec
}

// New registers the counters (and Go/process collectors) in a new registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		httpReqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_http_requests_total",
			Help: "HTTP requests served, by route and status code."}, []string{"route", "code"}),
		dhcpReplies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_dhcp_replies_total",
			Help: "DHCP replies sent, by message type."}, []string{"type"}),
		dhcpIgnored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_dhcp_ignored_total",
			Help: "DHCP requests not answered, by reason."}, []string{"reason"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_bytes_served_total",
			Help: "Bytes of files sent to machines, by protocol."}, []string{"protocol"}),
		syslogLines: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_syslog_messages_total",
			Help: "Syslog messages received, by whether the sender is a known machine."}, []string{"known"}),
	}
	m.Registry.MustRegister(m.httpReqs, m.dhcpReplies, m.dhcpIgnored, m.bytes, m.syslogLines,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// DHCPReply counts a reply.
func (m *Metrics) DHCPReply(_, msgType string) {
	if m != nil {
		m.dhcpReplies.WithLabelValues(msgType).Inc()
	}
}

// DHCPIgnored counts an unanswered request.
func (m *Metrics) DHCPIgnored(reason string) {
	if m != nil {
		m.dhcpIgnored.WithLabelValues(reason).Inc()
	}
}

// BytesServed adds sent bytes.
func (m *Metrics) BytesServed(protocol string, n int64) {
	if m != nil && n > 0 {
		m.bytes.WithLabelValues(protocol).Add(float64(n))
	}
}

// SyslogMessage counts a received syslog line.
func (m *Metrics) SyslogMessage(known bool) {
	if m != nil {
		k := "false"
		if known {
			k = "true"
		}
		m.syslogLines.WithLabelValues(k).Inc()
	}
}

// HTTPRequest counts a request.
func (m *Metrics) HTTPRequest(route, code string) {
	if m != nil {
		m.httpReqs.WithLabelValues(route, code).Inc()
	}
}
