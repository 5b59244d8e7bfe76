package ipmi

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // RAKP-HMAC-SHA1 and HMAC-SHA1-96 are what cipher suite 3 mandates
	"crypto/sha256"
	"errors"
	"hash"
)

// Algorithm numbers (IPMI v2.0 tables 13-17 to 13-19).
const (
	authHMACSHA1   = 0x01
	authHMACSHA256 = 0x03

	integrityNone          = 0x00
	integrityHMACSHA1_96   = 0x01
	integrityHMACSHA256128 = 0x04

	confNone      = 0x00
	confAESCBC128 = 0x01
)

// suite is one cipher suite the BMC offers.
type suite struct {
	id                    byte
	auth, integrity, conf byte
	hash                  func() hash.Hash
	// icvLen is the length of RAKP 4's integrity check value and of the
	// session's integrity code.
	icvLen int
}

// suites lists the cipher suites offered: 3 (SHA-1) and 17 (SHA-256), both
// with AES-CBC-128 confidentiality, as on current server BMCs.
var suites = []suite{
	{id: 3, auth: authHMACSHA1, integrity: integrityHMACSHA1_96, conf: confAESCBC128, hash: sha1.New, icvLen: 12},
	{id: 17, auth: authHMACSHA256, integrity: integrityHMACSHA256128, conf: confAESCBC128, hash: sha256.New, icvLen: 16},
}

// cipherSuiteRecords is the Get Channel Cipher Suites record list
// (IPMI v2.0 table 22-19): per suite, a standard record start, its ID and
// tagged authentication, integrity and confidentiality algorithms.
func cipherSuiteRecords() []byte {
	var b []byte
	for _, s := range suites {
		b = append(b, 0xc0, s.id, s.auth, 0x40|s.integrity, 0x80|s.conf)
	}
	return b
}

// matchSuite finds the suite an Open Session Request's proposal selects.
func matchSuite(auth, integrity, conf byte) (*suite, byte) {
	var authOK, integOK bool
	for i := range suites {
		s := &suites[i]
		authOK = authOK || s.auth == auth
		integOK = integOK || s.integrity == integrity
		if s.auth == auth && s.integrity == integrity && s.conf == conf {
			return s, 0
		}
	}
	switch {
	case !authOK:
		return nil, rakpInvalidAuthAlg
	case !integOK:
		return nil, rakpInvalidIntegrityAlg
	case conf != confAESCBC128:
		return nil, rakpInvalidConfAlg
	}
	return nil, rakpNoCipherSuiteMatch
}

func (s *suite) mac(key []byte, parts ...[]byte) []byte {
	h := hmac.New(s.hash, key)
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// keys derives the session integrity key K1 and confidentiality key K2
// from the session integrity key SIK (IPMI v2.0 section 13.32): HMACs of
// 20 bytes of 0x01 and of 0x02, 20 bytes whatever the hash (ipmitool and
// BMCs agree on this for SHA-256 suites too).
func (s *suite) keys(sik []byte) (k1, k2 []byte) {
	var c1, c2 [20]byte
	for i := range c1 {
		c1[i], c2[i] = 0x01, 0x02
	}
	return s.mac(sik, c1[:]), s.mac(sik, c2[:])
}

// encrypt returns IV ‖ AES-CBC-128(payload ‖ pad ‖ pad length) with the
// pad bytes 1, 2, 3, … (IPMI v2.0 section 13.29).
func encrypt(k2, payload []byte) ([]byte, error) {
	block, err := aes.NewCipher(k2[:16])
	if err != nil {
		return nil, err
	}
	pad := (aes.BlockSize - (len(payload)+1)%aes.BlockSize) % aes.BlockSize
	out := make([]byte, aes.BlockSize, aes.BlockSize+len(payload)+pad+1)
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	out = append(out, payload...)
	for i := range pad {
		out = append(out, byte(i+1))
	}
	out = append(out, byte(pad))
	cipher.NewCBCEncrypter(block, out[:aes.BlockSize]).CryptBlocks(out[aes.BlockSize:], out[aes.BlockSize:])
	return out, nil
}

// decrypt reverses encrypt, checking the padding.
func decrypt(k2, payload []byte) ([]byte, error) {
	if len(payload) < 2*aes.BlockSize || len(payload)%aes.BlockSize != 0 {
		return nil, errors.New("encrypted payload is not IV plus whole AES blocks")
	}
	block, err := aes.NewCipher(k2[:16])
	if err != nil {
		return nil, err
	}
	plain := make([]byte, len(payload)-aes.BlockSize)
	cipher.NewCBCDecrypter(block, payload[:aes.BlockSize]).CryptBlocks(plain, payload[aes.BlockSize:])
	pad := int(plain[len(plain)-1])
	if pad >= aes.BlockSize || pad+1 > len(plain) {
		return nil, errors.New("bad confidentiality pad length")
	}
	for i := range pad {
		if plain[len(plain)-1-pad+i] != byte(i+1) {
			return nil, errors.New("bad confidentiality pad")
		}
	}
	return plain[:len(plain)-1-pad], nil
}
