package plugins

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/url"
	"strings"
)

// oauth2Params are the OAuth 2.0 parameters of a request as Kong's oauth2
// plugin reads them: the query string merged with, for POST, PUT and PATCH,
// the form or JSON body (body values win). A value is a string, true for a
// query key without "=", a []any for a repeated key, or any JSON value.
type oauth2Params map[string]any

// parseOAuth2Params parses the query and body of a request. Malformed
// parts are skipped, as Kong's lenient argument readers do.
func parseOAuth2Params(method, rawQuery, contentType string, body []byte) oauth2Params {
	p := oauth2Params{}
	addArgs(p, rawQuery)
	if method != "POST" && method != "PUT" && method != "PATCH" {
		return p
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/x-www-form-urlencoded":
		form := oauth2Params{}
		addArgs(form, string(body))
		for k, v := range form {
			p[k] = v
		}
	case "application/json":
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if dec.Decode(&m) == nil {
			for k, v := range m {
				p[k] = v
			}
		}
	}
	return p
}

// addArgs adds the arguments of a query string or form body to p.
func addArgs(p oauth2Params, raw string) {
	if raw == "" {
		return
	}
	seen := map[string]bool{}
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, hasValue := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil || key == "" {
			continue
		}
		var val any = true
		if hasValue {
			s, err := url.QueryUnescape(v)
			if err != nil {
				continue
			}
			val = s
		}
		if !seen[key] {
			seen[key] = true
			p[key] = val
			continue
		}
		if list, ok := p[key].([]any); ok {
			p[key] = append(list, val)
		} else {
			p[key] = []any{p[key], val}
		}
	}
}

// str returns a parameter that is a string.
func (p oauth2Params) str(k string) (string, bool) {
	s, ok := p[k].(string)
	return s, ok
}

// has reports whether a parameter is present with a value Lua would treat
// as true (anything but null and false).
func (p oauth2Params) has(k string) bool {
	v, ok := p[k]
	return ok && v != nil && v != false
}
