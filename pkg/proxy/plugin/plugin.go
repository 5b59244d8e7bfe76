// Package plugin defines how the gateway runs Kong-style plugins: the phase
// interfaces a plugin implements (access, header filter, body filter, log),
// the per-request Context they share, Kong's priority ordering and its
// scoping precedence (route+service+consumer > route+consumer >
// service+consumer > route+service > consumer > route > service > global),
// compiled once per configuration snapshot into a Chain per route.
package plugin

import (
	"errors"
	"fmt"
	"sort"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

// Accessor runs in the access phase, before the request is proxied. It may
// change the request, set response headers, authenticate a consumer or
// answer the request itself with Context.Exit.
type Accessor interface {
	Access(c *Context)
}

// HeaderFilter runs when the response status and headers are known (from the
// upstream or from an Exit), before they are sent to the client.
type HeaderFilter interface {
	HeaderFilter(c *Context)
}

// BodyFilter rewrites a whole response body. The gateway buffers the body
// only when WantsBody says so for this response.
type BodyFilter interface {
	WantsBody(c *Context) bool
	BodyFilter(c *Context, body []byte) []byte
}

// Logger runs after the response has been sent.
type Logger interface {
	Log(c *Context)
}

// Factory builds a plugin instance from its validated config (Kong's JSON
// shape with defaults filled in).
type Factory struct {
	Name     string
	Priority int
	New      func(p *entity.Plugin, env *Env) (any, error)
}

// Registry maps plugin names to factories.
type Registry map[string]*Factory

// Instance is one configured plugin.
type Instance struct {
	Plugin   *entity.Plugin
	Priority int
	Handler  any
	// protocols the instance applies to (empty: all).
	protocols []string
}

// AppliesTo reports whether the instance runs for requests of scheme.
func (in *Instance) AppliesTo(scheme string) bool {
	if len(in.protocols) == 0 {
		return true
	}
	for _, p := range in.protocols {
		if p == scheme {
			return true
		}
	}
	return false
}

// slot resolves one plugin name for one route, per Kong's precedence.
type slot struct {
	name     string
	priority int
	// combos holds route+service+consumer, route+consumer and
	// service+consumer instances (most specific kept) by consumer id.
	combos       map[string]*Instance
	routeService *Instance
	consumerOnly map[string]*Instance
	// fallback is route, else service, else global.
	fallback *Instance
}

func (s *slot) resolve(consumerID string) *Instance {
	if consumerID != "" {
		if in := s.combos[consumerID]; in != nil {
			return in
		}
	}
	if s.routeService != nil {
		return s.routeService
	}
	if consumerID != "" {
		if in := s.consumerOnly[consumerID]; in != nil {
			return in
		}
	}
	return s.fallback
}

// Chain is the ordered set of plugin slots that apply to one route (or to
// requests without a route: global plugins only).
type Chain struct {
	slots []slot
}

// Len is the number of plugin names in the chain.
func (ch *Chain) Len() int { return len(ch.slots) }

// failed stands in for a plugin instance that could not be built.
type failed struct{}

func (failed) Access(c *Context) { c.Error(500, "An unexpected error occurred") }

// Set is the compiled plugins of one configuration snapshot.
type Set struct {
	// Problems lists plugin instances that could not be built (they
	// answer 500 in their scope).
	Problems []error

	instances []*Instance
	global    *Chain
	chains    map[string]*Chain // by route id
}

// Instances lists every built instance (for phases outside requests, e.g.
// metrics export).
func (s *Set) Instances() []*Instance { return s.instances }

// ForRoute returns the chain for a route (the global chain when the route
// has no plugin of its own).
func (s *Set) ForRoute(routeID string) *Chain {
	if ch := s.chains[routeID]; ch != nil {
		return ch
	}
	return s.global
}

// Global returns the chain of global plugins.
func (s *Set) Global() *Chain { return s.global }

// Compile builds every enabled plugin instance in cfg and resolves, for each
// route, the slots that may apply to it. Plugins scoped to disabled or
// missing entities are skipped.
func Compile(cfg *entity.Config, reg Registry, env *Env) (*Set, error) {
	set := &Set{chains: map[string]*Chain{}}
	type scoped struct {
		in                       *Instance
		route, service, consumer string
	}
	var all []scoped
	for _, p := range cfg.Plugins {
		if !p.Enabled {
			continue
		}
		f := reg[p.Name]
		var h any
		var err error
		prio := 0
		if f == nil {
			err = errors.New("kiln does not implement this plugin")
		} else {
			prio = f.Priority
			h, err = f.New(p, env)
		}
		if err != nil {
			// Fail closed: requests in the plugin's scope get a 500 (a
			// skipped auth plugin would open the route), while the rest of
			// the configuration still applies.
			err = fmt.Errorf("plugin %s (%s): %w; requests in its scope answer 500 until it is fixed or removed", p.Name, p.ID, err)
			set.Problems = append(set.Problems, err)
			h = failed{}
		}
		in := &Instance{Plugin: p, Priority: prio, Handler: h, protocols: p.Protocols}
		set.instances = append(set.instances, in)
		sc := scoped{in: in}
		if p.Route != nil {
			sc.route = p.Route.ID
		}
		if p.Service != nil {
			sc.service = p.Service.ID
		}
		if p.Consumer != nil {
			sc.consumer = p.Consumer.ID
		}
		all = append(all, sc)
	}
	build := func(routeID, serviceID string) *Chain {
		byName := map[string]*slot{}
		var order []*slot
		// specificity ranks among the combos (higher wins).
		comboRank := map[*Instance]int{}
		get := func(in *Instance) *slot {
			s := byName[in.Plugin.Name]
			if s == nil {
				s = &slot{name: in.Plugin.Name, priority: in.Priority}
				byName[in.Plugin.Name] = s
				order = append(order, s)
			}
			return s
		}
		fallbackRank := map[*slot]int{}
		for _, sc := range all {
			routeOK := sc.route == "" || sc.route == routeID
			serviceOK := sc.service == "" || (serviceID != "" && sc.service == serviceID)
			if !routeOK || !serviceOK {
				continue
			}
			s := get(sc.in)
			r, sv, c := sc.route != "", sc.service != "", sc.consumer != ""
			switch {
			case c && (r || sv):
				rank := 1 // service+consumer
				if r && sv {
					rank = 3
				} else if r {
					rank = 2
				}
				if s.combos == nil {
					s.combos = map[string]*Instance{}
				}
				if old := s.combos[sc.consumer]; old == nil || comboRank[old] < rank {
					s.combos[sc.consumer] = sc.in
					comboRank[sc.in] = rank
				}
			case r && sv:
				s.routeService = sc.in
			case c:
				if s.consumerOnly == nil {
					s.consumerOnly = map[string]*Instance{}
				}
				s.consumerOnly[sc.consumer] = sc.in
			default:
				rank := 1 // global
				if r {
					rank = 3
				} else if sv {
					rank = 2
				}
				if s.fallback == nil || fallbackRank[s] < rank {
					s.fallback = sc.in
					fallbackRank[s] = rank
				}
			}
		}
		sort.SliceStable(order, func(i, j int) bool { return order[i].priority > order[j].priority })
		ch := &Chain{slots: make([]slot, len(order))}
		for i, s := range order {
			ch.slots[i] = *s
		}
		return ch
	}
	set.global = build("", "")
	if len(all) == 0 {
		return set, nil
	}
	for _, rt := range cfg.Routes {
		svc := ""
		if rt.Service != nil {
			svc = rt.Service.ID
		}
		set.chains[rt.ID] = build(rt.ID, svc)
	}
	return set, nil
}
