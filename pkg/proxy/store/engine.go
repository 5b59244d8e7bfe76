package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

// Txn is what a backend offers the shared engine (ExecWrite, ExecDelete,
// ExecList, ExecReplace) inside one transaction. Backends implement only
// storage; the engine owns Kong's key and cascade rules.
type Txn interface {
	// Lookup returns the record or nil when absent.
	Lookup(ctx context.Context, kind, id string) (map[string]any, error)
	// UniqueOwner returns the id holding a unique value, or "".
	UniqueOwner(ctx context.Context, kind, name, value string) (string, error)
	// Put stores rec with its index rows, replacing any previous version.
	Put(ctx context.Context, kind string, rec map[string]any, row RowIndex, insert bool) error
	// Remove deletes one record and its index rows.
	Remove(ctx context.Context, kind, id string) error
	// Referrers lists the foreign keys pointing at refKind/refID.
	Referrers(ctx context.Context, refKind, refID string) ([]Ref, error)
	// Scan returns up to limit records with id > after matching q, by id.
	Scan(ctx context.Context, kind string, q Query, after string, limit int) ([]map[string]any, error)
	// Truncate removes every record.
	Truncate(ctx context.Context) error
}

// Ref is one foreign-key edge: kind/id's field points at the referenced id.
type Ref struct {
	Kind, ID, Field string
}

// RowIndex is the derived index data stored with a record.
type RowIndex struct {
	ID        string
	CreatedAt float64
	Tags      []string
	Uniques   map[string]string // unique set name ("upstream,target") → value
	Refs      map[string]FKRef  // field → referenced record
}

// FKRef is the target of a foreign key.
type FKRef struct{ Kind, ID string }

func kindOf(name string) (*entity.Kind, error) {
	k := entity.KindByName(name)
	if k == nil {
		return nil, fmt.Errorf("unknown entity kind %q", name)
	}
	return k, nil
}

func indexOf(k *entity.Kind, rec map[string]any) (RowIndex, error) {
	id, _ := rec["id"].(string)
	if id == "" {
		return RowIndex{}, fmt.Errorf("%s record without id", k.Name)
	}
	ri := RowIndex{ID: id, Uniques: map[string]string{}, Refs: map[string]FKRef{}}
	ri.CreatedAt, _ = rec["created_at"].(float64)
	if tags, ok := rec["tags"].([]any); ok {
		for _, t := range tags {
			if s, ok := t.(string); ok {
				ri.Tags = append(ri.Tags, s)
			}
		}
	}
	for _, set := range k.Unique {
		if v, ok := entity.UniqueValue(rec, set); ok {
			ri.Uniques[strings.Join(set, ",")] = v
		}
	}
	for _, fk := range k.Foreign {
		if fid := entity.FKID(rec, fk.Field); fid != "" {
			ri.Refs[fk.Field] = FKRef{Kind: fk.Ref, ID: fid}
		}
	}
	return ri, nil
}

// ExecWrite checks keys and stores rec (insert or replace).
func ExecWrite(ctx context.Context, tx Txn, kindName string, rec map[string]any, insert bool) error {
	k, err := kindOf(kindName)
	if err != nil {
		return err
	}
	ri, err := indexOf(k, rec)
	if err != nil {
		return err
	}
	old, err := tx.Lookup(ctx, k.Name, ri.ID)
	if err != nil {
		return err
	}
	if insert && old != nil {
		return &PrimaryKeyError{Kind: k.Name, ID: ri.ID}
	}
	if !insert && old == nil {
		return ErrNotFound
	}
	for _, fk := range k.Foreign {
		r, ok := ri.Refs[fk.Field]
		if !ok {
			continue
		}
		target, err := tx.Lookup(ctx, r.Kind, r.ID)
		if err != nil {
			return err
		}
		if target == nil {
			return &ForeignKeyError{Kind: k.Name, Field: fk.Field, Ref: r.Kind, ID: r.ID}
		}
	}
	for _, set := range k.Unique {
		name := strings.Join(set, ",")
		v, ok := ri.Uniques[name]
		if !ok {
			continue
		}
		owner, err := tx.UniqueOwner(ctx, k.Name, name, v)
		if err != nil {
			return err
		}
		if owner != "" && owner != ri.ID {
			fields := map[string]any{}
			for _, f := range set {
				fields[f] = rec[f]
			}
			return &UniqueError{Kind: k.Name, Fields: fields}
		}
	}
	return tx.Put(ctx, k.Name, rec, ri, insert)
}

// ExecDelete deletes kind/id and cascades; a restricting reference fails.
func ExecDelete(ctx context.Context, tx Txn, kindName, id string) error {
	if _, err := kindOf(kindName); err != nil {
		return err
	}
	rec, err := tx.Lookup(ctx, kindName, id)
	if err != nil || rec == nil {
		return err
	}
	refs, err := tx.Referrers(ctx, kindName, id)
	if err != nil {
		return err
	}
	for _, r := range refs {
		if !cascades(r.Kind, r.Field) {
			return &ReferencedError{Kind: kindName, By: r.Kind}
		}
	}
	for _, r := range refs {
		if err := ExecDelete(ctx, tx, r.Kind, r.ID); err != nil {
			return err
		}
	}
	return tx.Remove(ctx, kindName, id)
}

func cascades(kind, field string) bool {
	k := entity.KindByName(kind)
	for _, fk := range k.Foreign {
		if fk.Field == field {
			return fk.Cascade
		}
	}
	return false
}

// ExecList runs a paginated query using the id-keyset offset.
func ExecList(ctx context.Context, tx Txn, kind string, q Query) (Page, error) {
	if _, err := kindOf(kind); err != nil {
		return Page{}, err
	}
	size := q.Size
	if size <= 0 {
		size = 100
	}
	after := ""
	if q.Offset != "" {
		b, err := base64.RawURLEncoding.DecodeString(q.Offset)
		if err != nil || len(b) == 0 {
			return Page{}, ErrInvalidOffset
		}
		after = string(b)
	}
	rows, err := tx.Scan(ctx, kind, q, after, size+1)
	if err != nil {
		return Page{}, err
	}
	p := Page{Data: rows}
	if len(rows) > size {
		p.Data = rows[:size]
		last, _ := rows[size-1]["id"].(string)
		p.Offset = base64.RawURLEncoding.EncodeToString([]byte(last))
	}
	return p, nil
}

// ExecReplace loads recs into an emptied store in dependency order.
func ExecReplace(ctx context.Context, tx Txn, recs entity.Records) error {
	if err := tx.Truncate(ctx); err != nil {
		return err
	}
	for _, k := range entity.Kinds {
		for _, rec := range recs[k.Name] {
			if err := ExecWrite(ctx, tx, k.Name, rec, true); err != nil {
				return fmt.Errorf("%s %v: %w", k.Singular, rec["id"], err)
			}
		}
	}
	return nil
}

// TagsMatch applies a Query's tag filter to a record's tags.
func TagsMatch(q Query, tags []string) bool {
	if len(q.Tags) == 0 {
		return true
	}
	has := map[string]bool{}
	for _, t := range tags {
		has[t] = true
	}
	for _, t := range q.Tags {
		if has[t] && q.TagsOr {
			return true
		}
		if !has[t] && !q.TagsOr {
			return false
		}
	}
	return !q.TagsOr
}
