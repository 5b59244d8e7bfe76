package plugins

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"hash"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
)

const (
	hmacNotValid = "HMAC signature cannot be verified"
	hmacNotSame  = "HMAC signature does not match"
	hmacNoDate   = "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"
)

// hmacAuthRE is Kong's pattern for the hmac Authorization header (RE2's
// leftmost-first greedy matching gives the same groups as PCRE here).
var hmacAuthRE = regexp.MustCompile(`\s*[Hh]mac\s*username="(.+)",\s*algorithm="(.+)",\s*headers="(.+)",\s*signature="(.+)"`)

var hmacHashes = map[string]func() hash.Hash{
	"hmac-sha1": sha1.New, "hmac-sha256": sha256.New, "hmac-sha384": sha512.New384, "hmac-sha512": sha512.New,
}

// hmacParams are the fields of an hmac Authorization header.
type hmacParams struct {
	username, algorithm, signature string
	headers                        []string
}

// parseHMACAuthorization parses `hmac username="…", algorithm="…",
// headers="…", signature="…"`; ok is false when the value does not match.
func parseHMACAuthorization(v string) (p hmacParams, ok bool) {
	m := hmacAuthRE.FindStringSubmatch(v)
	if m == nil {
		return p, false
	}
	return hmacParams{username: m[1], algorithm: m[2], headers: strings.Split(m[3], " "), signature: m[4]}, true
}

type hmacAuth struct {
	env                 *plugin.Env
	hide, validateBody  bool
	clockSkew           float64
	anonymous, www      string
	enforce, algorithms []string
}

func newHMACAuth(p *entity.Plugin, env *plugin.Env) (any, error) {
	cf := conf(p.Config)
	h := &hmacAuth{env: env, hide: cf.boolean("hide_credentials"), validateBody: cf.boolean("validate_request_body"),
		clockSkew: 300, anonymous: cf.str("anonymous"), enforce: cf.strs("enforce_headers"), algorithms: cf.strs("algorithms"), www: "hmac"}
	if v, ok := cf.num("clock_skew"); ok {
		h.clockSkew = v
	}
	if _, set := p.Config["algorithms"]; !set {
		h.algorithms = entity.HMACAlgorithms
	}
	if realm := cf.str("realm"); realm != "" {
		h.www = `hmac realm="` + realm + `"`
	}
	return h, nil
}

func (h *hmacAuth) Access(c *plugin.Context) {
	if h.anonymous != "" && c.Credential != nil {
		return
	}
	if status, msg := h.authenticate(c); status != 0 {
		rejectAuth(c, h.env, h.anonymous, h.www, func() { c.Error(status, msg) })
	}
}

// dateOK reports whether the named header holds an HTTP date within the
// allowed clock skew.
func (h *hmacAuth) dateOK(r *http.Request, name string) bool {
	v := r.Header.Get(name)
	if v == "" {
		return false
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return false
	}
	return math.Abs(float64(h.env.Now().Unix()-t.Unix())) <= h.clockSkew
}

func (h *hmacAuth) authenticate(c *plugin.Context) (int, string) {
	r := c.Req
	authz, proxyAuthz := r.Header.Get("Authorization"), r.Header.Get("Proxy-Authorization")
	if authz == "" && proxyAuthz == "" {
		return http.StatusUnauthorized, "Unauthorized"
	}
	if !h.dateOK(r, "X-Date") && !h.dateOK(r, "Date") {
		return http.StatusUnauthorized, hmacNoDate
	}
	params, ok := parseHMACAuthorization(proxyAuthz)
	if ok {
		if h.hide {
			r.Header.Del("Proxy-Authorization")
		}
	} else {
		params, ok = parseHMACAuthorization(authz)
		if h.hide {
			r.Header.Del("Authorization")
		}
	}
	if !ok || !h.paramsOK(&params) {
		return http.StatusUnauthorized, hmacNotValid
	}
	cred := h.env.HMAC[params.username]
	if cred == nil || cred.Consumer == nil {
		return http.StatusUnauthorized, hmacNotValid
	}
	if !h.signatureOK(c, &params, cred.Secret, authz, proxyAuthz) {
		return http.StatusUnauthorized, hmacNotSame
	}
	if h.validateBody && !bodyDigestOK(c) {
		return http.StatusUnauthorized, hmacNotSame
	}
	consumer := h.env.Config.Consumer(cred.Consumer.ID)
	if consumer == nil {
		return http.StatusInternalServerError, "An unexpected error occurred"
	}
	c.AuthenticateCredential(consumer, cred.ID, cred.Username)
	return 0, ""
}

// paramsOK checks the enforced headers are signed and the algorithm is
// allowed.
func (h *hmacAuth) paramsOK(p *hmacParams) bool {
	for _, want := range h.enforce {
		found := false
		for _, got := range p.headers {
			found = found || got == want
		}
		if !found {
			return false
		}
	}
	for _, a := range h.algorithms {
		if a == p.algorithm {
			return hmacHashes[a] != nil
		}
	}
	return false
}

// signatureOK recomputes the signature over the listed headers, with the
// request line built from the path and query as received, then (Kong's
// deprecated form) from the normalized path.
func (h *hmacAuth) signatureOK(c *plugin.Context, p *hmacParams, secret, authz, proxyAuthz string) bool {
	want, err := base64.StdEncoding.DecodeString(p.signature)
	if err != nil {
		return false
	}
	r := c.Req
	uri := c.RawPath
	if uri == "" {
		uri = r.URL.EscapedPath()
	}
	if r.URL.RawQuery != "" {
		uri += "?" + r.URL.RawQuery
	}
	// hide_credentials may have removed the header being signed over:
	// sign what the client sent.
	header := func(name string) (string, bool) {
		switch strings.ToLower(name) {
		case "authorization":
			return authz, authz != ""
		case "proxy-authorization":
			return proxyAuthz, proxyAuthz != ""
		}
		if strings.EqualFold(name, "host") {
			return r.Host, r.Host != ""
		}
		vs := r.Header.Values(name)
		if len(vs) == 0 {
			return "", false
		}
		return vs[0], true
	}
	sign := func(requestURI string) []byte {
		mac := hmac.New(hmacHashes[p.algorithm], []byte(secret))
		for i, name := range p.headers {
			if i > 0 {
				mac.Write([]byte("\n"))
			}
			v, ok := header(name)
			switch {
			case ok:
				mac.Write([]byte(name + ": " + v))
			case name == "request-line":
				mac.Write([]byte(r.Method + " " + requestURI + " HTTP/" + strconv.Itoa(r.ProtoMajor) + "." + strconv.Itoa(r.ProtoMinor)))
			default:
				mac.Write([]byte(name + ":"))
			}
		}
		return mac.Sum(nil)
	}
	if hmac.Equal(sign(uri), want) {
		return true
	}
	return hmac.Equal(sign(r.URL.Path), want)
}

// bodyDigestOK checks the Digest header (SHA-256=base64) against the body;
// without a Digest header only an empty body passes.
func bodyDigestOK(c *plugin.Context) bool {
	body, ok := readBody(c)
	if !ok {
		return false
	}
	got := c.Req.Header.Get("Digest")
	if got == "" {
		return len(body) == 0
	}
	sum := sha256.Sum256(body)
	return got == "SHA-256="+base64.StdEncoding.EncodeToString(sum[:])
}
