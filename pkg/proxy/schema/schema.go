// Package schema is kiln's declarative field-schema engine for gateway
// entities and plugin configurations, modelled on Kong's schema library.
//
// One Schema value describes an entity (or a plugin's config record) once, and
// every consumer uses that single definition: the Admin API validates request
// bodies and serves it on /schemas/..., the declarative loader fills defaults,
// and the data plane reads the processed, default-filled values. Validation
// errors are returned in Kong's shape: a map from field name to message, with
// nested maps for records and an "@entity" list for entity-level checks.
package schema

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Type is the kind of value a field holds (Kong's schema type names).
type Type string

// Field types.
const (
	String  Type = "string"
	Integer Type = "integer"
	Number  Type = "number"
	Boolean Type = "boolean"
	Array   Type = "array"
	Set     Type = "set"
	Map     Type = "map"
	Record  Type = "record"
	Foreign Type = "foreign"
)

// Range is an inclusive numeric interval ("between" in Kong schemas).
type Range struct{ Min, Max float64 }

// Field describes one field of an entity or record.
type Field struct {
	Name     string
	Type     Type
	Required bool
	// Default is the JSON-shaped value (string, float64, bool, []any,
	// map[string]any) filled in when the field is absent. Nil means null.
	Default any
	// Nullable false on a record makes an absent record get its sub-defaults.
	Nullable bool
	OneOf    []any
	Between  *Range
	// Gt is an exclusive lower bound.
	Gt         *float64
	LenMin     int
	StartsWith string
	UUID       bool
	Unique     bool
	// Auto marks values the store generates (ids, timestamps).
	Auto bool
	// Check is an extra validator for a non-null value; it returns "" or a
	// message such as "must be a valid CIDR".
	Check func(v any) string
	// Elements describes array/set items; Keys/Values map entries; Fields
	// record members; Reference the entity a foreign key points to.
	Elements  *Field
	Keys      *Field
	Values    *Field
	Fields    []Field
	Reference string
	// EntityChecks run on a record value once its fields are valid;
	// FieldChecks too, for rules Kong reports under one field.
	EntityChecks []Check
	FieldChecks  []FieldCheck
	// DefaultFor, when set, gives the default from the record's other
	// input fields (a Kong subschema's default), instead of Default.
	DefaultFor func(input map[string]any) any
	// Shorthands are deprecated input aliases of a record's nested fields
	// (Kong's shorthand_fields), e.g. redis_host → redis.host.
	Shorthands []Shorthand
}

// Shorthand is a deprecated record input that sets the field at Path.
type Shorthand struct {
	Name    string
	Type    Type
	Path    []string
	Message string
}

// applyShorthands moves shorthand inputs to their paths; a value given at
// the new path wins over its deprecated alias.
func applyShorthands(f *Field, input map[string]any) map[string]any {
	if len(f.Shorthands) == 0 {
		return input
	}
	var out map[string]any
	for _, sh := range f.Shorthands {
		v, ok := input[sh.Name]
		if !ok {
			continue
		}
		if out == nil {
			out = DeepCopy(input).(map[string]any)
		}
		delete(out, sh.Name)
		if v == nil {
			continue
		}
		cur := out
		for _, p := range sh.Path[:len(sh.Path)-1] {
			next, ok := cur[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[p] = next
			}
			cur = next
		}
		last := sh.Path[len(sh.Path)-1]
		if _, set := cur[last]; !set {
			cur[last] = v
		}
	}
	if out == nil {
		return input
	}
	return out
}

// Check validates a whole record and returns entity-level messages.
type Check func(rec map[string]any) []string

// FieldCheck validates a whole record and returns a violation to report
// under one field (field is "" when there is none).
type FieldCheck func(rec map[string]any) (field, msg string)

// Schema is an entity's schema.
type Schema struct {
	Name        string // table name, e.g. "services"
	EndpointKey string // secondary key usable in URLs, e.g. "name"
	Fields      []Field
	Checks      []Check
	FieldChecks []FieldCheck
}

// Errors is Kong's "fields" object: field → message, nested Errors for
// records, []any for array elements, and "@entity" → []string.
type Errors map[string]any

// EntityKey is the key entity-level messages are stored under.
const EntityKey = "@entity"

// Add records an entity-level message.
func (e Errors) Add(msg string) {
	list, _ := e[EntityKey].([]string)
	e[EntityKey] = append(list, msg)
}

// Flatten lists every violation as "path: message", sorted, for Kong's
// "schema violation (...)" message.
func (e Errors) Flatten() []string {
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch t := v.(type) {
		case Errors:
			for k, sub := range t {
				p := k
				if prefix != "" && k != EntityKey {
					p = prefix + "." + k
				} else if prefix != "" {
					p = prefix
				}
				walk(p, sub)
			}
		case []string:
			for _, s := range t {
				if prefix == EntityKey {
					out = append(out, s)
				} else {
					out = append(out, prefix+": "+s)
				}
			}
		case []any:
			// Kong numbers array elements from 1: "paths.2: invalid regex".
			for i, s := range t {
				if s != nil {
					walk(prefix+"."+strconv.Itoa(i+1), s)
				}
			}
		case string:
			out = append(out, prefix+": "+t)
		}
	}
	walk("", e)
	sort.Strings(out)
	return out
}

