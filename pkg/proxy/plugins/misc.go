package plugins

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
)

type correlationID struct {
	header    string
	generator string
	echo      bool
	prefix    string // uuid#counter: per-instance uuid
	counter   atomic.Uint64
}

func newCorrelationID(p *entity.Plugin, _ *plugin.Env) (any, error) {
	cf := conf(p.Config)
	c := &correlationID{header: cf.str("header_name"), generator: cf.str("generator"), echo: cf.boolean("echo_downstream"), prefix: entity.NewID()}
	if c.header == "" {
		c.header = "Kong-Request-ID"
	}
	if c.generator == "" {
		c.generator = "uuid#counter"
	}
	return c, nil
}

func (c *correlationID) generate(pc *plugin.Context) string {
	switch c.generator {
	case "uuid":
		return entity.NewID()
	case "tracker":
		// Kong: server address, port, pid, connection, requests, time.
		return pc.ClientIP + "-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(c.counter.Add(1), 10) + "-" +
			strconv.FormatFloat(float64(time.Now().UnixMilli())/1000, 'f', 3, 64)
	default:
		return c.prefix + "#" + strconv.FormatUint(c.counter.Add(1), 10)
	}
}

// Access sets the correlation header upstream unless the client sent one.
func (c *correlationID) Access(pc *plugin.Context) {
	id := pc.Req.Header.Get(c.header)
	if id == "" {
		id = c.generate(pc)
		pc.Req.Header.Set(c.header, id)
	}
	if c.echo {
		pc.Set("correlation-id", id)
	}
}

// HeaderFilter echoes the id downstream when echo_downstream is set.
func (c *correlationID) HeaderFilter(pc *plugin.Context) {
	if !c.echo {
		return
	}
	if id, ok := pc.Get("correlation-id").(string); ok {
		pc.ResponseHeader.Set(c.header, id)
	}
}

// defaultTermination are request-termination's default messages.
var defaultTermination = map[int]string{
	401: "Unauthorized", 404: "Not found", 405: "Method not allowed", 500: "An unexpected error occurred",
	502: "Bad Gateway", 503: "Service unavailable",
}

type requestTermination struct {
	status                         int
	message, body, contentType, tr string
	echo                           bool
}

func newRequestTermination(p *entity.Plugin, _ *plugin.Env) (any, error) {
	cf := conf(p.Config)
	t := &requestTermination{status: http.StatusServiceUnavailable, message: cf.str("message"), body: cf.str("body"),
		contentType: cf.str("content_type"), tr: cf.str("trigger"), echo: cf.boolean("echo")}
	if v, ok := cf.num("status_code"); ok {
		t.status = int(v)
	}
	if t.contentType == "" {
		t.contentType = "application/json; charset=utf-8"
	}
	if t.message == "" {
		t.message = defaultTermination[t.status]
	}
	return t, nil
}

// Access terminates the request (when the trigger, if any, is present).
func (t *requestTermination) Access(c *plugin.Context) {
	r := c.Req
	if t.tr != "" {
		q, _ := url.ParseQuery(c.UpstreamQuery)
		if r.Header.Get(t.tr) == "" && !q.Has(t.tr) {
			return
		}
	}
	if t.echo {
		q, _ := url.ParseQuery(r.URL.RawQuery)
		raw, _ := readBody(c)
		headers := map[string]any{}
		for k, vs := range r.Header {
			if len(vs) == 1 {
				headers[strings.ToLower(k)] = vs[0]
			} else {
				headers[strings.ToLower(k)] = vs
			}
		}
		headers["host"] = r.Host
		host, port := r.Host, ""
		if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
			host, port = host[:i], host[i+1:]
		}
		pn, _ := strconv.Atoi(port)
		body, _ := json.Marshal(map[string]any{
			"message": t.message,
			"request": map[string]any{
				"scheme": c.Scheme, "host": host, "port": pn, "headers": headers, "query": q,
				"raw_body": string(raw), "method": r.Method, "path": c.RawPath,
			},
			"matched_route":   c.Route,
			"matched_service": c.Service,
		})
		c.ExitWith(&plugin.Exit{Status: t.status, Body: body, ContentType: "application/json"})
		return
	}
	if t.body != "" {
		c.ExitWith(&plugin.Exit{Status: t.status, Body: []byte(t.body), ContentType: t.contentType})
		return
	}
	if t.message == "" {
		c.ExitWith(&plugin.Exit{Status: t.status, Body: []byte{}})
		return
	}
	b, _ := json.Marshal(map[string]string{"message": t.message})
	c.ExitWith(&plugin.Exit{Status: t.status, Body: b, ContentType: "application/json; charset=utf-8"})
}

type prometheus struct {
	m                                  *plugin.Metrics
	perConsumer, status, latency, band bool
}

func newPrometheus(p *entity.Plugin, env *plugin.Env) (any, error) {
	cf := conf(p.Config)
	return &prometheus{m: env.State.Metrics, perConsumer: cf.boolean("per_consumer"), status: cf.boolean("status_code_metrics"),
		latency: cf.boolean("latency_metrics"), band: cf.boolean("bandwidth_metrics")}, nil
}

// Log records the request in the registry.
func (p *prometheus) Log(c *plugin.Context) {
	s := plugin.Sample{Status: c.Status, Source: "kong", StatusMetrics: p.status, LatencyMetrics: p.latency, BandwidthMetrics: p.band}
	if c.Proxied {
		s.Source = "service"
		s.HasUpstream = true
	}
	if c.Service != nil {
		s.Service = derefOr(c.Service.Name, c.Service.ID)
	}
	if c.Route != nil {
		s.Route = derefOr(c.Route.Name, c.Route.ID)
	}
	if p.perConsumer && c.Consumer != nil {
		s.Consumer = derefOr(c.Consumer.Username, c.Consumer.ID)
	}
	total := time.Since(c.Start)
	s.RequestMS = float64(total.Milliseconds())
	s.UpstreamMS = float64(c.UpstreamLatency.Milliseconds())
	s.KongMS = float64((total - c.UpstreamLatency).Milliseconds())
	s.BytesOut = c.BytesSent
	if c.Req.ContentLength > 0 {
		s.BytesIn = c.Req.ContentLength
	}
	p.m.Observe(&s)
}

func derefOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}
