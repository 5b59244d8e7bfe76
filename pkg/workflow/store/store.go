// Package store persists workflows. Store is the boundary: the bbolt
// implementation here keeps them in one local file when kiln runs without a
// Kubernetes API; package kube implements it over tinkerbell.org/v1alpha1
// Workflow objects (Update is get → mutate → status update, retried on
// conflict), and package storetest is the behaviour both must show.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kiln-dev/kiln/pkg/workflow"
)

// Errors every Store returns (wrapped) so callers can tell them apart.
var (
	ErrNotFound = errors.New("workflow not found")
	ErrExists   = errors.New("workflow already exists")
)

// Store keeps workflows addressed by "<namespace>/<name>" (workflow.ID()).
type Store interface {
	// Create adds a new workflow; ErrExists if the id is taken.
	Create(ctx context.Context, w *workflow.Workflow) error
	// Get returns a copy of one workflow; ErrNotFound if absent.
	Get(ctx context.Context, id string) (*workflow.Workflow, error)
	// List returns every workflow, sorted by id.
	List(ctx context.Context) ([]*workflow.Workflow, error)
	// ListByAgent returns the workflows with a task whose worker (agent id,
	// the machine's MAC) is agentID, case-insensitively, oldest first.
	ListByAgent(ctx context.Context, agentID string) ([]*workflow.Workflow, error)
	// Update applies mutate to the current stored version atomically and
	// stores the result unless mutate returns an error.
	Update(ctx context.Context, id string, mutate func(*workflow.Workflow) error) (*workflow.Workflow, error)
	// Delete removes a workflow; ErrNotFound if absent.
	Delete(ctx context.Context, id string) error
	Close() error
}

var (
	bucket = []byte("workflows")
	// agentIndex maps "<lower-case agent id>\x00<workflow id>" to nothing, so
	// GetAction decodes only the polling agent's workflows.
	agentIndex = []byte("agents")
)

func indexKeys(w *workflow.Workflow) [][]byte {
	seen := map[string]bool{}
	var keys [][]byte
	for _, t := range w.Tasks {
		a := strings.ToLower(t.AgentID)
		if !seen[a] {
			seen[a] = true
			keys = append(keys, []byte(a+"\x00"+w.ID()))
		}
	}
	return keys
}

func putIndex(tx *bolt.Tx, w *workflow.Workflow) error {
	idx := tx.Bucket(agentIndex)
	for _, k := range indexKeys(w) {
		if err := idx.Put(k, nil); err != nil {
			return err
		}
	}
	return nil
}

func deleteIndex(tx *bolt.Tx, w *workflow.Workflow) error {
	idx := tx.Bucket(agentIndex)
	for _, k := range indexKeys(w) {
		if err := idx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Bolt is a Store in a single bbolt file.
type Bolt struct {
	db   *bolt.DB
	path string
}

// OpenBolt opens (creating if needed) the workflow database at path. Only one
// process may hold it; a second one waits up to timeout and then fails.
func OpenBolt(path string, timeout time.Duration) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("workflow database %s is locked by another kiln process: %w", path, err)
		}
		return nil, fmt.Errorf("opening workflow database %s: %w", path, err)
	}
	b := &Bolt{db: db, path: path}
	if err := db.Update(func(tx *bolt.Tx) error {
		wfs, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		if tx.Bucket(agentIndex) != nil {
			return nil
		}
		// A database from before the index: build it once.
		if _, err := tx.CreateBucket(agentIndex); err != nil {
			return err
		}
		return wfs.ForEach(func(k, v []byte) error {
			w, err := b.decode(string(k), v)
			if err != nil {
				return err
			}
			return putIndex(tx, w)
		})
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialising workflow database %s: %w", path, err)
	}
	return b, nil
}

// Close releases the database file.
func (b *Bolt) Close() error { return b.db.Close() }