// Message renders Kong's summary, e.g. "2 schema violations (a: x; b: y)".
func (e Errors) Message() string {
	flat := e.Flatten()
	switch len(flat) {
	case 0:
		return "schema violation"
	case 1:
		return "schema violation (" + flat[0] + ")"
	default:
		return fmt.Sprintf("%d schema violations (%s)", len(flat), strings.Join(flat, "; "))
	}
}

// Field returns the named top-level field or nil.
func (s *Schema) Field(name string) *Field {
	return findField(s.Fields, name)
}

func findField(fields []Field, name string) *Field {
	for i := range fields {
		if fields[i].Name == name {
			return &fields[i]
		}
	}
	return nil
}

// Options change how Process treats absent fields.
type Options struct {
	// Partial validates only the fields present (PATCH before merging); no
	// defaults, no required checks, no entity checks.
	Partial bool
}

// Process validates input against the schema and returns a new map with
// defaults filled in for absent fields. input is not modified.
func (s *Schema) Process(input map[string]any, opt Options) (map[string]any, Errors) {
	rec := Field{Name: s.Name, Type: Record, Fields: s.Fields, EntityChecks: s.Checks, FieldChecks: s.FieldChecks}
	out, errs := processRecord(&rec, input, opt)
	if len(errs) == 0 {
		return out, nil
	}
	return out, errs
}

func processRecord(f *Field, input map[string]any, opt Options) (map[string]any, Errors) {
	input = applyShorthands(f, input)
	errs := Errors{}
	out := make(map[string]any, len(f.Fields))
	for k := range input {
		if findField(f.Fields, k) == nil {
			errs[k] = "unknown field"
		}
	}
	for i := range f.Fields {
		sub := &f.Fields[i]
		v, present := input[sub.Name]
		if !present {
			if opt.Partial {
				continue
			}
			if sub.DefaultFor != nil {
				v = sub.DefaultFor(input)
			} else {
				v = defaultValue(sub)
			}
		}
		nv, ferr := processValue(sub, v, opt)
		if ferr != nil {
			errs[sub.Name] = ferr
			continue
		}
		out[sub.Name] = nv
	}
	if len(errs) == 0 && !opt.Partial {
		for _, c := range f.EntityChecks {
			for _, m := range c(out) {
				errs.Add(m)
			}
		}
		for _, c := range f.FieldChecks {
			if field, m := c(out); field != "" {
				errs[field] = m
			}
		}
	}
	return out, errs
}

