package plugins

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
)

// kv is one "name:value" entry of a transformer list.
type kv struct{ name, value string }

func pairs(list []string) []kv {
	out := make([]kv, 0, len(list))
	for _, s := range list {
		n, v, _ := strings.Cut(s, ":")
		out = append(out, kv{strings.TrimSpace(n), v})
	}
	return out
}

// ops are the five transformer operations over one target, in Kong's
// order: remove → rename → replace → add → append.
type ops struct {
	remove                   []string
	rename, replace, add, ap []kv
	types                    map[string][]string // json_types per op
}

func (o ops) empty() bool {
	return len(o.remove)+len(o.rename)+len(o.replace)+len(o.add)+len(o.ap) == 0
}

func opsFor(cf conf, target string) ops {
	o := ops{
		remove:  cf.sub("remove").strs(target),
		rename:  pairs(cf.sub("rename").strs(target)),
		replace: pairs(cf.sub("replace").strs(target)),
		add:     pairs(cf.sub("add").strs(target)),
		ap:      pairs(cf.sub("append").strs(target)),
	}
	if target == "json" {
		o.types = map[string][]string{
			"replace": cf.sub("replace").strs("json_types"),
			"add":     cf.sub("add").strs("json_types"),
			"append":  cf.sub("append").strs("json_types"),
		}
	}
	return o
}

// applyHeaders runs ops over a header map (names case-insensitive).
func (o ops) applyHeaders(h http.Header, render func(string) string) {
	for _, n := range o.remove {
		h.Del(n)
	}
	for _, p := range o.rename {
		if vs := h.Values(p.name); len(vs) > 0 {
			vs = append([]string(nil), vs...)
			h.Del(p.name)
			h[http.CanonicalHeaderKey(p.value)] = vs
		}
	}
	for _, p := range o.replace {
		if h.Get(p.name) != "" {
			h.Set(p.name, render(p.value))
		}
	}
	for _, p := range o.add {
		if h.Get(p.name) == "" {
			h.Set(p.name, render(p.value))
		}
	}
	for _, p := range o.ap {
		h.Add(p.name, render(p.value))
	}
}

// applyValues runs ops over query or form values.
func (o ops) applyValues(v url.Values, render func(string) string) {
	for _, n := range o.remove {
		v.Del(n)
	}
	for _, p := range o.rename {
		if vs, ok := v[p.name]; ok {
			v.Del(p.name)
			v[p.value] = vs
		}
	}
	for _, p := range o.replace {
		if v.Has(p.name) {
			v.Set(p.name, render(p.value))
		}
	}
	for _, p := range o.add {
		if !v.Has(p.name) {
			v.Set(p.name, render(p.value))
		}
	}
	for _, p := range o.ap {
		v.Add(p.name, render(p.value))
	}
}

func typed(val string, types []string, i int) any {
	if i < len(types) {
		switch types[i] {
		case "boolean":
			return val == "true"
		case "number":
			if f, err := strconv.ParseFloat(val, 64); err == nil {
				return f
			}
		}
		return val
	}
	// Kong decodes values that are valid JSON when no type is given.
	var x any
	if err := json.Unmarshal([]byte(val), &x); err == nil {
		return x
	}
	return val
}

// applyJSON runs ops over a decoded JSON object.
func (o ops) applyJSON(m map[string]any, render func(string) string) {
	for _, n := range o.remove {
		delete(m, n)
	}
	for _, p := range o.rename {
		if v, ok := m[p.name]; ok {
			delete(m, p.name)
			m[p.value] = v
		}
	}
	for i, p := range o.replace {
		if _, ok := m[p.name]; ok {
			m[p.name] = typed(render(p.value), o.types["replace"], i)
		}
	}
	for i, p := range o.add {
		if _, ok := m[p.name]; !ok {
			m[p.name] = typed(render(p.value), o.types["add"], i)
		}
	}
	for i, p := range o.ap {
		v := typed(render(p.value), o.types["append"], i)
		switch cur := m[p.name].(type) {
		case nil:
			m[p.name] = []any{v}
		case []any:
			m[p.name] = append(cur, v)
		default:
			m[p.name] = []any{cur, v}
		}
	}
}

