package entity

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"
)

// Config is an immutable snapshot of the whole gateway configuration, as the
// data plane compiles it. Build it with NewConfig; never modify it (see the
// package documentation). Slices are ordered by created_at, then id.
type Config struct {
	// Version increases with every change the store commits.
	Version uint64
	// Hash is a 32-hex digest of the contents (Kong's configuration_hash
	// role); all zeros for an empty configuration.
	Hash string

	Services             []*Service
	Routes               []*Route
	Consumers            []*Consumer
	Plugins              []*Plugin
	Upstreams            []*Upstream
	Targets              []*Target
	Certificates         []*Certificate
	SNIs                 []*SNI
	CACertificates       []*CACertificate
	KeyAuthCredentials   []*KeyAuthCredential
	BasicAuthCredentials []*BasicAuthCredential
	JWTSecrets           []*JWTSecret
	HMACAuthCredentials  []*HMACAuthCredential
	OAuth2Credentials    []*OAuth2Credential
	ACLGroups            []*ACLGroup
	KeySets              []*KeySet
	Keys                 []*Key

	services  map[string]*Service
	consumers map[string]*Consumer
	upstreams map[string]*Upstream
	certs     map[string]*Certificate
}

// EmptyHash is the configuration hash of an empty configuration.
const EmptyHash = "00000000000000000000000000000000"

// Records is every entity of a configuration as processed JSON-shaped
// maps, keyed by kind name (Kind.Name).
type Records map[string][]map[string]any

// Empty reports whether r holds no entity of any kind (the configuration
// whose hash is EmptyHash).
func (r Records) Empty() bool {
	for _, k := range Kinds {
		if len(r[k.Name]) > 0 {
			return false
		}
	}
	return true
}

// NewConfig builds a snapshot from processed records (as stored).
func NewConfig(version uint64, recs Records) (*Config, error) {
	c := &Config{Version: version}
	h := md5.New()
	for _, k := range Kinds {
		list := append([]map[string]any(nil), recs[k.Name]...)
		sort.SliceStable(list, func(i, j int) bool {
			a, b := toF(list[i]["created_at"]), toF(list[j]["created_at"])
			if a != b {
				return a < b
			}
			return fmt.Sprint(list[i]["id"]) < fmt.Sprint(list[j]["id"])
		})
		raw, err := json.Marshal(list)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", k.Name, err)
		}
		if len(list) > 0 {
			h.Write([]byte(k.Name))
			h.Write(raw)
		}
		if err := c.decode(k.Name, raw); err != nil {
			return nil, fmt.Errorf("decode %s: %w", k.Name, err)
		}
	}
	c.Hash = hex.EncodeToString(h.Sum(nil))
	if recs.Empty() {
		c.Hash = EmptyHash
	}
	c.services = make(map[string]*Service, len(c.Services))
	for _, s := range c.Services {
		c.services[s.ID] = s
	}
	c.consumers = make(map[string]*Consumer, len(c.Consumers))
	for _, s := range c.Consumers {
		c.consumers[s.ID] = s
	}
	c.upstreams = make(map[string]*Upstream, len(c.Upstreams))
	for _, u := range c.Upstreams {
		c.upstreams[u.ID] = u
	}
	c.certs = make(map[string]*Certificate, len(c.Certificates))
	for _, x := range c.Certificates {
		c.certs[x.ID] = x
	}
	return c, nil
}

func toF(v any) float64 {
	f, _ := v.(float64)
	return f
}

func (c *Config) decode(kind string, raw []byte) error {
	var dst any
	switch kind {
	case "services":
		dst = &c.Services
	case "routes":
		dst = &c.Routes
	case "consumers":
		dst = &c.Consumers
	case "plugins":
		dst = &c.Plugins
	case "upstreams":
		dst = &c.Upstreams
	case "targets":
		dst = &c.Targets
	case "certificates":
		dst = &c.Certificates
	case "snis":
		dst = &c.SNIs
	case "ca_certificates":
		dst = &c.CACertificates
	case "keyauth_credentials":
		dst = &c.KeyAuthCredentials
	case "basicauth_credentials":
		dst = &c.BasicAuthCredentials
	case "jwt_secrets":
		dst = &c.JWTSecrets
	case "hmacauth_credentials":
		dst = &c.HMACAuthCredentials
	case "oauth2_credentials":
		dst = &c.OAuth2Credentials
	case "acls":
		dst = &c.ACLGroups
	case "key_sets":
		dst = &c.KeySets
	case "keys":
		dst = &c.Keys
	default:
		return fmt.Errorf("unknown kind %q", kind)
	}
	return json.Unmarshal(raw, dst)
}

// Service returns the service with the given id, or nil.
func (c *Config) Service(id string) *Service { return c.services[id] }

// Consumer returns the consumer with the given id, or nil.
func (c *Config) Consumer(id string) *Consumer { return c.consumers[id] }

// Upstream returns the upstream with the given id, or nil.
func (c *Config) Upstream(id string) *Upstream { return c.upstreams[id] }

// UpstreamByName returns the upstream whose name equals host (a service's
// host names an upstream when it matches one), or nil.
func (c *Config) UpstreamByName(host string) *Upstream {
	for _, u := range c.Upstreams {
		if u.Name == host {
			return u
		}
	}
	return nil
}

// Certificate returns the certificate with the given id, or nil.
func (c *Config) Certificate(id string) *Certificate { return c.certs[id] }

// KeyAuthRemainingTTL returns the seconds a key-auth credential created at
// createdAt (epoch seconds) with a ttl has left at now, as Kong reports it
// (rounded down), and false when the credential has no ttl.
func KeyAuthRemainingTTL(createdAt float64, ttl *int, now time.Time) (int, bool) {
	if ttl == nil || *ttl <= 0 {
		return 0, false
	}
	left := createdAt + float64(*ttl) - float64(now.UnixNano())/1e9
	return int(math.Floor(left)), true
}

// Expired reports whether the credential's ttl has run out at now; the data
// plane must not accept an expired key.
func (k *KeyAuthCredential) Expired(now time.Time) bool {
	left, ok := KeyAuthRemainingTTL(float64(k.CreatedAt), k.TTL, now)
	return ok && left <= 0
}