func defaultValue(f *Field) any {
	if f.Default != nil {
		return DeepCopy(f.Default)
	}
	if f.Type == Record && !f.Nullable {
		return map[string]any{}
	}
	return nil
}

// processValue checks one value; the error is a string, Errors or []any.
func processValue(f *Field, v any, opt Options) (any, any) {
	if v == nil {
		if f.Required && !f.Auto {
			return nil, "required field missing"
		}
		if f.Type == Record && !f.Nullable && !opt.Partial {
			v = map[string]any{}
		} else {
			return nil, nil
		}
	}
	switch f.Type {
	case String:
		s, ok := v.(string)
		if !ok {
			return nil, "expected a string"
		}
		if f.UUID && !IsUUID(s) {
			return nil, "expected a valid UUID"
		}
		if len(s) < max(f.LenMin, 0) {
			return nil, fmt.Sprintf("length must be at least %d", f.LenMin)
		}
		if f.StartsWith != "" && !strings.HasPrefix(s, f.StartsWith) {
			return nil, fmt.Sprintf("should start with: %s", f.StartsWith)
		}
	case Integer, Number:
		n, ok := toFloat(v)
		if !ok {
			if f.Type == Integer {
				return nil, "expected an integer"
			}
			return nil, "expected a number"
		}
		if f.Type == Integer && n != math.Trunc(n) {
			return nil, "expected an integer"
		}
		if f.Between != nil && (n < f.Between.Min || n > f.Between.Max) {
			return nil, fmt.Sprintf("value should be between %s and %s", fmtNum(f.Between.Min), fmtNum(f.Between.Max))
		}
		if f.Gt != nil && n <= *f.Gt {
			return nil, fmt.Sprintf("value must be greater than %s", fmtNum(*f.Gt))
		}
		v = n
	case Boolean:
		if _, ok := v.(bool); !ok {
			return nil, "expected a boolean"
		}
	case Array, Set:
		list, ok := v.([]any)
		if !ok {
			// Kong accepts an empty object as an empty array (Lua tables).
			if m, isMap := v.(map[string]any); isMap && len(m) == 0 {
				list = []any{}
			} else {
				return nil, "expected " + map[Type]string{Array: "an array", Set: "a set"}[f.Type]
			}
		}
		out := make([]any, 0, len(list))
		var elemErrs []any
		bad := false
		for _, item := range list {
			nv, e := processValue(f.Elements, item, Options{})
			if e != nil {
				bad = true
			}
			elemErrs = append(elemErrs, e)
			if f.Type == Set && containsValue(out, nv) {
				continue
			}
			out = append(out, nv)
		}
		if bad {
			return nil, elemErrs
		}
		v = out
	case Map:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "expected a map"
		}
		out := make(map[string]any, len(m))
		errs := Errors{}
		for k, item := range m {
			if f.Keys != nil {
				if _, e := processValue(f.Keys, k, Options{}); e != nil {
					errs[k] = e
					continue
				}
			}
			nv, e := processValue(f.Values, item, Options{})
			if e != nil {
				errs[k] = e
				continue
			}
			out[k] = nv
		}
		if len(errs) > 0 {
			return nil, errs
		}
		v = out
	case Record:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "expected a record"
		}
		out, errs := processRecord(f, m, opt)
		if len(errs) > 0 {
			return nil, errs
		}
		v = out
	case Foreign:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "expected a record"
		}
		id, _ := m["id"].(string)
		if !IsUUID(id) {
			return nil, Errors{"id": "expected a valid UUID"}
		}
		v = map[string]any{"id": id}
	}
	if len(f.OneOf) > 0 && !containsValue(f.OneOf, v) {
		parts := make([]string, len(f.OneOf))
		for i, o := range f.OneOf {
			parts[i] = fmt.Sprint(fmtAny(o))
		}
		return nil, "expected one of: " + strings.Join(parts, ", ")
	}
	if f.Check != nil {
		if msg := f.Check(v); msg != "" {
			return nil, msg
		}
	}
	return v, nil
}

