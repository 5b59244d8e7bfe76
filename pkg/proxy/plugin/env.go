package plugin

import (
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
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
}

// NewState returns empty long-lived plugin state.
func NewState() *State {
	return &State{Counters: NewCounters(), Metrics: NewMetrics(), Now: time.Now}
}

// NewEnv indexes cfg for the plugins.
func NewEnv(cfg *entity.Config, st *State) *Env {
	e := &Env{
		Config:          cfg,
		KeyAuth:         make(map[string]*entity.KeyAuthCredential, len(cfg.KeyAuthCredentials)),
		BasicAuth:       make(map[string]*entity.BasicAuthCredential, len(cfg.BasicAuthCredentials)),
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
	return e
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

// Counters are in-memory fixed-window counters (the "local" policy).
type Counters struct {
	shards [counterShards]counterShard
}

type counterShard struct {
	mu    sync.Mutex
	m     map[CounterKey]int64
	sweep int
}

// NewCounters returns empty counters.
func NewCounters() *Counters {
	c := &Counters{}
	for i := range c.shards {
		c.shards[i].m = map[CounterKey]int64{}
	}
	return c
}

func (c *Counters) shard(k *CounterKey) *counterShard {
	h := uint32(2166136261)
	for i := 0; i < len(k.Identifier); i++ {
		h = (h ^ uint32(k.Identifier[i])) * 16777619
	}
	h ^= uint32(k.Window) ^ uint32(k.Period)
	return &c.shards[h%counterShards]
}

// Get returns the count of a window.
func (c *Counters) Get(k CounterKey) int64 {
	s := c.shard(&k)
	s.mu.Lock()
	v := s.m[k]
	s.mu.Unlock()
	return v
}

// Add increments a window's counter; expired windows (ended before now) are
// swept from time to time. windowEnd tells the sweeper when k expires.
func (c *Counters) Add(k CounterKey, n int64, now int64, windowEnd func(CounterKey) int64) int64 {
	s := c.shard(&k)
	s.mu.Lock()
	v := s.m[k] + n
	s.m[k] = v
	s.sweep++
	if s.sweep >= 4096 {
		s.sweep = 0
		for key := range s.m {
			if windowEnd(key) <= now {
				delete(s.m, key)
			}
		}
	}
	s.mu.Unlock()
	return v
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
