package store

import (
	"context"
	"sort"
	"sync"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/schema"
)

// Memory is the in-memory store used in DB-less mode. Its zero value is not
// usable; call NewMemory.
type Memory struct {
	mu      sync.RWMutex
	st      *memState
	version uint64
	cfg     *entity.Config // cached snapshot for version
	// source is the hash of the declarative document the contents came
	// from ("" after any other change); Kong's /config?check_hash=1.
	source string
	*Notifier
	dataPlanes memDataPlanes // hybrid-mode DP rows (DataPlaneStore)
}

type memRow struct {
	rec map[string]any
	ri  RowIndex
}

type memState struct {
	rows    map[string]map[string]memRow // kind → id → row
	uniques map[string]string            // kind \x00 set \x00 value → id
	refsTo  map[string]map[Ref]bool      // kind \x00 id → referrers
}

func newMemState() *memState {
	return &memState{rows: map[string]map[string]memRow{}, uniques: map[string]string{}, refsTo: map[string]map[Ref]bool{}}
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{st: newMemState(), Notifier: NewNotifier()}
}

func ukey(parts ...string) string {
	s := parts[0]
	for _, p := range parts[1:] {
		s += "\x00" + p
	}
	return s
}

func (s *memState) Lookup(_ context.Context, kind, id string) (map[string]any, error) {
	if r, ok := s.rows[kind][id]; ok {
		return r.rec, nil
	}
	return nil, nil
}

func (s *memState) UniqueOwner(_ context.Context, kind, name, value string) (string, error) {
	return s.uniques[ukey(kind, name, value)], nil
}

func (s *memState) Put(ctx context.Context, kind string, rec map[string]any, ri RowIndex, _ bool) error {
	if err := s.Remove(ctx, kind, ri.ID); err != nil {
		return err
	}
	if s.rows[kind] == nil {
		s.rows[kind] = map[string]memRow{}
	}
	s.rows[kind][ri.ID] = memRow{rec: schema.DeepCopy(rec).(map[string]any), ri: ri}
	for name, v := range ri.Uniques {
		s.uniques[ukey(kind, name, v)] = ri.ID
	}
	for field, r := range ri.Refs {
		key := ukey(r.Kind, r.ID)
		if s.refsTo[key] == nil {
			s.refsTo[key] = map[Ref]bool{}
		}
		s.refsTo[key][Ref{Kind: kind, ID: ri.ID, Field: field}] = true
	}
	return nil
}

func (s *memState) Remove(_ context.Context, kind, id string) error {
	old, ok := s.rows[kind][id]
	if !ok {
		return nil
	}
	for name, v := range old.ri.Uniques {
		delete(s.uniques, ukey(kind, name, v))
	}
	for field, r := range old.ri.Refs {
		delete(s.refsTo[ukey(r.Kind, r.ID)], Ref{Kind: kind, ID: id, Field: field})
	}
	delete(s.rows[kind], id)
	return nil
}

func (s *memState) Referrers(_ context.Context, refKind, refID string) ([]Ref, error) {
	var out []Ref
	for r := range s.refsTo[ukey(refKind, refID)] {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind+out[i].ID < out[j].Kind+out[j].ID })
	return out, nil
}

func (s *memState) Scan(_ context.Context, kind string, q Query, after string, limit int) ([]map[string]any, error) {
	ids := make([]string, 0, len(s.rows[kind]))
	for id, r := range s.rows[kind] {
		if id <= after {
			continue
		}
		if q.ForeignField != "" && r.ri.Refs[q.ForeignField].ID != q.ForeignID {
			continue
		}
		if !TagsMatch(q, r.ri.Tags) {
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]map[string]any, len(ids))
	for i, id := range ids {
		out[i] = schema.DeepCopy(s.rows[kind][id].rec).(map[string]any)
	}
	return out, nil
}

func (s *memState) Truncate(context.Context) error {
	*s = *newMemState()
	return nil
}

func (s *memState) clone() *memState {
	c := newMemState()
	for k, rows := range s.rows {
		c.rows[k] = make(map[string]memRow, len(rows))
		for id, r := range rows {
			c.rows[k][id] = r
		}
	}
	for k, v := range s.uniques {
		c.uniques[k] = v
	}
	for k, set := range s.refsTo {
		c.refsTo[k] = make(map[Ref]bool, len(set))
		for r := range set {
			c.refsTo[k][r] = true
		}
	}
	return c
}

