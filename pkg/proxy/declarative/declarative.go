// Package declarative reads and writes Kong's DB-less configuration format
// (`_format_version: "3.0"`, YAML or JSON): nested entities (routes and
// plugins under services, credentials under consumers, targets under
// upstreams, SNIs under certificates), foreign keys given by name or id, and
// deterministic ids for entities that carry none, so that loading the same
// file twice yields the same ids.
package declarative

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/schema"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// FormatVersions are the accepted `_format_version` values.
var FormatVersions = []string{"1.1", "2.1", "3.0"}

// EntityError is one invalid entity, shaped like an item of Kong's
// `flattened_errors`.
type EntityError struct {
	EntityType string         `json:"entity_type"`
	EntityName *string        `json:"entity_name,omitempty"`
	EntityID   *string        `json:"entity_id,omitempty"`
	EntityTags []string       `json:"entity_tags,omitempty"`
	Entity     map[string]any `json:"entity"`
	Errors     []FieldError   `json:"errors"`
	// Path locates the entity in the file, e.g. "services[0].routes[1]".
	Path string `json:"-"`
	// Fields is the entity's schema errors in Kong's "fields" shape.
	Fields schema.Errors `json:"-"`
}

// FieldError is one message of an EntityError.
type FieldError struct {
	Type    string `json:"type"` // "entity" or "field"
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// Error is an invalid declarative configuration (Kong error code 14).
type Error struct {
	Message  string
	Entities []EntityError
}

func (e *Error) Error() string {
	if len(e.Entities) == 0 {
		return "declarative config is invalid: " + e.Message
	}
	parts := make([]string, 0, len(e.Entities))
	for _, ee := range e.Entities {
		parts = append(parts, ee.Path+": "+ee.Fields.Message())
	}
	return "declarative config is invalid: " + strings.Join(parts, "; ")
}

// Fields renders the errors as Kong's "fields" object, keyed by entity path.
func (e *Error) Fields() map[string]any {
	out := map[string]any{}
	for _, ee := range e.Entities {
		out[ee.Path] = ee.Fields
	}
	if e.Message != "" && len(e.Entities) == 0 {
		out["@entity"] = []string{e.Message}
	}
	return out
}

// Parse decodes a YAML or JSON declarative document and returns every
// entity validated, with defaults, ids and timestamps, ready for
// store.Replace. now stamps created_at/updated_at.
func Parse(data []byte, now time.Time) (entity.Records, error) {
	doc, err := decode(data)
	if err != nil {
		return nil, &Error{Message: err.Error()}
	}
	return ParseTable(doc, now)
}

// ParseTable is Parse for a document that is already decoded from JSON,
// such as the config_table of a hybrid-mode reconfigure frame.
func ParseTable(doc map[string]any, now time.Time) (entity.Records, error) {
	p := &parser{now: now, recs: entity.Records{}, names: map[string]map[string]string{}}
	return p.run(doc)
}

func decode(data []byte) (map[string]any, error) {
	var raw any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("failed parsing declarative configuration: %w", err)
	}
	v, err := normalize(raw)
	if err != nil {
		return nil, err
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("expected an object at the top level of the declarative configuration")
	}
	return doc, nil
}

// normalize turns YAML-decoded values into JSON-shaped ones.
func normalize(v any) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			if k == "_comment" || k == "_ignore" {
				continue
			}
			n, err := normalize(x)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			ks := fmt.Sprint(k)
			if ks == "_comment" || ks == "_ignore" {
				continue
			}
			n, err := normalize(x)
			if err != nil {
				return nil, err
			}
			out[ks] = n
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			n, err := normalize(x)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case int:
		return float64(t), nil
	case int64:
		return float64(t), nil
	case uint64:
		return float64(t), nil
	case float32:
		return float64(t), nil
	case time.Time:
		return t.Format(time.RFC3339), nil
	}
	return v, nil
}

