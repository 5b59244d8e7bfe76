// Package plugins holds kiln's implementations of Kong's bundled plugins:
// key-auth, basic-auth, jwt, hmac-auth, oauth2, acl, rate-limiting (local policy),
// cors, ip-restriction, request-transformer, response-transformer,
// correlation-id, request-termination, prometheus and http-log. Each reads the
// validated config the Admin API stored (Kong's field names and defaults)
// and answers with Kong's status codes, messages and headers.
package plugins

import (
	"fmt"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
)

// Registry returns every bundled plugin, with Kong's priorities.
func Registry() plugin.Registry {
	reg := plugin.Registry{}
	add := func(name string, f func(p *entity.Plugin, env *plugin.Env) (any, error)) {
		prio := 0
		if d := entity.Plugins[name]; d != nil {
			prio = d.Priority
		}
		reg[name] = &plugin.Factory{Name: name, Priority: prio, New: f}
	}
	add("key-auth", newKeyAuth)
	add("basic-auth", newBasicAuth)
	add("jwt", newJWT)
	add("hmac-auth", newHMACAuth)
	add("oauth2", newOAuth2)
	add("http-log", newHTTPLog)
	add("acl", newACL)
	add("rate-limiting", newRateLimiting)
	add("cors", newCORS)
	add("ip-restriction", newIPRestriction)
	add("request-transformer", newRequestTransformer)
	add("response-transformer", newResponseTransformer)
	add("correlation-id", newCorrelationID)
	add("request-termination", newRequestTermination)
	add("prometheus", newPrometheus)
	return reg
}

// conf wraps a plugin's JSON-shaped config with typed getters.
type conf map[string]any

func (c conf) str(k string) string {
	s, _ := c[k].(string)
	return s
}

func (c conf) boolean(k string) bool {
	b, _ := c[k].(bool)
	return b
}

func (c conf) num(k string) (float64, bool) {
	switch v := c[k].(type) {
	case float64:
		return v, true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	}
	return 0, false
}

func (c conf) strs(k string) []string {
	switch v := c[k].(type) {
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	return nil
}

func (c conf) sub(k string) conf {
	m, _ := c[k].(map[string]any)
	return conf(m)
}