func (b *Bolt) decode(id string, raw []byte) (*workflow.Workflow, error) {
	var w workflow.Workflow
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("workflow %s in %s is corrupt (%w); move the file away to start with an empty database", id, b.path, err)
	}
	return &w, nil
}

// Create implements Store.
func (b *Bolt) Create(ctx context.Context, w *workflow.Workflow) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	raw, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("encoding workflow %s: %w", w.ID(), err)
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		if bk.Get([]byte(w.ID())) != nil {
			return fmt.Errorf("%w: %s", ErrExists, w.ID())
		}
		if err := putIndex(tx, w); err != nil {
			return err
		}
		return bk.Put([]byte(w.ID()), raw)
	})
}

// Get implements Store.
func (b *Bolt) Get(ctx context.Context, id string) (*workflow.Workflow, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var w *workflow.Workflow
	err := b.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucket).Get([]byte(id))
		if raw == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		var err error
		w, err = b.decode(id, raw)
		return err
	})
	return w, err
}

// List implements Store.
func (b *Bolt) List(ctx context.Context) ([]*workflow.Workflow, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []*workflow.Workflow
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			w, err := b.decode(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, w)
			return nil
		})
	})
	return out, err // bbolt iterates in key order
}

// ListByAgent implements Store through the agent index.
func (b *Bolt) ListByAgent(ctx context.Context, agentID string) ([]*workflow.Workflow, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prefix := []byte(strings.ToLower(agentID) + "\x00")
	var out []*workflow.Workflow
	err := b.db.View(func(tx *bolt.Tx) error {
		wfs := tx.Bucket(bucket)
		c := tx.Bucket(agentIndex).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			id := string(k[len(prefix):])
			raw := wfs.Get([]byte(id))
			if raw == nil {
				continue
			}
			w, err := b.decode(id, raw)
			if err != nil {
				return err
			}
			out = append(out, w)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return FilterByAgent(out, agentID), nil
}

// FilterByAgent keeps the workflows of one agent, oldest first; Store
// implementations without an index use it.
func FilterByAgent(all []*workflow.Workflow, agentID string) []*workflow.Workflow {
	var out []*workflow.Workflow
	for _, w := range all {
		for _, t := range w.Tasks {
			if strings.EqualFold(t.AgentID, agentID) {
				out = append(out, w)
				break
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// Update implements Store.
func (b *Bolt) Update(ctx context.Context, id string, mutate func(*workflow.Workflow) error) (*workflow.Workflow, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var w *workflow.Workflow
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		raw := bk.Get([]byte(id))
		if raw == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		var err error
		if w, err = b.decode(id, raw); err != nil {
			return err
		}
		if err := deleteIndex(tx, w); err != nil {
			return err
		}
		if err := mutate(w); err != nil {
			return err
		}
		if err := putIndex(tx, w); err != nil {
			return err
		}
		if w.ID() != id {
			return fmt.Errorf("update of %s tried to rename it to %s", id, w.ID())
		}
		out, err := json.Marshal(w)
		if err != nil {
			return fmt.Errorf("encoding workflow %s: %w", id, err)
		}
		return bk.Put([]byte(id), out)
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Delete implements Store.
func (b *Bolt) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		raw := bk.Get([]byte(id))
		if raw == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if w, err := b.decode(id, raw); err == nil {
			if err := deleteIndex(tx, w); err != nil {
				return err
			}
		}
		return bk.Delete([]byte(id))
	})
}

// Ensure creates each workflow that does not exist yet and leaves existing
// ones untouched, so a restarted server resumes where it stopped. It returns
// how many were created.
func Ensure(ctx context.Context, st Store, wfs []*workflow.Workflow) (int, error) {
	created := 0
	for _, w := range wfs {
		err := st.Create(ctx, w)
		switch {
		case err == nil:
			created++
		case errors.Is(err, ErrExists):
		default:
			return created, err
		}
	}
	return created, nil
}
