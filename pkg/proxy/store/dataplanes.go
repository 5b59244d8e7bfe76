package store

import (
	"context"
	"maps"
	"sort"
	"sync"
	"time"
)

// DataPlane is one row of Kong's clustering_data_planes table: a hybrid-mode
// data plane as a control plane last saw it. Rows are not Admin API
// entities: the control plane writes them on every ping, they carry a
// time to live, and writing them is not a configuration change (no version
// bump, no change notification).
type DataPlane struct {
	ID, IP, Hostname, Version string
	// SyncStatus is Kong's sync_status ("normal", "unknown", ...).
	SyncStatus string
	// ConfigHash is the configuration hash the data plane last reported.
	ConfigHash          string
	LastSeen, UpdatedAt time.Time
	// Labels are the data plane's cluster_dp_labels (nil: none).
	Labels map[string]string
	// CertExpiry is the data plane certificate's notAfter in Unix seconds
	// (0: unknown).
	CertExpiry int64
	// ExpiresAt ends the row's life (Kong's ttl column): from then on it is
	// never listed, and PurgeDataPlanes deletes it.
	ExpiresAt time.Time
}

// DataPlaneStore keeps a control plane's data plane rows. Control planes
// sharing a database share the rows, so any of them lists every data plane.
type DataPlaneStore interface {
	// UpsertDataPlane inserts the row or replaces the one with its id.
	UpsertDataPlane(ctx context.Context, dp DataPlane) error
	// ListDataPlanes returns, ordered by id, up to limit rows (every row
	// when limit <= 0) whose id sorts after after and that have not
	// expired at now.
	ListDataPlanes(ctx context.Context, now time.Time, after string, limit int) ([]DataPlane, error)
	// PurgeDataPlanes deletes the rows expired at now and reports how many
	// it deleted.
	PurgeDataPlanes(ctx context.Context, now time.Time) (int, error)
}

// memDataPlanes is the in-memory DataPlaneStore: the rows last as long as
// the process.
type memDataPlanes struct {
	mu   sync.Mutex
	rows map[string]DataPlane
}

func cloneDataPlane(dp DataPlane) DataPlane {
	dp.Labels = maps.Clone(dp.Labels)
	return dp
}

// UpsertDataPlane implements DataPlaneStore.
func (m *Memory) UpsertDataPlane(_ context.Context, dp DataPlane) error {
	d := &m.dataPlanes
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rows == nil {
		d.rows = map[string]DataPlane{}
	}
	d.rows[dp.ID] = cloneDataPlane(dp)
	return nil
}

// ListDataPlanes implements DataPlaneStore.
func (m *Memory) ListDataPlanes(_ context.Context, now time.Time, after string, limit int) ([]DataPlane, error) {
	d := &m.dataPlanes
	d.mu.Lock()
	out := make([]DataPlane, 0, len(d.rows))
	for id, dp := range d.rows {
		if id > after && now.Before(dp.ExpiresAt) {
			out = append(out, cloneDataPlane(dp))
		}
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// PurgeDataPlanes implements DataPlaneStore.
func (m *Memory) PurgeDataPlanes(_ context.Context, now time.Time) (int, error) {
	d := &m.dataPlanes
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for id, dp := range d.rows {
		if !now.Before(dp.ExpiresAt) {
			delete(d.rows, id)
			n++
		}
	}
	return n, nil
}
