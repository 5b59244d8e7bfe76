package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
)

// httpLog sends Kong's log serializer JSON for every request to an HTTP
// endpoint, batched through a logQueue that outlives configuration
// snapshots (one per plugin id and config).
type httpLog struct {
	q *logQueue
}

// httpLogSender posts batches to the endpoint.
type httpLogSender struct {
	endpoint, method, contentType string
	headers                       map[string]string
	client                        *http.Client
}

func newHTTPLog(p *entity.Plugin, env *plugin.Env) (any, error) {
	cf := conf(p.Config)
	if m, ok := p.Config["custom_fields_by_lua"].(map[string]any); ok && len(m) > 0 {
		return nil, fmt.Errorf("custom_fields_by_lua is set but kiln does not run Lua")
	}
	endpoint := cf.str("http_endpoint")
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("config.http_endpoint %q is not a URL", endpoint)
	}
	raw, _ := json.Marshal(p.Config)
	sum := sha256.Sum256(raw)
	hash := hex.EncodeToString(sum[:8])
	// The queue outlives configuration snapshots while the plugin's config
	// is unchanged; a replaced queue delivers what it holds, then its
	// goroutine ends.
	var shared *plugin.Shared
	if env.State != nil {
		shared = env.State.Shared
	}
	q := shared.Get(p.ID, func(v any) bool { return v.(*logQueue).cfg.version == hash }, func() any {
		cfg := httpLogQueueConfig(p, cf, endpoint)
		cfg.version = hash
		return newLogQueue(cfg)
	}).(*logQueue)
	return &httpLog{q: q}, nil
}

func msDuration(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

func httpLogQueueConfig(p *entity.Plugin, cf conf, endpoint string) queueConfig {
	s := &httpLogSender{endpoint: endpoint, method: cf.str("method"), contentType: cf.str("content_type"), headers: map[string]string{}}
	if s.method == "" {
		s.method = http.MethodPost
	}
	if s.contentType == "" {
		s.contentType = "application/json"
	}
	for k, v := range cf.sub("headers") {
		if sv, ok := v.(string); ok {
			s.headers[k] = sv
		}
	}
	timeout, ok := cf.num("timeout")
	if !ok {
		timeout = 10000
	}
	keepalive, ok := cf.num("keepalive")
	if !ok {
		keepalive = 60000
	}
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: msDuration(keepalive),
		DialContext: (&net.Dialer{Timeout: msDuration(timeout)}).DialContext}
	s.client = &http.Client{Transport: tr, Timeout: msDuration(timeout)}

	qc := cf.sub("queue")
	num := func(c conf, k string, def float64) float64 {
		if v, ok := c.num(k); ok {
			return v
		}
		return def
	}
	cfg := queueConfig{
		maxBatch:         int(num(qc, "max_batch_size", 1)),
		maxCoalescing:    time.Duration(num(qc, "max_coalescing_delay", 1) * float64(time.Second)),
		maxEntries:       int(num(qc, "max_entries", 10000)),
		maxBytes:         int(num(qc, "max_bytes", 0)),
		maxRetryTime:     time.Duration(num(qc, "max_retry_time", 60) * float64(time.Second)),
		initialRetry:     time.Duration(num(qc, "initial_retry_delay", 0.01) * float64(time.Second)),
		maxRetryDelay:    time.Duration(num(qc, "max_retry_delay", 60) * float64(time.Second)),
		name:             "http-log " + p.ID,
		handler:          s.send,
		handlerTimeLimit: msDuration(timeout) + time.Second,
	}
	// Kong's deprecated flat fields map onto the queue when set.
	if v, ok := cf.num("queue_size"); ok && v >= 1 {
		cfg.maxBatch = int(v)
	}
	if v, ok := cf.num("flush_timeout"); ok && v >= 0 {
		cfg.maxCoalescing = time.Duration(v * float64(time.Second))
	}
	return cfg
}

// send posts one batch: a single entry as a JSON object, several as an
// array.
func (s *httpLogSender) send(ctx context.Context, batch [][]byte) error {
	var body []byte
	if len(batch) == 1 {
		body = batch[0]
	} else {
		body = append([]byte{'['}, bytes.Join(batch, []byte{','})...)
		body = append(body, ']')
	}
	req, err := http.NewRequestWithContext(ctx, s.method, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range s.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", s.contentType)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("request to %s returned status code %d", redactURL(s.endpoint), resp.StatusCode)
	}
	return nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid url)"
	}
	return u.Redacted()
}

// HeaderFilter snapshots the response headers for the log entry (the
// upstream's header values are not kept after the response).
func (h *httpLog) HeaderFilter(c *plugin.Context) {
	c.Set("http-log.response-headers", headerObject(c.ResponseHeader, false))
}