type parser struct {
	now       time.Time
	transform bool
	recs      entity.Records
	errs      []EntityError
	// names maps kind → endpoint key value → id, for references by name.
	names map[string]map[string]string
}

// nested lists the child collections Kong accepts inside an entity.
var nested = map[string][]struct{ key, kind, field string }{
	"services": {{"routes", "routes", "service"}, {"plugins", "plugins", "service"}},
	"routes":   {{"plugins", "plugins", "route"}},
	"consumers": {{"plugins", "plugins", "consumer"}, {"keyauth_credentials", "keyauth_credentials", "consumer"}, {"basicauth_credentials", "basicauth_credentials", "consumer"},
		{"jwt_secrets", "jwt_secrets", "consumer"}, {"hmacauth_credentials", "hmacauth_credentials", "consumer"},
		{"oauth2_credentials", "oauth2_credentials", "consumer"}, {"acls", "acls", "consumer"}},
	"upstreams":    {{"targets", "targets", "upstream"}},
	"certificates": {{"snis", "snis", "certificate"}},
}

func (p *parser) run(doc map[string]any) (entity.Records, error) {
	fv, _ := doc["_format_version"].(string)
	if fv == "" {
		return nil, &Error{Message: "expected a string for '_format_version'; add `_format_version: \"3.0\"` at the top of the file"}
	}
	known := false
	for _, v := range FormatVersions {
		known = known || v == fv
	}
	if !known {
		return nil, &Error{Message: fmt.Sprintf("_format_version: expected one of: %s", strings.Join(FormatVersions, ", "))}
	}
	p.transform = true
	if t, ok := doc["_transform"].(bool); ok {
		p.transform = t
	}
	var unknown []string
	for k := range doc {
		if strings.HasPrefix(k, "_") {
			continue
		}
		if entity.KindByName(k) == nil {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, &Error{Message: fmt.Sprintf("unknown entity collection(s): %s", strings.Join(unknown, ", "))}
	}
	// Kinds are in dependency order, so every entity a top-level reference
	// can name (by name or username) has been seen when it is needed.
	for _, k := range entity.Kinds {
		list, ok := doc[k.Name]
		if !ok || list == nil {
			continue
		}
		items, ok := list.([]any)
		if !ok {
			return nil, &Error{Message: fmt.Sprintf("%s: expected an array", k.Name)}
		}
		for i, item := range items {
			p.entity(k, item, fmt.Sprintf("%s[%d]", k.Name, i), nil)
		}
	}
	if len(p.errs) > 0 {
		return nil, &Error{Entities: p.errs}
	}
	return p.recs, nil
}

type parentRef struct {
	field, id string
}

func (p *parser) fail(k *entity.Kind, path string, rec map[string]any, errs schema.Errors) {
	ee := EntityError{EntityType: k.Singular, Entity: rec, Path: path, Fields: errs}
	if id, ok := rec["id"].(string); ok {
		ee.EntityID = &id
	}
	if ep := k.Schema.EndpointKey; ep != "" {
		if n, ok := rec[ep].(string); ok {
			ee.EntityName = &n
		}
	}
	for _, t := range rec["tags"].([]any) {
		if s, ok := t.(string); ok {
			ee.EntityTags = append(ee.EntityTags, s)
		}
	}
	keys := make([]string, 0, len(errs))
	for f := range errs {
		keys = append(keys, f)
	}
	sort.Strings(keys)
	for _, f := range keys {
		if f == schema.EntityKey {
			for _, m := range errs[f].([]string) {
				ee.Errors = append(ee.Errors, FieldError{Type: "entity", Message: m})
			}
			continue
		}
		for _, m := range (schema.Errors{f: errs[f]}).Flatten() {
			ee.Errors = append(ee.Errors, FieldError{Type: "field", Field: f, Message: strings.TrimPrefix(m, f+": ")})
		}
	}
	p.errs = append(p.errs, ee)
}

func (p *parser) entity(k *entity.Kind, item any, path string, parent *parentRef) {
	in, ok := item.(map[string]any)
	if !ok {
		if s, isStr := item.(string); isStr && k.Name == "snis" {
			in = map[string]any{"name": s}
		} else {
			p.fail(k, path, map[string]any{"tags": []any{}}, schema.Errors{schema.EntityKey: []string{"expected a record"}})
			return
		}
	}
	rec := make(map[string]any, len(in))
	children := map[string][]any{}
	childSpecs := nested[k.Name]
	for key, v := range in {
		isChild := false
		for _, c := range childSpecs {
			if c.key == key {
				list, _ := v.([]any)
				children[key] = list
				isChild = true
			}
		}
		if !isChild {
			rec[key] = v
		}
	}
	if k.Name == "certificates" {
		// Nested snis are entities here, not the certificate's shorthand.
		if _, ok := children["snis"]; ok {
			delete(rec, "snis")
		}
	}
	if parent != nil {
		rec[parent.field] = map[string]any{"id": parent.id}
	}
	for _, fk := range k.Foreign {
		name := ""
		switch v := rec[fk.Field].(type) {
		case string:
			if schema.IsUUID(v) {
				rec[fk.Field] = map[string]any{"id": v}
				continue
			}
			name = v
		case map[string]any:
			if v["id"] != nil {
				continue
			}
			for _, key := range []string{"name", "username"} {
				if s, ok := v[key].(string); ok {
					name = s
				}
			}
		}
		if name == "" {
			continue
		}
		id, ok := p.names[fk.Ref][name]
		if !ok {
			p.fail(k, path, withTags(rec), schema.Errors{fk.Field: fmt.Sprintf("could not find %s '%s'", strings.TrimSuffix(fk.Ref, "s"), name)})
			return
		}
		rec[fk.Field] = map[string]any{"id": id}
	}
	tr, terrs := entity.Transform(k, rec)
	if terrs != nil {
		p.fail(k, path, withTags(rec), terrs)
		return
	}
	rec = tr
	if k.Name == "basicauth_credentials" && p.transform {
		if pw, ok := rec["password"].(string); ok {
			rec["password"] = entity.HashBasicAuthPassword(pw, entity.FKID(rec, "consumer"))
		}
	}
	if k.Name == "targets" {
		if t, ok := rec["target"].(string); ok {
			rec["target"] = entity.NormalizeTarget(t)
		}
	}
	if rec["id"] == nil {
		rec["id"] = deterministicID(k, in, rec, parent)
	}
	ts := float64(p.now.Unix())
	if k.Name == "targets" {
		ts = float64(p.now.UnixMilli()) / 1000
	}
	if rec["created_at"] == nil {
		rec["created_at"] = ts
	}
	if f := k.Schema.Field("updated_at"); f != nil && rec["updated_at"] == nil {
		rec["updated_at"] = ts
	}
	out, errs := entity.Validate(k, rec)
	if errs != nil {
		p.fail(k, path, withTags(rec), errs)
		return
	}
	id := out["id"].(string)
	if ep := k.Schema.EndpointKey; ep != "" {
		if v, ok := out[ep].(string); ok {
			if p.names[k.Name] == nil {
				p.names[k.Name] = map[string]string{}
			}
			p.names[k.Name][v] = id
		}
	}
	p.recs[k.Name] = append(p.recs[k.Name], out)
	for _, c := range childSpecs {
		ck := entity.KindByName(c.kind)
		for i, child := range children[c.key] {
			p.entity(ck, child, fmt.Sprintf("%s.%s[%d]", path, c.key, i), &parentRef{field: c.field, id: id})
		}
	}
}

func withTags(rec map[string]any) map[string]any {
	if _, ok := rec["tags"].([]any); !ok {
		rec = copyRec(rec)
		rec["tags"] = []any{}
	}
	return rec
}

func copyRec(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// cacheKeys are the fields of Kong's cache_key for kinds whose ids derive
// from it.
var cacheKeys = map[string][]string{
	"plugins": {"name", "route", "service", "consumer"},
	"acls":    {"consumer", "group"},
}

// deterministicID derives an id the way Kong's declarative loader does:
// uuid5(uuid5(namespace, kind), key) where key is the endpoint key as
// written in the file (names, usernames, keys; a target's address plus its
// upstream's id, the endpoint key not being unique), else the cache key
// ("plugins:<name>:<route>:<service>:<consumer>" with the parent's id for the
// nesting field and "" for absent ones). Kong gives entities without either
// (certificates, unnamed services and routes) random ids; kiln uses a digest
// of the processed entity instead, so that reloading a file keeps every id.
func deterministicID(k *entity.Kind, raw, rec map[string]any, parent *parentRef) string {
	if ep := k.Schema.EndpointKey; ep != "" {
		if v, ok := raw[ep].(string); ok && v != "" {
			key := v
			if f := k.Schema.Field(ep); f != nil && !f.Unique {
				for _, fk := range k.Foreign {
					if !fk.Cascade {
						continue
					}
					switch {
					case parent != nil && parent.field == fk.Field:
						key += ":" + parent.id
					default:
						key += ":" + refText(raw[fk.Field])
					}
				}
			}
			return entity.DeterministicID(k.Name, key)
		}
	}
	if fields, ok := cacheKeys[k.Name]; ok {
		parts := []string{k.Name}
		complete := true
		for _, f := range fields {
			switch v := raw[f].(type) {
			case string:
				parts = append(parts, v)
			case nil:
				switch {
				case parent != nil && parent.field == f:
					parts = append(parts, parent.id)
				case k.Schema.Field(f) != nil && k.Schema.Field(f).Required:
					complete = false
				default:
					parts = append(parts, "")
				}
			}
		}
		if complete {
			return entity.DeterministicID(k.Name, strings.Join(parts, ":"))
		}
	}
	if k.Name == "consumers" {
		if v, ok := rec["custom_id"].(string); ok {
			return entity.DeterministicID(k.Name, "custom_id:"+v)
		}
	}
	b, _ := json.Marshal(rec)
	sum := sha256.Sum256(b)
	return entity.DeterministicID(k.Name, hex.EncodeToString(sum[:]))
}

func refText(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case map[string]any:
		return fmt.Sprint(t["id"])
	}
	return ""
}

// SourceHash is Kong's configuration hash of a raw declarative document
// (md5 hex), used by /config?check_hash=1 and /status configuration_hash.
func SourceHash(doc []byte) string {
	sum := md5.Sum(doc)
	return hex.EncodeToString(sum[:])
}

// sourceTracker is implemented by stores that remember which document
// their contents came from (store.Memory).
type sourceTracker interface {
	ReplaceFrom(ctx context.Context, recs entity.Records, sourceHash string) error
}

// Load parses doc and atomically replaces st's contents with it (DB-less
// start-up and POST /config). Store key errors (a duplicate name, a
// dangling reference) are returned as *Error.
func Load(ctx context.Context, st store.Store, doc []byte, now time.Time) (entity.Records, error) {
	recs, err := Parse(doc, now)
	if err != nil {
		return nil, err
	}
	if t, ok := st.(sourceTracker); ok {
		err = t.ReplaceFrom(ctx, recs, SourceHash(doc))
	} else {
		err = st.Replace(ctx, recs)
	}
	if err != nil {
		var ue *store.UniqueError
		var fke *store.ForeignKeyError
		var pke *store.PrimaryKeyError
		if errors.As(err, &ue) || errors.As(err, &fke) || errors.As(err, &pke) {
			return nil, &Error{Message: err.Error()}
		}
		return nil, err
	}
	return recs, nil
}

// Export renders a configuration as a `_format_version: "3.0"` document
// with `_transform: false` (values are already transformed), one flat list
// per collection and foreign keys as id strings, in YAML.
func Export(cfg *entity.Config) ([]byte, error) {
	doc := map[string]any{"_format_version": "3.0", "_transform": false}
	for _, k := range entity.Kinds {
		list, err := flatRecords(cfg, k)
		if err != nil {
			return nil, err
		}
		if len(list) == 0 {
			continue
		}
		for _, rec := range list {
			for key, v := range rec {
				if v == nil {
					delete(rec, key)
				}
			}
		}
		doc[k.Name] = list
	}
	return yaml.Marshal(doc)
}

// Table renders a configuration as the config_table of a hybrid-mode
// reconfigure frame, as Kong's declarative export_config does for its data
// planes: `_format_version` "3.0", `_transform` false, one flat array per
// non-empty collection, foreign keys as id strings and nulls kept. Disabled
// services are left out together with the routes on them and every entity
// referencing either; disabled plugins are left out too. Values are
// JSON-shaped ([]any, map[string]any, float64...), ready for confighash.
func Table(cfg *entity.Config) (map[string]any, error) {
	out := map[string]any{"_format_version": "3.0", "_transform": false}
	disabled := map[string]bool{}
	for _, k := range entity.Kinds {
		list, err := flatRecords(cfg, k)
		if err != nil {
			return nil, err
		}
		kept := make([]any, 0, len(list))
	records:
		for _, rec := range list {
			id, _ := rec["id"].(string)
			if en, ok := rec["enabled"].(bool); ok && !en {
				switch k.Name {
				case "services":
					disabled[id] = true
					continue
				case "plugins":
					continue
				}
			}
			for _, fk := range k.Foreign {
				if ref, _ := rec[fk.Field].(string); ref != "" && disabled[ref] {
					if k.Name == "routes" {
						disabled[id] = true
					}
					continue records
				}
			}
			kept = append(kept, rec)
		}
		if len(kept) > 0 {
			out[k.Name] = kept
		}
	}
	return out, nil
}

// flatRecords returns the records of one kind with foreign keys flattened
// to id strings (and a certificate's snis shorthand dropped: the snis are
// exported as entities of their own).
func flatRecords(cfg *entity.Config, k *entity.Kind) ([]map[string]any, error) {
	list, err := recordsOf(cfg, k.Name)
	if err != nil {
		return nil, err
	}
	for _, rec := range list {
		for _, fk := range k.Foreign {
			if id := entity.FKID(rec, fk.Field); id != "" {
				rec[fk.Field] = id
			}
		}
		if k.Name == "certificates" {
			delete(rec, "snis")
		}
	}
	return list, nil
}

func recordsOf(cfg *entity.Config, kind string) ([]map[string]any, error) {
	var src any
	switch kind {
	case "services":
		src = cfg.Services
	case "routes":
		src = cfg.Routes
	case "consumers":
		src = cfg.Consumers
	case "plugins":
		src = cfg.Plugins
	case "upstreams":
		src = cfg.Upstreams
	case "targets":
		src = cfg.Targets
	case "certificates":
		src = cfg.Certificates
	case "snis":
		src = cfg.SNIs
	case "ca_certificates":
		src = cfg.CACertificates
	case "keyauth_credentials":
		src = cfg.KeyAuthCredentials
	case "basicauth_credentials":
		src = cfg.BasicAuthCredentials
	case "jwt_secrets":
		src = cfg.JWTSecrets
	case "hmacauth_credentials":
		src = cfg.HMACAuthCredentials
	case "oauth2_credentials":
		src = cfg.OAuth2Credentials
	case "acls":
		src = cfg.ACLGroups
	case "key_sets":
		src = cfg.KeySets
	case "keys":
		src = cfg.Keys
	}
	b, err := json.Marshal(src)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}
