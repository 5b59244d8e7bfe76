package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

// txn is what a backend offers the shared engine inside one transaction.
type txn interface {
	get(ctx context.Context, kind, id string) (map[string]any, error) // nil when absent
	uniqueOwner(ctx context.Context, kind, name, value string) (string, error)
	put(ctx context.Context, kind string, rec map[string]any, row rowIndex, insert bool) error
	del(ctx context.Context, kind, id string) error
	referrers(ctx context.Context, refKind, refID string) ([]ref, error)
	list(ctx context.Context, kind string, q Query, after string, limit int) ([]map[string]any, error)
	truncate(ctx context.Context) error
}

// ref is one foreign-key edge: kind/id's field points at the referenced id.
type ref struct {
	kind, id, field string
}

// rowIndex is the derived index data stored with a record.
type rowIndex struct {
	id        string
	createdAt float64
	tags      []string
	uniques   map[string]string // unique set name ("upstream,target") → value
	refs      map[string]fkRef  // field → referenced record
}

type fkRef struct{ kind, id string }

func kindOf(name string) (*entity.Kind, error) {
	k := entity.KindByName(name)
	if k == nil {
		return nil, fmt.Errorf("unknown entity kind %q", name)
	}
	return k, nil
}

func indexOf(k *entity.Kind, rec map[string]any) (rowIndex, error) {
	id, _ := rec["id"].(string)
	if id == "" {
		return rowIndex{}, fmt.Errorf("%s record without id", k.Name)
	}
	ri := rowIndex{id: id, uniques: map[string]string{}, refs: map[string]fkRef{}}
	ri.createdAt, _ = rec["created_at"].(float64)
	if tags, ok := rec["tags"].([]any); ok {
		for _, t := range tags {
			if s, ok := t.(string); ok {
				ri.tags = append(ri.tags, s)
			}
		}
	}
	for _, set := range k.Unique {
		if v, ok := entity.UniqueValue(rec, set); ok {
			ri.uniques[strings.Join(set, ",")] = v
		}
	}
	for _, fk := range k.Foreign {
		if fid := entity.FKID(rec, fk.Field); fid != "" {
			ri.refs[fk.Field] = fkRef{kind: fk.Ref, id: fid}
		}
	}
	return ri, nil
}

// write checks keys and stores rec (insert or replace).
func write(ctx context.Context, tx txn, kindName string, rec map[string]any, insert bool) error {
	k, err := kindOf(kindName)
	if err != nil {
		return err
	}
	ri, err := indexOf(k, rec)
	if err != nil {
		return err
	}
	old, err := tx.get(ctx, k.Name, ri.id)
	if err != nil {
		return err
	}
	if insert && old != nil {
		return &PrimaryKeyError{Kind: k.Name, ID: ri.id}
	}
	if !insert && old == nil {
		return ErrNotFound
	}
	for _, fk := range k.Foreign {
		r, ok := ri.refs[fk.Field]
		if !ok {
			continue
		}
		target, err := tx.get(ctx, r.kind, r.id)
		if err != nil {
			return err
		}
		if target == nil {
			return &ForeignKeyError{Kind: k.Name, Field: fk.Field, Ref: r.kind, ID: r.id}
		}
	}
	for _, set := range k.Unique {
		name := strings.Join(set, ",")
		v, ok := ri.uniques[name]
		if !ok {
			continue
		}
		owner, err := tx.uniqueOwner(ctx, k.Name, name, v)
		if err != nil {
			return err
		}
		if owner != "" && owner != ri.id {
			fields := map[string]any{}
			for _, f := range set {
				fields[f] = rec[f]
			}
			return &UniqueError{Kind: k.Name, Fields: fields}
		}
	}
	return tx.put(ctx, k.Name, rec, ri, insert)
}

// remove deletes kind/id and cascades; a restricting reference fails.
func remove(ctx context.Context, tx txn, kindName, id string) error {
	if _, err := kindOf(kindName); err != nil {
		return err
	}
	rec, err := tx.get(ctx, kindName, id)
	if err != nil || rec == nil {
		return err
	}
	refs, err := tx.referrers(ctx, kindName, id)
	if err != nil {
		return err
	}
	for _, r := range refs {
		if !cascades(r.kind, r.field) {
			return &ReferencedError{Kind: kindName, By: r.kind}
		}
	}
	for _, r := range refs {
		if err := remove(ctx, tx, r.kind, r.id); err != nil {
			return err
		}
	}
	return tx.del(ctx, kindName, id)
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

// listPage runs a paginated query using the id-keyset offset.
func listPage(ctx context.Context, tx txn, kind string, q Query) (Page, error) {
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
	rows, err := tx.list(ctx, kind, q, after, size+1)
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

// replaceAll loads recs into an emptied store in dependency order.
func replaceAll(ctx context.Context, tx txn, recs entity.Records) error {
	if err := tx.truncate(ctx); err != nil {
		return err
	}
	for _, k := range entity.Kinds {
		for _, rec := range recs[k.Name] {
			if err := write(ctx, tx, k.Name, rec, true); err != nil {
				return fmt.Errorf("%s %v: %w", k.Singular, rec["id"], err)
			}
		}
	}
	return nil
}

// tagsMatch applies a Query's tag filter to a record's tags.
func tagsMatch(q Query, tags []string) bool {
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
