package plugin

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

// Credential identifies what authenticated a consumer.
type Credential struct {
	ID         string
	Identifier string // key, username...
}

// Exit is a response a plugin produced instead of proxying.
type Exit struct {
	Status int
	// Body is sent as is with ContentType when set; otherwise Message is
	// rendered as a Kong error body.
	Body        []byte
	ContentType string
	Message     string
}

// Context is the state one request carries through the plugin phases.
// The gateway reuses Contexts; plugins must not keep references to them.
type Context struct {
	Req *http.Request
	// ClientIP is the client's address (Kong's
	// kong.client.get_forwarded_ip): the peer's, or for a peer in
	// trusted_ips the one its real_ip_header carries.
	ClientIP string
	// PeerIP is the connecting peer's address (kong.client.get_ip) and
	// Trusted whether it is in trusted_ips (kong.ip.is_trusted), which
	// makes its X-Forwarded-* headers believed.
	PeerIP  string
	Trusted bool
	Scheme  string
	// RequestID is the X-Kong-Request-Id value.
	RequestID string
	Route     *entity.Route
	Service   *entity.Service
	// Captures are the regex path captures (see router.Match).
	Captures []string
	Names    []string
	// Prefix is the part of the path the route matched; RawPath the
	// request path as received (without query).
	Prefix  string
	RawPath string

	Consumer   *entity.Consumer
	Credential *Credential
	Anonymous  bool
	// AuthGroups are the ACL groups of the authenticated consumer (cached).
	AuthGroups []string

	// UpstreamPath / UpstreamQuery are what will be sent upstream; plugins
	// may rewrite them in the access phase.
	UpstreamPath  string
	UpstreamQuery string
	// UpstreamMethod overrides the method when non-empty.
	UpstreamMethod string

	// RespHeader collects headers for the client response that access
	// plugins set (rate-limit headers...); they are applied to whatever
	// response is sent, proxied or not.
	RespHeader http.Header

	// Response phase: the status and headers about to be sent.
	Status         int
	ResponseHeader http.Header
	// Proxied is true when the response came from the upstream.
	Proxied bool

	// Latencies for logging and metrics.
	Start           time.Time
	ProxyLatency    time.Duration
	UpstreamLatency time.Duration
	BytesSent       int64
	BytesReceived   int64
	Upstream        string // target address used

	Env  *Env
	exit *Exit

	// Offload, when set (by the gateway, for a request served by an
	// event loop), runs fn in a goroutine of its own and returns when fn
	// has: see Blocking.
	Offload func(fn func())

	resolved    [24]*Instance
	nResolved   int
	vars        map[string]any
	respHdrBase http.Header
	// cred and vals back Credential and one-value header slices for the
	// duration of a request, so the common phases do not allocate.
	cred Credential
	vals []string
}

// Reset prepares a Context for a new request.
func (c *Context) Reset() {
	h := c.respHdrBase
	clear(h)
	clear(c.vars)
	vars := c.vars
	if h == nil {
		h = http.Header{}
	}
	clear(c.vals)
	*c = Context{respHdrBase: h, vars: vars, vals: c.vals[:0]}
	c.RespHeader = h
}

// Blocking runs fn, which waits on something other than the request's own
// connection (a database query, a call to another server). The gateway
// serves many connections from each event loop thread; there fn runs in a
// goroutine of its own while the loop goes on serving the others, instead
// of holding all of them up for as long as fn waits. fn must not read the
// request body or write the response (both belong to the loop); it may
// set the Context's fields, which the request sees once Blocking returns.
func (c *Context) Blocking(fn func()) {
	if c.Offload != nil {
		c.Offload(fn)
		return
	}
	fn()
}

// Value returns v as a one-element header value slice backed by the
// Context (valid for the request; len == cap, so appending copies).
func (c *Context) Value(v string) []string {
	n := len(c.vals)
	c.vals = append(c.vals, v)
	return c.vals[n : n+1 : n+1]
}

