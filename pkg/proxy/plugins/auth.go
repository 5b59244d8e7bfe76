package plugins

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
)

// maxBodyRead bounds how much of a request body a plugin buffers.
const maxBodyRead = 8 << 20

// readBody buffers the request body and puts it back for the upstream.
func readBody(c *plugin.Context) ([]byte, bool) {
	r := c.Req
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyRead+1))
	if err != nil || len(b) > maxBodyRead {
		return nil, false
	}
	setBody(c, b)
	return b, true
}

// setBody replaces the body sent upstream.
func setBody(c *plugin.Context, b []byte) {
	c.Req.Body = io.NopCloser(bytes.NewReader(b))
	c.Req.ContentLength = int64(len(b))
}

func mediaType(r *http.Request) string {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt
}

// anonymousFallback implements the "anonymous" (logical OR) mode shared by
// the auth plugins: it returns true when the request may continue.
func anonymousFallback(c *plugin.Context, env *plugin.Env, anonymous string) bool {
	if anonymous == "" {
		return false
	}
	consumer := env.LookupConsumer(anonymous)
	if consumer == nil {
		c.Error(http.StatusInternalServerError, "An unexpected error occurred")
		return true
	}
	c.Authenticate(consumer, nil)
	return true
}

// rejectAuth ends a failed authentication as Kong's auth plugins do: in
// anonymous (logical OR) mode the anonymous consumer is set and the request
// goes on; otherwise the challenge (when not empty) is set and answer
// writes the rejection.
func rejectAuth(c *plugin.Context, env *plugin.Env, anonymous, www string, answer func()) {
	if anonymousFallback(c, env, anonymous) {
		return
	}
	if www != "" {
		c.SetRespHeader("WWW-Authenticate", www)
	}
	answer()
}

type keyAuth struct {
	env                                  *plugin.Env
	names, headerNames                   []string
	inHeader, inQuery, inBody, hide, pre bool
	anonymous, wwwAuth                   string
}

func newKeyAuth(p *entity.Plugin, env *plugin.Env) (any, error) {
	cf := conf(p.Config)
	k := &keyAuth{env: env, names: cf.strs("key_names"), inHeader: cf.boolean("key_in_header"), inQuery: cf.boolean("key_in_query"),
		inBody: cf.boolean("key_in_body"), hide: cf.boolean("hide_credentials"), pre: cf.boolean("run_on_preflight"),
		anonymous: cf.str("anonymous"), wwwAuth: "Key"}
	if _, set := p.Config["key_in_header"]; !set {
		k.inHeader = true
	}
	if _, set := p.Config["key_in_query"]; !set {
		k.inQuery = true
	}
	if _, set := p.Config["run_on_preflight"]; !set {
		k.pre = true
	}
	if len(k.names) == 0 {
		k.names = []string{"apikey"}
	}
	for _, n := range k.names {
		k.headerNames = append(k.headerNames, http.CanonicalHeaderKey(n))
	}
	if realm := cf.str("realm"); realm != "" {
		k.wwwAuth = `Key realm="` + realm + `"`
	}
	return k, nil
}

func (k *keyAuth) Access(c *plugin.Context) {
	if !k.pre && c.Req.Method == http.MethodOptions {
		return
	}
	if k.anonymous != "" && c.Credential != nil {
		return
	}
	status, msg := k.authenticate(c)
	if status == 0 {
		return
	}
	rejectAuth(c, k.env, k.anonymous, k.wwwAuth, func() { c.Error(status, msg) })
}

