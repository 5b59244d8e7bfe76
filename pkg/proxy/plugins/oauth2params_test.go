package plugins

import (
	"encoding/json"
	"net/url"
	"reflect"
	"testing"
)

func TestParseOAuth2Params(t *testing.T) {
	cases := []struct {
		name, method, query, ctype, body string
		want                             oauth2Params
	}{
		{"query only on GET", "GET", "a=1&b", "application/x-www-form-urlencoded", "a=2",
			oauth2Params{"a": "1", "b": true}},
		{"form body wins", "POST", "a=1&c=3", "application/x-www-form-urlencoded; charset=utf-8", "a=2&scope=read+write",
			oauth2Params{"a": "2", "c": "3", "scope": "read write"}},
		{"repeated keys", "POST", "", "application/x-www-form-urlencoded", "s=1&s=2&s",
			oauth2Params{"s": []any{"1", "2", true}}},
		{"json body", "POST", "", "application/json", `{"grant_type":"password","n":1,"x":null}`,
			oauth2Params{"grant_type": "password", "n": json.Number("1"), "x": nil}},
		{"bad json ignored", "PUT", "q=%zz&ok=1", "application/json", `{`, oauth2Params{"ok": "1"}},
		{"unknown content type", "PATCH", "", "text/plain", "a=1", oauth2Params{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := parseOAuth2Params(c.method, c.query, c.ctype, []byte(c.body))
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %#v, want %#v", got, c.want)
			}
		})
	}
}

func TestAppendRedirectParams(t *testing.T) {
	got := appendRedirectParams("http://a.example/cb?keep=1&code=old", map[string]any{"code": "c d", "state": "s"}, false)
	if got != "http://a.example/cb?code=c+d&keep=1&state=s" {
		t.Fatalf("query: %s", got)
	}
	got = appendRedirectParams("http://a.example/cb?q=1", map[string]any{"access_token": "t", "expires_in": int64(0)}, true)
	if got != "http://a.example/cb?q=1#access_token=t&expires_in=0" {
		t.Fatalf("fragment: %s", got)
	}
}

// FuzzOAuth2Params feeds the token and authorize endpoints' parameter
// parser arbitrary queries and bodies: it must not panic, and redirect URIs
// built from what it returns must parse.
func FuzzOAuth2Params(f *testing.F) {
	f.Add("POST", "a=1", "application/x-www-form-urlencoded", []byte("grant_type=client_credentials&scope=a+b&s=1&s=2"))
	f.Add("POST", "", "application/json", []byte(`{"code":"x","state":{"a":[1,2]},"n":1e400}`))
	f.Add("GET", "access_token=%41&&=&x", "", []byte(nil))
	f.Fuzz(func(t *testing.T, method, query, ctype string, body []byte) {
		p := parseOAuth2Params(method, query, ctype, body)
		for k := range p {
			_, _ = p.str(k)
			_ = p.has(k)
		}
		u := appendRedirectParams("http://client.example/cb?x=1", p, len(body)%2 == 0)
		if _, err := url.Parse(u); err != nil {
			t.Fatalf("redirect %q does not parse: %v", u, err)
		}
	})
}