// Set stores a per-request value shared between a plugin's phases.
func (c *Context) Set(key string, v any) {
	if c.vars == nil {
		c.vars = map[string]any{}
	}
	c.vars[key] = v
}

// Get returns a value stored with Set.
func (c *Context) Get(key string) any { return c.vars[key] }

// SetRespHeader sets a client response header with its exact name.
func (c *Context) SetRespHeader(name, value string) {
	if c.RespHeader == nil {
		c.RespHeader = http.Header{}
		c.respHdrBase = c.RespHeader
	}
	c.RespHeader[name] = c.Value(value)
}

// ExitWith ends the request with a plugin response.
func (c *Context) ExitWith(e *Exit) { c.exit = e }

// Error ends the request with Kong's error body for status and message.
func (c *Context) Error(status int, message string) {
	c.exit = &Exit{Status: status, Message: message}
}

// Exited returns the plugin response, if any.
func (c *Context) Exited() *Exit { return c.exit }

// ConsumerID is the authenticated consumer's id or "".
func (c *Context) ConsumerID() string {
	if c.Consumer == nil {
		return ""
	}
	return c.Consumer.ID
}

// consumerHeaders are the upstream headers Authenticate sets; copies the
// client sent are removed.
var consumerHeaders = [...]string{"X-Consumer-Id", "X-Consumer-Custom-Id", "X-Consumer-Username", "X-Credential-Identifier", "X-Anonymous-Consumer"}

// AuthenticateCredential is Authenticate with a credential given by its id
// and identifier (stored in the Context, not allocated).
func (c *Context) AuthenticateCredential(consumer *entity.Consumer, id, identifier string) {
	c.cred = Credential{ID: id, Identifier: identifier}
	c.Authenticate(consumer, &c.cred)
}

// Authenticate records the consumer and sets the upstream headers Kong adds
// (X-Consumer-ID, X-Consumer-Custom-ID, X-Consumer-Username,
// X-Credential-Identifier, X-Anonymous-Consumer).
func (c *Context) Authenticate(consumer *entity.Consumer, cred *Credential) {
	c.Consumer = consumer
	c.Credential = cred
	h := c.Req.Header
	// Client-sent copies are never forwarded (canonical names: no
	// per-request canonicalization).
	for _, k := range consumerHeaders {
		// A look-up in a small map compares keys without hashing them;
		// delete would hash every name.
		if _, ok := h[k]; ok {
			delete(h, k)
		}
	}
	if consumer != nil {
		h["X-Consumer-Id"] = c.Value(consumer.ID)
		if consumer.CustomID != nil {
			h["X-Consumer-Custom-Id"] = c.Value(*consumer.CustomID)
		}
		if consumer.Username != nil {
			h["X-Consumer-Username"] = c.Value(*consumer.Username)
		}
	}
	if cred != nil && cred.Identifier != "" {
		h["X-Credential-Identifier"] = c.Value(cred.Identifier)
	}
	if cred == nil && consumer != nil {
		c.Anonymous = true
		h["X-Anonymous-Consumer"] = []string{"true"}
	}
}

// RunAccess runs the access phase of ch. After the first Exit no other
// access handler runs, but the remaining plugins are still resolved: as in
// Kong, the header filter and log phases run for every plugin that applies
// (a logging plugin records the 401 an auth plugin answered).
func (c *Context) RunAccess(ch *Chain) {
	c.nResolved = 0
	for i := range ch.slots {
		in := ch.slots[i].resolve(c.ConsumerID())
		if in == nil || !in.AppliesTo(c.Scheme) {
			continue
		}
		if c.nResolved < len(c.resolved) {
			c.resolved[c.nResolved] = in
			c.nResolved++
		}
		if c.exit != nil {
			continue
		}
		if a, ok := in.Handler.(Accessor); ok {
			a.Access(c)
		}
	}
}