func (k *keyAuth) authenticate(c *plugin.Context) (int, string) {
	r := c.Req
	var query url.Values
	var body map[string]any
	var form url.Values
	key := ""
	for i, name := range k.names {
		if k.inHeader {
			if vs := r.Header[k.headerNames[i]]; len(vs) > 1 {
				return http.StatusUnauthorized, "Duplicate API key found"
			} else if len(vs) == 1 {
				key = vs[0]
				if k.hide {
					delete(r.Header, k.headerNames[i])
				}
				break
			}
		}
		if k.inQuery && c.UpstreamQuery != "" {
			if query == nil {
				query, _ = url.ParseQuery(c.UpstreamQuery)
			}
			if vs := query[name]; len(vs) > 1 {
				return http.StatusUnauthorized, "Duplicate API key found"
			} else if len(vs) == 1 {
				key = vs[0]
				if k.hide {
					query.Del(name)
					c.UpstreamQuery = query.Encode()
				}
				break
			}
		}
		if k.inBody {
			if body == nil && form == nil {
				raw, ok := readBody(c)
				if !ok {
					return http.StatusBadRequest, "Cannot process request body"
				}
				switch mediaType(r) {
				case "application/json":
					_ = json.Unmarshal(raw, &body)
				case "application/x-www-form-urlencoded":
					form, _ = url.ParseQuery(string(raw))
				}
				if body == nil {
					body = map[string]any{}
				}
			}
			if v, ok := body[name]; ok {
				switch v := v.(type) {
				case string:
					key = v
				case []any:
					return http.StatusUnauthorized, "Duplicate API key found"
				}
				if k.hide {
					delete(body, name)
					b, _ := json.Marshal(body)
					setBody(c, b)
				}
				break
			}
			if vs := form[name]; len(vs) > 1 {
				return http.StatusUnauthorized, "Duplicate API key found"
			} else if len(vs) == 1 {
				key = vs[0]
				if k.hide {
					form.Del(name)
					setBody(c, []byte(form.Encode()))
				}
				break
			}
		}
	}
	if key == "" {
		return http.StatusUnauthorized, "No API key found in request"
	}
	cred := k.env.KeyAuth[key]
	if cred == nil || cred.Consumer == nil {
		return http.StatusUnauthorized, "Unauthorized"
	}
	if cred.TTL != nil && *cred.TTL > 0 && time.Now().Unix() >= cred.CreatedAt+int64(*cred.TTL) {
		return http.StatusUnauthorized, "Unauthorized"
	}
	consumer := k.env.Config.Consumer(cred.Consumer.ID)
	if consumer == nil {
		return http.StatusUnauthorized, "Unauthorized"
	}
	c.AuthenticateCredential(consumer, cred.ID, cred.ID)
	return 0, ""
}

type basicAuth struct {
	env            *plugin.Env
	hide           bool
	anonymous, www string
}

func newBasicAuth(p *entity.Plugin, env *plugin.Env) (any, error) {
	cf := conf(p.Config)
	realm := cf.str("realm")
	if realm == "" {
		realm = "service"
	}
	return &basicAuth{env: env, hide: cf.boolean("hide_credentials"), anonymous: cf.str("anonymous"), www: `Basic realm="` + realm + `"`}, nil
}

func (b *basicAuth) Access(c *plugin.Context) {
	if b.anonymous != "" && c.Credential != nil {
		return
	}
	if b.authenticate(c) {
		return
	}
	rejectAuth(c, b.env, b.anonymous, b.www, func() { c.Error(http.StatusUnauthorized, "Unauthorized") })
}

func (b *basicAuth) authenticate(c *plugin.Context) bool {
	h := c.Req.Header
	for _, name := range []string{"Authorization", "Proxy-Authorization"} {
		v := h.Get(name)
		if v == "" {
			continue
		}
		const prefix = "basic "
		if len(v) < len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v[len(prefix):]))
		if err != nil {
			continue
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			continue
		}
		cred := b.env.BasicAuth[user]
		if cred == nil || cred.Consumer == nil || entity.HashBasicAuthPassword(pass, cred.Consumer.ID) != cred.Password {
			continue
		}
		consumer := b.env.Config.Consumer(cred.Consumer.ID)
		if consumer == nil {
			continue
		}
		if b.hide {
			h.Del(name)
		}
		c.AuthenticateCredential(consumer, cred.ID, cred.Username)
		return true
	}
	return false
}

type acl struct {
	env                  *plugin.Env
	allow, deny          []string
	hideHeader, authOnly bool
}

func newACL(p *entity.Plugin, env *plugin.Env) (any, error) {
	cf := conf(p.Config)
	return &acl{env: env, allow: cf.strs("allow"), deny: cf.strs("deny"), hideHeader: cf.boolean("hide_groups_header"),
		authOnly: cf.boolean("always_use_authenticated_groups")}, nil
}

func (a *acl) Access(c *plugin.Context) {
	if c.Consumer == nil && c.AuthGroups == nil {
		c.Error(http.StatusUnauthorized, "Unauthorized")
		return
	}
	groups := c.AuthGroups
	if groups == nil || (!a.authOnly && c.Consumer != nil) {
		groups = a.env.Groups[c.Consumer.ID]
	}
	in := func(list []string) bool {
		for _, g := range groups {
			for _, x := range list {
				if g == x {
					return true
				}
			}
		}
		return false
	}
	blocked := false
	if len(a.deny) > 0 && in(a.deny) {
		blocked = true
	}
	if len(a.allow) > 0 && !in(a.allow) {
		blocked = true
	}
	if blocked {
		c.Error(http.StatusForbidden, "You cannot consume this service")
		return
	}
	if !a.hideHeader && len(groups) > 0 {
		c.Req.Header["X-Consumer-Groups"] = []string{strings.Join(groups, ", ")}
	}
}