var templateRE = regexp.MustCompile(`\$\(\s*(headers|query_params|uri_captures)(?:\.([A-Za-z0-9_\-]+)|\[["']([^"']+)["']\])\s*\)`)

// renderer expands Kong's $(headers.x), $(query_params.x) and
// $(uri_captures.x) templates.
func renderer(c *plugin.Context) func(string) string {
	var q url.Values
	return func(s string) string {
		if !strings.Contains(s, "$(") {
			return s
		}
		return templateRE.ReplaceAllStringFunc(s, func(m string) string {
			sm := templateRE.FindStringSubmatch(m)
			name := sm[2]
			if name == "" {
				name = sm[3]
			}
			switch sm[1] {
			case "headers":
				return c.Req.Header.Get(name)
			case "query_params":
				if q == nil {
					q, _ = url.ParseQuery(c.UpstreamQuery)
				}
				return q.Get(name)
			default:
				for i, n := range c.Names {
					if (n == name || strconv.Itoa(i) == name) && i < len(c.Captures) {
						return c.Captures[i]
					}
				}
			}
			return ""
		})
	}
}

type requestTransformer struct {
	method              string
	headers, query, bdy ops
	uri                 string
}

func newRequestTransformer(p *entity.Plugin, _ *plugin.Env) (any, error) {
	cf := conf(p.Config)
	return &requestTransformer{method: cf.str("http_method"), headers: opsFor(cf, "headers"), query: opsFor(cf, "querystring"),
		bdy: opsFor(cf, "body"), uri: cf.sub("replace").str("uri")}, nil
}

// Access rewrites the request before it is proxied.
func (t *requestTransformer) Access(c *plugin.Context) {
	render := renderer(c)
	if t.method != "" {
		c.UpstreamMethod = strings.ToUpper(t.method)
	}
	if !t.headers.empty() {
		t.headers.applyHeaders(c.Req.Header, render)
		if h := c.Req.Header.Get("Host"); h != "" {
			c.Req.Host = h
			c.Req.Header.Del("Host")
		}
	}
	if !t.query.empty() {
		q, _ := url.ParseQuery(c.UpstreamQuery)
		t.query.applyValues(q, render)
		c.UpstreamQuery = q.Encode()
	}
	if t.uri != "" {
		u := render(t.uri)
		if !strings.HasPrefix(u, "/") {
			u = "/" + u
		}
		c.UpstreamPath = u
	}
	if !t.bdy.empty() {
		switch mediaType(c.Req) {
		case "application/json":
			raw, ok := readBody(c)
			if !ok {
				return
			}
			m := map[string]any{}
			if len(raw) > 0 {
				if err := json.Unmarshal(raw, &m); err != nil {
					return
				}
			}
			t.bdy.applyJSON(m, render)
			b, _ := json.Marshal(m)
			setBody(c, b)
		case "application/x-www-form-urlencoded", "":
			raw, ok := readBody(c)
			if !ok {
				return
			}
			v, _ := url.ParseQuery(string(raw))
			t.bdy.applyValues(v, render)
			setBody(c, []byte(v.Encode()))
			if c.Req.Header.Get("Content-Type") == "" && len(v) > 0 {
				c.Req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
		}
	}
}

type responseTransformer struct {
	headers, json ops
}

func newResponseTransformer(p *entity.Plugin, _ *plugin.Env) (any, error) {
	cf := conf(p.Config)
	return &responseTransformer{headers: opsFor(cf, "headers"), json: opsFor(cf, "json")}, nil
}

// HeaderFilter rewrites the response headers.
func (t *responseTransformer) HeaderFilter(c *plugin.Context) {
	if !t.headers.empty() {
		t.headers.applyHeaders(c.ResponseHeader, func(s string) string { return s })
	}
}

// WantsBody is true for JSON responses when JSON operations are configured.
func (t *responseTransformer) WantsBody(c *plugin.Context) bool {
	if t.json.empty() {
		return false
	}
	return strings.Contains(strings.ToLower(c.ResponseHeader.Get("Content-Type")), "application/json")
}

// BodyFilter rewrites the JSON body.
func (t *responseTransformer) BodyFilter(_ *plugin.Context, body []byte) []byte {
	m := map[string]any{}
	if err := json.Unmarshal(body, &m); err != nil {
		return body
	}
	t.json.applyJSON(m, func(s string) string { return s })
	b, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return b
}
