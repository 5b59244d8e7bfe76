// Package store persists gateway entities (pkg/proxy/entity) and tells the
// data plane when they change.
//
// Three implementations share one engine for Kong's relational rules
// (unique keys → conflict, foreign keys that must exist, cascading deletes,
// deletes refused while referenced): an in-memory store for DB-less mode, and
// SQL stores on SQLite (modernc.org/sqlite, pure Go) and PostgreSQL (pgx).
// Records are JSON-shaped maps already processed by entity.Validate; the
// store assigns nothing but the version counter, which increases with every
// committed change. Snapshot builds the immutable entity.Config the data plane
// compiles; Changed returns a channel closed on the next change.
//
// Memory and the SQL stores also implement DataPlaneStore, the rows a
// hybrid-mode control plane keeps about its data planes. The SQL stores
// implement OAuth2Store, the oauth2 plugin's runtime rows (DB-less Memory
// does not: Kong's oauth2 plugin needs a database).
package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

// Store is the gateway's entity storage.
type Store interface {
	// Get returns the record of kind with the id, or ErrNotFound.
	Get(ctx context.Context, kind, id string) (map[string]any, error)
	// GetByUnique returns the record whose unique field set (fields joined by
	// ",", e.g. "name" or "upstream,target") has value (see
	// entity.UniqueValue), or ErrNotFound.
	GetByUnique(ctx context.Context, kind, fields, value string) (map[string]any, error)
	// List returns one page of records ordered by id.
	List(ctx context.Context, kind string, q Query) (Page, error)
	// Insert adds a new record; its id must be unused.
	Insert(ctx context.Context, kind string, rec map[string]any) error
	// Update replaces the existing record with the same id.
	Update(ctx context.Context, kind string, rec map[string]any) error
	// Delete removes a record and, following Kong, the records that
	// reference it with a cascading foreign key. Deleting a missing record
	// is not an error.
	Delete(ctx context.Context, kind, id string) error
	// Replace swaps the whole configuration atomically (DB-less /config).
	Replace(ctx context.Context, recs entity.Records) error
	// Snapshot returns the current configuration.
	Snapshot(ctx context.Context) (*entity.Config, error)
	// Version returns the change counter.
	Version(ctx context.Context) (uint64, error)
	// Changed returns a channel that is closed after the next change.
	Changed() <-chan struct{}
	// Ping reports whether the database is reachable.
	Ping(ctx context.Context) error
	// Database names the backend as Kong's configuration.database does:
	// "off", "sqlite" or "postgres".
	Database() string
	Close() error
}

// Query selects a page of a collection.
type Query struct {
	Size   int    // page size; 0 means 100
	Offset string // opaque offset from a previous Page
	// Tags filters by tag: all of them (AND), or any of them when TagsOr.
	Tags   []string
	TagsOr bool
	// ForeignField/ForeignID restrict to records whose foreign key field
	// points at ForeignID (nested endpoints such as /services/{s}/routes).
	ForeignField string
	ForeignID    string
}

// Page is one page of records; Offset is "" on the last page.
type Page struct {
	Data   []map[string]any
	Offset string
}

// ErrNotFound means no such record exists.
var ErrNotFound = errors.New("not found")

// ErrInvalidOffset means a Query.Offset was not produced by this store.
var ErrInvalidOffset = errors.New("invalid offset")

// UniqueError is a unique-constraint violation (Kong code 5, HTTP 409).
type UniqueError struct {
	Kind   string
	Fields map[string]any
}

func (e *UniqueError) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := e.Fields[k]
		if m, ok := v.(map[string]any); ok {
			v = fmt.Sprintf("{id=%q}", m["id"])
			parts[i] = fmt.Sprintf("%s=%s", k, v)
			continue
		}
		if s, ok := v.(string); ok {
			parts[i] = fmt.Sprintf("%s=%q", k, s)
		} else {
			parts[i] = fmt.Sprintf("%s=%v", k, v)
		}
	}
	return fmt.Sprintf("UNIQUE violation detected on '{%s}'", strings.Join(parts, ","))
}

// PrimaryKeyError means a record with that id already exists (Kong code 3).
type PrimaryKeyError struct {
	Kind, ID string
}

func (e *PrimaryKeyError) Error() string {
	return fmt.Sprintf("primary key violation on key '{id=%q}'", e.ID)
}

// ForeignKeyError means a foreign key points at a missing record (code 4).
type ForeignKeyError struct {
	Kind, Field, Ref, ID string
}

func (e *ForeignKeyError) Error() string {
	return fmt.Sprintf("the foreign key '{id=%q}' does not reference an existing '%s' entity.", e.ID, e.Ref)
}

// ReferencedError means a record cannot be deleted because another kind
// references it without cascading (code 4, "@referenced_by").
type ReferencedError struct {
	Kind, By string
}

func (e *ReferencedError) Error() string {
	return fmt.Sprintf("an existing '%s' entity references this '%s' entity", e.By, e.Kind)
}

// Notifier hands out a channel that is closed on the next change.
type Notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func NewNotifier() *Notifier { return &Notifier{ch: make(chan struct{})} }

func (n *Notifier) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *Notifier) Notify() {
	n.mu.Lock()
	close(n.ch)
	n.ch = make(chan struct{})
	n.mu.Unlock()
}
