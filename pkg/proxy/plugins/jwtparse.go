package plugins

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"math/big"
	"strings"
)

// jwtToken is a decoded (not yet verified) JWT: Kong's jwt_parser.
type jwtToken struct {
	raw                 string
	headerB64, claimB64 string
	header, claims      map[string]any
	signature           []byte
	alg                 string
}

// jwtAlgs are the algorithms a token's "alg" may name.
var jwtAlgs = map[string]bool{"HS256": true, "HS384": true, "HS512": true, "RS256": true, "RS384": true, "RS512": true,
	"ES256": true, "ES384": true, "ES512": true, "PS256": true, "PS384": true, "PS512": true, "EdDSA": true}

// b64Decode decodes base64 in either alphabet, with or without padding, as
// Kong's parser does.
func b64Decode(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "+/") {
		b := []byte(s)
		for i, c := range b {
			switch c {
			case '+':
				b[i] = '-'
			case '/':
				b[i] = '_'
			}
		}
		s = string(b)
	}
	return base64.RawURLEncoding.DecodeString(s)
}

func isRE2Space(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

// bearerToken finds the token as Kong's pattern \s*[Bb]earer\s+(.+) does
// (leftmost match, greedy, "." not matching a newline), without a regexp on
// the request path.
func bearerToken(v string) (string, bool) {
	for i := 0; i+6 <= len(v); i++ {
		if (v[i] != 'B' && v[i] != 'b') || v[i+1:i+6] != "earer" {
			continue
		}
		j := i + 6
		k := j
		for k < len(v) && isRE2Space(v[k]) {
			k++
		}
		// \s+ gives back whitespace until (.+) can take one character.
		for p := k; p > j; p-- {
			if p < len(v) && v[p] != '\n' {
				tok := v[p:]
				if n := strings.IndexByte(tok, '\n'); n >= 0 {
					tok = tok[:n]
				}
				return tok, true
			}
		}
	}
	return "", false
}

// parseJWT splits and decodes a token. The errors are Kong's texts (the
// 401 body is "Bad token; " + the error).
func parseJWT(token string) (*jwtToken, error) {
	h64, rest, ok1 := strings.Cut(token, ".")
	c64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return nil, errors.New("invalid JSON")
	}
	hb, err1 := b64Decode(h64)
	cb, err2 := b64Decode(c64)
	sig, err3 := b64Decode(s64)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, errors.New("invalid JSON")
	}
	t := &jwtToken{raw: token, headerB64: h64, claimB64: c64, signature: sig}
	if json.Unmarshal(hb, &t.header) != nil || t.header == nil {
		return nil, errors.New("invalid JSON")
	}
	var claims any
	if json.Unmarshal(cb, &claims) != nil {
		return nil, errors.New("invalid JSON")
	}
	alg, _ := t.header["alg"].(string)
	if !jwtAlgs[alg] {
		return nil, errors.New("invalid alg")
	}
	t.alg = alg
	if t.claims, _ = claims.(map[string]any); t.claims == nil {
		return nil, errors.New("invalid claims")
	}
	return t, nil
}

func jwtHash(alg string) (crypto.Hash, func() hash.Hash) {
	switch alg[len(alg)-3:] {
	case "384":
		return crypto.SHA384, sha512.New384
	case "512":
		return crypto.SHA512, sha512.New
	}
	return crypto.SHA256, sha256.New
}

// verify checks the signature with an HMAC secret (HS*) or a public key
// (parsed PEM: *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey).
func (t *jwtToken) verify(key any) bool {
	signed := []byte(t.headerB64 + "." + t.claimB64)
	if t.alg == "EdDSA" {
		k, ok := key.(ed25519.PublicKey)
		return ok && ed25519.Verify(k, signed, t.signature)
	}
	h, newHash := jwtHash(t.alg)
	hh := newHash()
	if t.alg[:2] == "HS" {
		secret, ok := key.([]byte)
		if !ok {
			return false
		}
		m := hmac.New(newHash, secret)
		m.Write(signed)
		return hmac.Equal(m.Sum(nil), t.signature)
	}
	hh.Write(signed)
	digest := hh.Sum(nil)
	switch t.alg[:2] {
	case "RS":
		k, ok := key.(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(k, h, digest, t.signature) == nil
	case "PS":
		k, ok := key.(*rsa.PublicKey)
		return ok && rsa.VerifyPSS(k, h, digest, t.signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	case "ES":
		k, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(t.signature) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(t.signature[:size])
		s := new(big.Int).SetBytes(t.signature[size:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}

// verifyClaims checks the registered claims named in claimsToVerify at now
// (unix seconds) and returns Kong's per-claim errors, or nil.
func (t *jwtToken) verifyClaims(claimsToVerify []string, now float64) map[string]string {
	var errs map[string]string
	add := func(k, v string) {
		if errs == nil {
			errs = map[string]string{}
		}
		errs[k] = v
	}
	for _, name := range claimsToVerify {
		v, ok := t.claims[name].(float64)
		if !ok {
			add(name, "must be a number")
			continue
		}
		switch {
		case name == "exp" && v <= now:
			add(name, "token expired")
		case name == "nbf" && v > now:
			add(name, "token not valid yet")
		}
	}
	return errs
}
