package spec

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// ignoredMetadataKeys are server-populated ObjectMeta fields: accepted so that
// objects exported from a cluster load, and dropped.
var ignoredMetadataKeys = map[string]bool{
	"uid": true, "resourceVersion": true, "generation": true, "creationTimestamp": true,
	"deletionTimestamp": true, "deletionGracePeriodSeconds": true, "managedFields": true,
	"finalizers": true, "ownerReferences": true, "generateName": true, "selfLink": true,
}

// fieldError is a decoding problem at a field path and line.
type fieldError struct {
	path string
	line int
	msg  string
}

// decoder converts a yaml.v3 node tree into Go values by their json tags,
// strictly: unknown fields, wrong types and duplicate keys are all reported
// (with path and line) instead of stopping at the first.
type decoder struct {
	errs []fieldError
	// suppressed are field paths whose problems were already reported
	// another way (a mistyped field name).
	suppressed []string
	// lines maps every field path that appeared in the document to its line.
	lines map[string]int
}

func newDecoder() *decoder { return &decoder{lines: map[string]int{}} }

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, fieldError{path: path, line: n.Line, msg: fmt.Sprintf(format, args...)})
}

var metadataType = reflect.TypeFor[ObjectMeta]()

// decode fills v (settable) from n; path names n for messages.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		if _, seen := d.lines[path]; !seen {
			d.lines[path] = n.Line
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // leave the zero value
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			d.errorf(n, path, "%v", err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		if !d.expectKind(n, yaml.MappingNode, path) {
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := k.Value
			if seen[key] {
				d.errorf(k, join(path, key), "key %q appears twice", key)
				continue
			}
			seen[key] = true
			d.keyLine(join(path, key), k)
			elem := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, elem, join(path, key))
			v.SetMapIndex(reflect.ValueOf(key), elem)
		}
	case reflect.Slice:
		if !d.expectKind(n, yaml.SequenceNode, path) {
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if !d.expectKind(n, yaml.ScalarNode, path) {
			return
		}
		if n.Tag != "!!str" && n.Tag != "!" {
			d.errorf(n, path, "must be a string, but %s reads as a %s: quote it (%q)", n.Value, tagName(n.Tag), n.Value)
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int64:
		if !d.expectKind(n, yaml.ScalarNode, path) {
			return
		}
		var i int64
		if n.Tag != "!!int" || n.Decode(&i) != nil {
			d.errorf(n, path, "must be a whole number, not %q", n.Value)
			return
		}
		if v.Kind() == reflect.Int && (i > math.MaxInt32 || i < math.MinInt32) {
			d.errorf(n, path, "%d is out of range", i)
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if !d.expectKind(n, yaml.ScalarNode, path) {
			return
		}
		var b bool
		if n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.errorf(n, path, "must be true or false, not %q", n.Value)
			return
		}
		v.SetBool(b)
	default:
		d.errorf(n, path, "cannot decode into %s", v.Type())
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if !d.expectKind(n, yaml.MappingNode, path) {
		return
	}
	fields := structFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		fp := join(path, key)
		if seen[key] {
			d.errorf(k, fp, "field %q appears twice", key)
			continue
		}
		seen[key] = true
		idx, ok := fields[key]
		if !ok {
			if v.Type() == metadataType && ignoredMetadataKeys[key] {
				continue
			}
			hint := ""
			if s := suggest(key, fields); s != "" {
				hint = fmt.Sprintf("; did you mean %q?", s)
				// The intended field is reported through this mistake, not as missing.
				d.suppressed = append(d.suppressed, join(path, s))
			}
			d.errorf(k, fp, "unknown field %q%s (known fields here: %s)", key, hint, knownList(fields))
			continue
		}
		d.keyLine(fp, k)
		f := v.FieldByIndex(idx)
		if anyScalarFields[v.Type()] != nil && anyScalarFields[v.Type()][key] {
			d.decodeEnvironment(val, f, fp)
			continue
		}
		d.decode(val, f, fp)
	}
}

// anyScalarFields are string maps whose values may be written as any YAML
// scalar: workflow environments, where `COMPRESSED: true` or `UID: 0` are
// common and mean the literal text.
var anyScalarFields = map[reflect.Type]map[string]bool{
	reflect.TypeFor[WorkflowTask]():   {"environment": true},
	reflect.TypeFor[WorkflowAction](): {"environment": true},
}

// decodeEnvironment decodes a map of environment variables, taking every
// scalar value's text as written.
func (d *decoder) decodeEnvironment(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if !d.expectKind(n, yaml.MappingNode, path) {
		return
	}
	env := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		for val.Kind == yaml.AliasNode {
			val = val.Alias
		}
		p := join(path, k.Value)
		d.keyLine(p, k)
		if _, dup := env[k.Value]; dup {
			d.errorf(k, p, "key %q appears twice", k.Value)
			continue
		}
		if val.Kind != yaml.ScalarNode {
			d.errorf(val, p, "must be a single value, not %s", nodeDescription(val))
			continue
		}
		if val.Tag == "!!null" {
			env[k.Value] = ""
			continue
		}
		env[k.Value] = val.Value
	}
	v.Set(reflect.ValueOf(env))
}

func (d *decoder) expectKind(n *yaml.Node, want yaml.Kind, path string) bool {
	if n.Kind == want {
		return true
	}
	d.errorf(n, path, "must be %s, not %s", kindName(want), nodeDescription(n))
	return false
}

// structFields maps json names to field indexes, flattening embedded structs.
func structFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, idx := range structFields(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = []int{i}
	}
	return out
}

func knownList(fields map[string][]int) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// suggest proposes a known field whose name differs from key only in case,
// the most common mistake (e.g. "tinkerbellIp"), or returns "".
func suggest(key string, fields map[string][]int) string {
	for k := range fields {
		if strings.EqualFold(k, key) {
			return k
		}
	}
	return ""
}

// keyLine records the line of a mapping key as the line of its field, so that
// problems point at "field:" rather than at the value below it.
func (d *decoder) keyLine(path string, k *yaml.Node) {
	if _, seen := d.lines[path]; !seen {
		d.lines[path] = k.Line
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "a mapping (key: value pairs)"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}

func nodeDescription(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the %s %q", tagName(n.Tag), n.Value)
	}
	return "an unsupported YAML node"
}

func tagName(tag string) string {
	switch tag {
	case "!!int":
		return "number"
	case "!!float":
		return "decimal number"
	case "!!bool":
		return "boolean"
	case "!!str":
		return "string"
	case "!!null":
		return "null"
	case "!!timestamp":
		return "timestamp"
	}
	return strings.TrimPrefix(tag, "!!")
}
