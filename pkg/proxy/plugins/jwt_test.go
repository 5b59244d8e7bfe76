package plugins_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"hash"
	"net/http"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
)

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func pubPEM(t testing.TB, k any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// signJWT builds a token the way a client library would.
func signJWT(t testing.TB, alg string, key any, claims map[string]any) string {
	t.Helper()
	hb, _ := json.Marshal(map[string]any{"alg": alg, "typ": "JWT"})
	cb, _ := json.Marshal(claims)
	input := b64url(hb) + "." + b64url(cb)
	hashes := map[string]struct {
		h crypto.Hash
		f func() hash.Hash
	}{"256": {crypto.SHA256, sha256.New}, "384": {crypto.SHA384, sha512.New384}, "512": {crypto.SHA512, sha512.New}}
	var sig []byte
	var err error
	if alg == "EdDSA" {
		sig = ed25519.Sign(key.(ed25519.PrivateKey), []byte(input))
		return input + "." + b64url(sig)
	}
	hh := hashes[alg[2:]]
	d := hh.f()
	d.Write([]byte(input))
	digest := d.Sum(nil)
	switch alg[:2] {
	case "HS":
		m := hmac.New(hh.f, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "RS":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), hh.h, digest)
	case "PS":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), hh.h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES":
		k := key.(*ecdsa.PrivateKey)
		r, s, e := ecdsa.Sign(rand.Reader, k, digest)
		size := (k.Curve.Params().BitSize + 7) / 8
		sig = append(r.FillBytes(make([]byte, size)), s.FillBytes(make([]byte, size))...)
		err = e
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64url(sig)
}