func fmtAny(v any) string {
	if n, ok := toFloat(v); ok {
		return fmtNum(n)
	}
	return fmt.Sprint(v)
}

func fmtNum(n float64) string { return strconv.FormatFloat(n, 'f', -1, 64) }

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func containsValue(list []any, v any) bool {
	for _, o := range list {
		if equalJSON(o, v) {
			return true
		}
	}
	return false
}

func equalJSON(a, b any) bool {
	if fa, ok := toFloat(a); ok {
		fb, ok := toFloat(b)
		return ok && fa == fb
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// DeepCopy copies a JSON-shaped value.
func DeepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = DeepCopy(x)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, x := range t {
			l[i] = DeepCopy(x)
		}
		return l
	case []string:
		l := make([]any, len(t))
		for i, x := range t {
			l[i] = x
		}
		return l
	case []int:
		l := make([]any, len(t))
		for i, x := range t {
			l[i] = float64(x)
		}
		return l
	case int:
		return float64(t)
	}
	return v
}

// IsUUID reports whether s is a canonical textual UUID.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// Coerce converts string values (from form bodies or query strings) to the
// types the schema expects, the way Kong's Admin API does for
// application/x-www-form-urlencoded and multipart bodies. Values that cannot
// be converted are left alone so that Process reports them.
func (s *Schema) Coerce(input map[string]any) map[string]any {
	return coerceRecord(s.Fields, input)
}

func coerceRecord(fields []Field, input map[string]any) map[string]any {
	out := make(map[string]any, len(input))
	for k, v := range input {
		f := findField(fields, k)
		if f == nil {
			out[k] = v
			continue
		}
		out[k] = coerceValue(f, v)
	}
	return out
}

func coerceValue(f *Field, v any) any {
	switch f.Type {
	case Integer, Number:
		if s, ok := v.(string); ok {
			if n, err := strconv.ParseFloat(s, 64); err == nil {
				return n
			}
		}
	case Boolean:
		if s, ok := v.(string); ok {
			switch s {
			case "true":
				return true
			case "false":
				return false
			}
		}
	case Array, Set:
		switch t := v.(type) {
		case string:
			if t == "" {
				return []any{}
			}
			return []any{coerceValue(f.Elements, t)}
		case []any:
			out := make([]any, len(t))
			for i, x := range t {
				out[i] = coerceValue(f.Elements, x)
			}
			return out
		case map[string]any:
			// paths[1]=/a&paths[2]=/b arrive as an index map.
			keys := make([]string, 0, len(t))
			for k := range t {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool {
				a, _ := strconv.Atoi(keys[i])
				b, _ := strconv.Atoi(keys[j])
				return a < b
			})
			out := make([]any, 0, len(t))
			for _, k := range keys {
				out = append(out, coerceValue(f.Elements, t[k]))
			}
			return out
		}
	case Record:
		if m, ok := v.(map[string]any); ok {
			return coerceRecord(f.Fields, m)
		}
	case Map:
		if m, ok := v.(map[string]any); ok && f.Values != nil {
			out := make(map[string]any, len(m))
			for k, x := range m {
				out[k] = coerceValue(f.Values, x)
			}
			return out
		}
	case Foreign:
		// A bare id becomes {"id": …}; a name stays a string for the caller
		// to resolve.
		if s, ok := v.(string); ok && IsUUID(s) {
			return map[string]any{"id": s}
		}
	}
	return v
}

// ProcessField validates a single value against f (filling defaults for a
// record) and returns the processed value, or the field's error: a message
// string, Errors for a record or map, or []any for array elements.
func ProcessField(f *Field, v any) (any, any) {
	return processValue(f, v, Options{})
}

// Error makes Errors an error; it returns Message.
func (e Errors) Error() string { return e.Message() }
