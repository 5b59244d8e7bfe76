package plugin

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// Env is what plugin factories get besides their own config: look-ups over
// the configuration snapshot (built once per snapshot) and the state that
// outlives snapshots (rate-limit counters, metrics).
type Env struct {
	Config *entity.Config
	// KeyAuth maps an API key to its credential.
	KeyAuth map[string]*entity.KeyAuthCredential
	// BasicAuth maps a basic-auth username to its credential.
	BasicAuth map[string]*entity.BasicAuthCredential
	// JWT maps a jwt credential key to its credential.
	JWT map[string]*entity.JWTSecret
	// HMAC maps an hmac-auth username to its credential.
	HMAC map[string]*entity.HMACAuthCredential
	// OAuth2 maps an oauth2 client_id, and OAuth2ByID a credential id, to
	// its credential.
	OAuth2, OAuth2ByID map[string]*entity.OAuth2Credential
	// Groups maps a consumer id to its ACL groups.
	Groups map[string][]string
	// consumersByName maps usernames to consumers.
	consumersByName map[string]*entity.Consumer
	// State survives configuration changes.
	State *State
}

// State is the plugins' state that survives configuration changes.
type State struct {
	Counters *Counters
	Metrics  *Metrics
	// Now is the clock plugins read (the proxy's cached clock).
	Now func() time.Time
	// Shared holds objects a plugin keeps across snapshots (http-log's
	// delivery queues), keyed by the plugin's id.
	Shared *Shared
	// OAuth2 stores the oauth2 plugin's tokens and codes; nil without a
	// database (DB-less and hybrid data planes), where the plugin refuses
	// to run as Kong's does.
	OAuth2 store.OAuth2Store
}

// Shared is a keyed set of long-lived plugin objects.
type Shared struct {
	mu sync.Mutex
	m  map[string]any
}

// prune forgets the objects of plugins that are no longer configured.
func (s *Shared) prune(live map[string]bool) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.m {
		if !live[k] {
			delete(s.m, k)
		}
	}
}