func TestJWT(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKeys := map[string]*ecdsa.PrivateKey{}
	for alg, curve := range map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()} {
		if ecKeys[alg], err = ecdsa.GenerateKey(curve, rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)

	signers := map[string]any{"HS256": []byte("alice-secret"), "HS384": []byte("alice-secret"), "HS512": []byte("alice-secret"),
		"EdDSA": edKey}
	var creds []map[string]any
	for _, alg := range []string{"HS256", "HS384", "HS512"} {
		creds = append(creds, map[string]any{"consumer": fk(aliceID), "key": "alice-" + alg, "secret": "alice-secret", "algorithm": alg})
	}
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"} {
		signers[alg] = rsaKey
		creds = append(creds, map[string]any{"consumer": fk(bobID), "key": "bob-" + alg, "rsa_public_key": pubPEM(t, &rsaKey.PublicKey), "algorithm": alg})
	}
	for alg, k := range ecKeys {
		signers[alg] = k
		creds = append(creds, map[string]any{"consumer": fk(bobID), "key": "bob-" + alg, "rsa_public_key": pubPEM(t, &k.PublicKey), "algorithm": alg})
	}
	creds = append(creds,
		map[string]any{"consumer": fk(bobID), "key": "bob-EdDSA", "rsa_public_key": pubPEM(t, edPub), "algorithm": "EdDSA"},
		map[string]any{"consumer": fk(aliceID), "key": "alice-b64", "secret": base64.StdEncoding.EncodeToString([]byte("raw\x00secret"))})

	gw := gatewayWith(t, map[string][]map[string]any{"jwt_secrets": creds},
		map[string]any{"name": "jwt", "route": fk(routeID), "config": map[string]any{
			"claims_to_verify": []any{"exp", "nbf"}, "maximum_expiration": 3600, "cookie_names": []any{"session"}}},
		map[string]any{"name": "jwt", "route": fk(route2), "config": map[string]any{"anonymous": "anonymous", "secret_is_base64": true}},
	)
	now := time.Now().Unix()
	valid := func(iss string) map[string]any { return map[string]any{"iss": iss, "exp": now + 600, "nbf": now - 60} }
	tok := func(alg, iss string) string { return signJWT(t, alg, signers[alg], valid(iss)) }
	hs := func(claims map[string]any) string { return signJWT(t, "HS256", []byte("alice-secret"), claims) }
	bearer := func(s string) map[string]string { return map[string]string{"Authorization": "Bearer " + s} }

	for alg := range signers {
		owner := "bob-"
		if alg[:2] == "HS" {
			owner = "alice-"
		}
		t.Run("valid "+alg, func(t *testing.T) {
			resp, body := do(t, "GET", gw+"/r", bearer(tok(alg, owner+alg)), "")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			h := http.Header(proxytest.DecodeEcho(t, []byte(body)).Header)
			if h.Get("X-Credential-Identifier") != owner+alg || h.Get("X-Consumer-Id") == "" {
				t.Fatalf("upstream headers %v", h)
			}
		})
	}

	hsKey := []byte("alice-secret")
	cases := []struct {
		name   string
		url    string
		hdr    map[string]string
		status int
		msg    string // Kong error message, or
		claims string // the claim errors body
		www    string
	}{
		{"no token", "/r", nil, 401, "Unauthorized", "", "Bearer"},
		{"not a jwt", "/r", bearer("abc"), 401, "Bad token; invalid JSON", "", `Bearer error="invalid_token"`},
		{"alg none", "/r", bearer(b64url([]byte(`{"alg":"none"}`)) + "." + b64url([]byte(`{"iss":"x"}`)) + "."), 401, "Bad token; invalid alg", "", ""},
		{"no iss", "/r", bearer(hs(map[string]any{"sub": "x"})), 401, "No mandatory 'iss' in claims", "", ""},
		{"empty iss", "/r", bearer(hs(map[string]any{"iss": ""})), 401, "Invalid 'iss' in claims", "", ""},
		{"unknown iss", "/r", bearer(hs(valid("nobody"))), 401, "No credentials found for given 'iss'", "", ""},
		{"wrong alg", "/r", bearer(signJWT(t, "HS384", hsKey, valid("alice-HS256"))), 401, "Invalid algorithm", "", ""},
		{"bad signature", "/r", bearer(signJWT(t, "HS256", []byte("wrong"), valid("alice-HS256"))), 401, "Invalid signature", "", ""},
		{"rsa key, wrong signer", "/r", bearer(signJWT(t, "ES256", ecKeys["ES384"], valid("bob-ES256"))), 401, "Invalid signature", "", ""},
		{"expired", "/r", bearer(hs(map[string]any{"iss": "alice-HS256", "exp": now - 10, "nbf": now})), 401, "", `{"exp":"token expired"}`, ""},
		{"not yet valid", "/r", bearer(hs(map[string]any{"iss": "alice-HS256", "exp": now + 60, "nbf": now + 600})), 401, "", `{"nbf":"token not valid yet"}`, ""},
		{"exp not a number", "/r", bearer(hs(map[string]any{"iss": "alice-HS256", "exp": "soon", "nbf": now})), 401, "", `{"exp":"must be a number"}`, ""},
		{"beyond maximum_expiration", "/r", bearer(hs(map[string]any{"iss": "alice-HS256", "exp": now + 7200, "nbf": now})), 401, "", `{"exp":"exceeds maximum allowed expiration"}`, ""},
		{"two tokens", "/r?jwt=" + tok("HS384", "alice-HS384"), bearer(tok("HS256", "alice-HS256")), 401, "Multiple tokens provided", "", ""},
		{"query parameter", "/r?jwt=" + tok("HS256", "alice-HS256"), nil, 200, "", "", ""},
		{"query parameter without a value", "/r?jwt", nil, 401, "Unrecognizable token", "", `Bearer error="invalid_token"`},
		{"empty query parameter", "/r?jwt=", nil, 401, "Unauthorized", "", "Bearer"},
		{"cookie", "/r", map[string]string{"Cookie": "session=" + tok("HS256", "alice-HS256")}, 200, "", "", ""},
		{"anonymous fallback", "/other", nil, 200, "", "", ""},
		{"base64 secret", "/other", bearer(signJWT(t, "HS256", []byte("raw\x00secret"), map[string]any{"iss": "alice-b64"})), 200, "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := expect(t, "GET", gw+c.url, c.hdr, "", c.status, c.msg)
			if c.claims != "" && body != c.claims {
				t.Fatalf("body %s, want %s", body, c.claims)
			}
			if c.www != "" && resp.Header.Get("WWW-Authenticate") != c.www {
				t.Fatalf("WWW-Authenticate %q, want %q", resp.Header.Get("WWW-Authenticate"), c.www)
			}
		})
	}
	_, body := do(t, "GET", gw+"/other", bearer(signJWT(t, "HS256", []byte("raw\x00secret"), map[string]any{"iss": "alice-b64"})), "")
	if h := http.Header(proxytest.DecodeEcho(t, []byte(body)).Header); h.Get("X-Consumer-Username") != "alice" || h.Get("X-Anonymous-Consumer") != "" {
		t.Fatalf("base64-secret consumer headers %v", h)
	}
}