// NeedsResponse reports whether a plugin that ran in the access phase has
// a header or body filter (otherwise the response head can be written
// without building a header map).
func (c *Context) NeedsResponse() bool {
	for i := 0; i < c.nResolved; i++ {
		switch c.resolved[i].Handler.(type) {
		case HeaderFilter, BodyFilter:
			return true
		}
	}
	return false
}

// RunHeaderFilter runs the header filter phase of the instances resolved in
// the access phase.
func (c *Context) RunHeaderFilter() {
	for i := 0; i < c.nResolved; i++ {
		if f, ok := c.resolved[i].Handler.(HeaderFilter); ok {
			f.HeaderFilter(c)
		}
	}
}

// WantsBody reports whether a body filter needs the whole response body.
func (c *Context) WantsBody() bool {
	for i := 0; i < c.nResolved; i++ {
		if f, ok := c.resolved[i].Handler.(BodyFilter); ok && f.WantsBody(c) {
			return true
		}
	}
	return false
}

// RunBodyFilter passes body through every body filter.
func (c *Context) RunBodyFilter(body []byte) []byte {
	for i := 0; i < c.nResolved; i++ {
		if f, ok := c.resolved[i].Handler.(BodyFilter); ok && f.WantsBody(c) {
			body = f.BodyFilter(c, body)
		}
	}
	return body
}

// RunLog runs the log phase.
func (c *Context) RunLog() {
	for i := 0; i < c.nResolved; i++ {
		if l, ok := c.resolved[i].Handler.(Logger); ok {
			l.Log(c)
		}
	}
}

// statusMessages are the default messages of Kong's kong.response.error.
var statusMessages = map[int]string{
	400: "Bad request", 401: "Unauthorized", 402: "Payment required", 403: "Forbidden", 404: "Not found",
	405: "Method not allowed", 406: "Not acceptable", 407: "Proxy authentication required", 408: "Request timeout",
	409: "Conflict", 410: "Gone", 411: "Length required", 412: "Precondition failed", 413: "Payload too large",
	414: "URI too long", 415: "Unsupported media type", 416: "Range not satisfiable", 417: "Expectation failed",
	418: "I'm a teapot", 421: "Misdirected request", 422: "Unprocessable entity", 423: "Locked",
	424: "Failed dependency", 425: "Too early", 426: "Upgrade required", 428: "Precondition required",
	429: "Too many requests", 431: "Request header fields too large", 451: "Unavailable for legal reasons",
	494: "Request header or cookie too large", 500: "An unexpected error occurred", 501: "Not implemented",
	502: "An invalid response was received from the upstream server",
	503: "The upstream server is currently unavailable", 504: "The upstream server is timing out",
	505: "HTTP version not supported",
}

// DefaultMessage is Kong's default error message for status.
func DefaultMessage(status int) string {
	if m, ok := statusMessages[status]; ok {
		return m
	}
	return "The upstream server responded with " + strconv.Itoa(status)
}

// ErrorBody renders Kong's error body for message in the content type the
// client's Accept header asks for (JSON unless it prefers text, HTML or XML).
func ErrorBody(accept, message, requestID string) (contentType string, body []byte) {
	switch {
	case strings.Contains(accept, "application/json") || accept == "" || strings.Contains(accept, "*/*") && !strings.Contains(accept, "text/"):
		b, _ := json.Marshal(struct {
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		}{message, requestID})
		return "application/json; charset=utf-8", b
	case strings.Contains(accept, "text/html"):
		return "text/html; charset=utf-8", []byte("<!doctype html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<h1>Error</h1>\n<p>" +
			htmlEscape(message) + ".</p>\n<p>request_id: " + requestID + "</p>\n</body>\n</html>\n")
	case strings.Contains(accept, "application/xml") || strings.Contains(accept, "text/xml"):
		return "application/xml; charset=utf-8", []byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n  <message>" +
			htmlEscape(message) + "</message>\n  <requestid>" + requestID + "</requestid>\n</error>\n")
	default:
		return "text/plain; charset=utf-8", []byte(message + "\nrequest_id: " + requestID + "\n")
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