// mutate runs fn on a copy of the state and publishes it only on success,
// so a failed cascade never leaves a half-applied change.
func (m *Memory) mutate(fn func(*memState) error) error {
	_, err := m.publish(fn, false, "")
	return err
}

// publish is mutate, and with build it also compiles the copy's
// configuration before publishing it: contents that do not compile are
// refused, and the configuration built is cached for Snapshot. source is
// the new contents' document hash (SourceHash).
func (m *Memory) publish(fn func(*memState) error, build bool, source string) (*entity.Config, error) {
	m.mu.Lock()
	next := m.st.clone()
	if err := fn(next); err != nil {
		m.mu.Unlock()
		return nil, err
	}
	var cfg *entity.Config
	if build {
		var err error
		if cfg, err = entity.NewConfig(m.version+1, next.records()); err != nil {
			m.mu.Unlock()
			return nil, err
		}
	}
	m.st = next
	m.version++
	m.cfg = cfg
	m.source = source
	m.mu.Unlock()
	m.Notify()
	return cfg, nil
}

// records returns every row, by kind.
func (s *memState) records() entity.Records {
	recs := entity.Records{}
	for kind, rows := range s.rows {
		for _, r := range rows {
			recs[kind] = append(recs[kind], r.rec)
		}
	}
	return recs
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, kind, id string) (map[string]any, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	rec, _ := m.st.Lookup(ctx, kind, id)
	if rec == nil {
		return nil, ErrNotFound
	}
	return schema.DeepCopy(rec).(map[string]any), nil
}

// GetByUnique implements Store.
func (m *Memory) GetByUnique(ctx context.Context, kind, fields, value string) (map[string]any, error) {
	m.mu.RLock()
	id := m.st.uniques[ukey(kind, fields, value)]
	m.mu.RUnlock()
	if id == "" {
		return nil, ErrNotFound
	}
	return m.Get(ctx, kind, id)
}

// List implements Store.
func (m *Memory) List(ctx context.Context, kind string, q Query) (Page, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return ExecList(ctx, m.st, kind, q)
}

// Insert implements Store.
func (m *Memory) Insert(ctx context.Context, kind string, rec map[string]any) error {
	return m.mutate(func(s *memState) error { return ExecWrite(ctx, s, kind, rec, true) })
}

// Update implements Store.
func (m *Memory) Update(ctx context.Context, kind string, rec map[string]any) error {
	return m.mutate(func(s *memState) error { return ExecWrite(ctx, s, kind, rec, false) })
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, kind, id string) error {
	m.mu.RLock()
	_, exists := m.st.rows[kind][id]
	m.mu.RUnlock()
	if !exists {
		if _, err := kindOf(kind); err != nil {
			return err
		}
		return nil
	}
	return m.mutate(func(s *memState) error { return ExecDelete(ctx, s, kind, id) })
}

// Replace implements Store.
func (m *Memory) Replace(ctx context.Context, recs entity.Records) error {
	return m.mutate(func(s *memState) error { return ExecReplace(ctx, s, recs) })
}

// ReplaceFrom is Replace for contents loaded from a declarative document
// whose hash (md5 hex of the raw document, as Kong computes it) SourceHash
// reports until the next change. The new contents are compiled before they
// are published (a configuration that does not compile leaves the store as
// it was) and the configuration is cached for Snapshot, so the engine's
// reload does not build it again.
func (m *Memory) ReplaceFrom(ctx context.Context, recs entity.Records, sourceHash string) error {
	_, err := m.publish(func(s *memState) error { return ExecReplace(ctx, s, recs) }, true, sourceHash)
	return err
}

// SourceHash returns the hash given to the last ReplaceFrom, or "" when the
// contents changed since.
func (m *Memory) SourceHash() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.source
}

// Snapshot implements Store.
func (m *Memory) Snapshot(context.Context) (*entity.Config, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg != nil {
		return m.cfg, nil
	}
	cfg, err := entity.NewConfig(m.version, m.st.records())
	if err != nil {
		return nil, err
	}
	m.cfg = cfg
	return cfg, nil
}

// Version implements Store.
func (m *Memory) Version(context.Context) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.version, nil
}

// Ping implements Store.
func (m *Memory) Ping(context.Context) error { return nil }

// Database implements Store.
func (m *Memory) Database() string { return "off" }

// Close implements Store.
func (m *Memory) Close() error { return nil }