// Log serializes the request and enqueues it.
func (h *httpLog) Log(c *plugin.Context) {
	b, err := json.Marshal(serializeLog(c))
	if err != nil {
		return
	}
	h.q.add(b)
}

// headerObject renders headers as Kong's serializer does: lower-case names,
// a string for one value, an array for several.
func headerObject(h http.Header, redact bool) map[string]any {
	out := make(map[string]any, len(h))
	for k, vs := range h {
		name := strings.ToLower(k)
		if redact && (name == "authorization" || name == "proxy-authorization") {
			out[name] = "REDACTED"
			continue
		}
		if len(vs) == 1 {
			out[name] = strings.Clone(vs[0])
		} else {
			cp := make([]string, len(vs))
			for i, v := range vs {
				cp[i] = strings.Clone(v)
			}
			out[name] = cp
		}
	}
	return out
}

func queryObject(raw string) map[string]any {
	out := map[string]any{}
	q, _ := url.ParseQuery(raw)
	for k, vs := range q {
		switch {
		case len(vs) == 1 && vs[0] == "" && !strings.Contains(raw, k+"="):
			out[k] = true
		case len(vs) == 1:
			out[k] = vs[0]
		default:
			out[k] = vs
		}
	}
	return out
}

// serializeLog builds Kong's basic log serializer object.
func serializeLog(c *plugin.Context) map[string]any {
	r := c.Req
	total := time.Since(c.Start)
	reqURI := r.URL.RequestURI()
	if c.RawPath != "" {
		reqURI = c.RawPath
		if r.URL.RawQuery != "" {
			reqURI += "?" + r.URL.RawQuery
		}
	}
	reqSize := int64(len(r.Method) + len(reqURI) + 12)
	for k, vs := range r.Header {
		for _, v := range vs {
			reqSize += int64(len(k) + len(v) + 4)
		}
	}
	if r.ContentLength > 0 {
		reqSize += r.ContentLength
	}
	respHeaders, _ := c.Get("http-log.response-headers").(map[string]any)
	if respHeaders == nil {
		respHeaders = map[string]any{}
	}
	// Kong reports bytes_sent: the body and the response head.
	respSize := c.BytesSent + int64(len("HTTP/1.1 200 OK\r\n\r\n"))
	for k, v := range respHeaders {
		switch v := v.(type) {
		case string:
			respSize += int64(len(k) + len(v) + 4)
		case []string:
			for _, x := range v {
				respSize += int64(len(k) + len(x) + 4)
			}
		}
	}
	upstreamURI := c.UpstreamPath
	if c.UpstreamQuery != "" {
		upstreamURI += "?" + c.UpstreamQuery
	}
	proxyMS := int64(-1)
	source := "kong"
	if c.Proxied {
		proxyMS = c.UpstreamLatency.Milliseconds()
		source = "upstream"
	}
	entry := map[string]any{
		"request": map[string]any{
			"id":          c.RequestID,
			"method":      r.Method,
			"uri":         reqURI,
			"url":         c.Scheme + "://" + r.Host + reqURI,
			"querystring": queryObject(r.URL.RawQuery),
			"headers":     headerObject(r.Header, true),
			"size":        reqSize,
		},
		"upstream_uri": upstreamURI,
		"response": map[string]any{
			"status":  c.Status,
			"headers": respHeaders,
			"size":    respSize,
		},
		"latencies": map[string]any{
			"request": total.Milliseconds(),
			"kong":    (total - c.UpstreamLatency).Milliseconds(),
			"proxy":   proxyMS,
			"receive": 0,
		},
		"client_ip":      c.ClientIP,
		"started_at":     c.Start.UnixMilli(),
		"source":         source,
		"workspace_name": "default",
	}
	if c.Proxied {
		entry["upstream_status"] = strconv.Itoa(c.Status)
	}
	if c.Upstream != "" {
		try := map[string]any{"balancer_latency": 0}
		if host, port, err := net.SplitHostPort(c.Upstream); err == nil {
			p, _ := strconv.Atoi(port)
			try["ip"], try["port"] = host, p
		}
		entry["tries"] = []any{try}
	}
	if c.Route != nil {
		entry["route"] = c.Route
	}
	if c.Service != nil {
		entry["service"] = c.Service
	}
	if c.Consumer != nil {
		entry["consumer"] = c.Consumer
		if c.Credential != nil {
			entry["authenticated_entity"] = map[string]any{"id": c.Credential.ID, "consumer_id": map[string]any{"id": c.Consumer.ID}}
		}
	}
	return entry
}
