package balancer

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

// HashInput is what consistent hashing may hash on.
type HashInput struct {
	ConsumerID string
	ClientIP   string
	Path       string
	RawQuery   string
	Header     http.Header
	Captures   []string
	Names      []string
}

// HashKey computes the consistent-hashing input per hash_on, falling back to
// hash_fallback when the primary input is absent. When hashing on a cookie
// the client does not send, Kong generates a value and sets the cookie:
// setCookie is then non-nil and must be added to the response.
func (b *Balancer) HashKey(in *HashInput, newValue func() string) (key string, setCookie *http.Cookie) {
	up := b.Upstream
	if b.algo != "consistent-hashing" {
		return "", nil
	}
	if k := hashOn(up, up.HashOn, false, in); k != "" {
		return k, nil
	}
	if up.HashOn == "cookie" && up.HashOnCookie != nil {
		v := newValue()
		return v, &http.Cookie{Name: *up.HashOnCookie, Value: v, Path: up.HashOnCookiePath, HttpOnly: true}
	}
	if k := hashOn(up, up.HashFallback, true, in); k != "" {
		return k, nil
	}
	return in.ClientIP, nil
}

func strp(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func hashOn(up *entity.Upstream, kind string, fallback bool, in *HashInput) string {
	switch kind {
	case "consumer":
		return in.ConsumerID
	case "ip":
		return in.ClientIP
	case "path":
		return in.Path
	case "header":
		name := up.HashOnHeader
		if fallback {
			name = up.HashFallbackHeader
		}
		if in.Header == nil || name == nil {
			return ""
		}
		return strings.Join(in.Header.Values(*name), ",")
	case "cookie":
		if in.Header == nil || up.HashOnCookie == nil {
			return ""
		}
		r := http.Request{Header: in.Header}
		if c, err := r.Cookie(*up.HashOnCookie); err == nil {
			return c.Value
		}
	case "query_arg":
		name := strp(up.HashOnQueryArg)
		if fallback {
			name = strp(up.HashFallbackQueryArg)
		}
		if name == "" || in.RawQuery == "" {
			return ""
		}
		q, _ := url.ParseQuery(in.RawQuery)
		return strings.Join(q[name], ",")
	case "uri_capture":
		name := strp(up.HashOnURICapture)
		if fallback {
			name = strp(up.HashFallbackURICapture)
		}
		for i, n := range in.Names {
			if i < len(in.Captures) && (n == name || (n == "" && name == itoa(i))) {
				return in.Captures[i]
			}
		}
	}
	return ""
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
