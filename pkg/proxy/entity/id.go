package entity

import (
	"crypto/rand"
	"crypto/sha1"
	"fmt"
)

// NewID returns a random (version 4) UUID.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

// UUIDv5 returns the name-based (SHA-1, version 5) UUID of name in namespace.
func UUIDv5(namespace, name string) string {
	ns := parseUUID(namespace)
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var b [16]byte
	copy(b[:], h.Sum(nil))
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

// DeclarativeNamespace is Kong's namespace for deterministic entity ids.
const DeclarativeNamespace = "fd02801f-0957-4a15-a55a-c8d9606f30b5"

// DeterministicID is the id Kong's declarative loader gives an entity
// without one: uuid5(uuid5(namespace, kind), key).
func DeterministicID(kind, key string) string {
	return UUIDv5(UUIDv5(DeclarativeNamespace, kind), key)
}

func formatUUID(b [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func parseUUID(s string) [16]byte {
	var b [16]byte
	j := 0
	for i := 0; i < len(s) && j < 32; i++ {
		c := s[i]
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			continue
		}
		if j%2 == 0 {
			b[j/2] = v << 4
		} else {
			b[j/2] |= v
		}
		j++
	}
	return b
}