// Get returns the object stored under key (a plugin id) if keep accepts it; otherwise it
// stores and returns a new one from mk (a plugin whose config changed
// replaces its object, so the set holds one per plugin). A nil Shared keeps
// nothing: every call creates.
func (s *Shared) Get(key string, keep func(any) bool, mk func() any) any {
	if s == nil {
		return mk()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[key]; ok && keep(v) {
		return v
	}
	if s.m == nil {
		s.m = map[string]any{}
	}
	v := mk()
	s.m[key] = v
	return v
}

// NewState returns empty long-lived plugin state.
func NewState() *State {
	return &State{Counters: NewCounters(), Metrics: NewMetrics(), Now: time.Now, Shared: &Shared{}}
}

// NewEnv indexes cfg for the plugins.
func NewEnv(cfg *entity.Config, st *State) *Env {
	e := &Env{
		Config:          cfg,
		KeyAuth:         make(map[string]*entity.KeyAuthCredential, len(cfg.KeyAuthCredentials)),
		BasicAuth:       make(map[string]*entity.BasicAuthCredential, len(cfg.BasicAuthCredentials)),
		JWT:             make(map[string]*entity.JWTSecret, len(cfg.JWTSecrets)),
		HMAC:            make(map[string]*entity.HMACAuthCredential, len(cfg.HMACAuthCredentials)),
		OAuth2:          make(map[string]*entity.OAuth2Credential, len(cfg.OAuth2Credentials)),
		OAuth2ByID:      make(map[string]*entity.OAuth2Credential, len(cfg.OAuth2Credentials)),
		Groups:          map[string][]string{},
		consumersByName: map[string]*entity.Consumer{},
		State:           st,
	}
	for _, k := range cfg.KeyAuthCredentials {
		e.KeyAuth[k.Key] = k
	}
	for _, b := range cfg.BasicAuthCredentials {
		e.BasicAuth[b.Username] = b
	}
	for _, j := range cfg.JWTSecrets {
		e.JWT[j.Key] = j
	}
	for _, h := range cfg.HMACAuthCredentials {
		e.HMAC[h.Username] = h
	}
	for _, o := range cfg.OAuth2Credentials {
		e.OAuth2[o.ClientID] = o
		e.OAuth2ByID[o.ID] = o
	}
	for _, a := range cfg.ACLGroups {
		if a.Consumer != nil {
			e.Groups[a.Consumer.ID] = append(e.Groups[a.Consumer.ID], a.Group)
		}
	}
	for _, c := range cfg.Consumers {
		if c.Username != nil {
			e.consumersByName[*c.Username] = c
		}
	}
	if st != nil && st.Shared != nil {
		live := make(map[string]bool, len(cfg.Plugins))
		for _, p := range cfg.Plugins {
			live[p.ID] = true
		}
		st.Shared.prune(live)
	}
	return e
}

// Now reads the plugins' clock (State.Now, the proxy's cached clock), or
// time.Now without one.
func (e *Env) Now() time.Time {
	if st := e.State; st != nil && st.Now != nil {
		return st.Now()
	}
	return time.Now()
}

// LookupConsumer finds a consumer by id or username (Kong's "anonymous"
// field accepts both).
func (e *Env) LookupConsumer(idOrName string) *entity.Consumer {
	if c := e.Config.Consumer(idOrName); c != nil {
		return c
	}
	return e.consumersByName[idOrName]
}

// CounterKey identifies one rate-limit window.
type CounterKey struct {
	Plugin     string
	Identifier string
	Period     uint8
	Window     int64 // window start, unix seconds
}

const counterShards = 32

// Counters are in-memory fixed-window counters (the "local" policy). A
// window's counter is an atomic integer: the common case (the window
// exists) takes only a shard's read lock, so concurrent requests of one
// consumer do not serialise on a mutex.
type Counters struct {
	seed   maphash.Seed
	shards [counterShards]counterShard
}

type counterShard struct {
	mu      sync.RWMutex
	m       map[CounterKey]*atomic.Int64
	inserts int
}

// NewCounters returns empty counters.
func NewCounters() *Counters {
	c := &Counters{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = map[CounterKey]*atomic.Int64{}
	}
	return c
}

func (c *Counters) shard(k *CounterKey) *counterShard {
	h := maphash.String(c.seed, k.Identifier)
	h ^= uint64(k.Window) ^ uint64(k.Period)
	return &c.shards[h%counterShards]
}

// Get returns the count of a window.
func (c *Counters) Get(k CounterKey) int64 {
	s := c.shard(&k)
	s.mu.RLock()
	p := s.m[k]
	s.mu.RUnlock()
	if p == nil {
		return 0
	}
	return p.Load()
}

// Add adds n to a window's counter and returns the new count. Windows that
// ended before now are swept when new windows have been created 1024 times
// in a shard; windowEnd tells when a key's window ends.
func (c *Counters) Add(k CounterKey, n int64, now int64, windowEnd func(CounterKey) int64) int64 {
	s := c.shard(&k)
	s.mu.RLock()
	p := s.m[k]
	s.mu.RUnlock()
	if p == nil {
		s.mu.Lock()
		if p = s.m[k]; p == nil {
			p = new(atomic.Int64)
			s.m[k] = p
			s.inserts++
			if s.inserts >= 1024 {
				s.inserts = 0
				for key := range s.m {
					if windowEnd(key) <= now {
						delete(s.m, key)
					}
				}
			}
		}
		s.mu.Unlock()
	}
	return p.Add(n)
}

// HeaderValue returns the first value of a header, case-insensitively, with
// leading/trailing spaces removed.
func HeaderValue(h map[string][]string, name string) string {
	if v := h[name]; len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	for k, v := range h {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
	}
	return ""
}
