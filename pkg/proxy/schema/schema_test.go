package schema

import (
	"reflect"
	"testing"
)

var testSchema = &Schema{Name: "things", Fields: []Field{
	{Name: "id", Type: String, UUID: true, Auto: true},
	{Name: "name", Type: String, Required: true, LenMin: 1},
	{Name: "port", Type: Integer, Default: 80, Between: &Range{Min: 0, Max: 65535}},
	{Name: "mode", Type: String, Default: "a", OneOf: []any{"a", "b"}},
	{Name: "on", Type: Boolean, Default: true},
	{Name: "paths", Type: Array, Elements: &Field{Type: String, StartsWith: "/"}},
	{Name: "tags", Type: Set, Elements: &Field{Type: String}},
	{Name: "headers", Type: Map, Keys: &Field{Type: String}, Values: &Field{Type: Array, Elements: &Field{Type: String}}},
	{Name: "rec", Type: Record, Fields: []Field{
		{Name: "n", Type: Number, Default: 1.5},
		{Name: "host", Type: String},
	}, Shorthands: []Shorthand{{Name: "rec_host", Type: String, Path: []string{"host"}}}},
	{Name: "parent", Type: Foreign, Reference: "parents"},
}, Checks: []Check{func(rec map[string]any) []string {
	if rec["mode"] == "b" && rec["paths"] == nil {
		return []string{"mode b needs paths"}
	}
	return nil
}}}

func TestProcessDefaults(t *testing.T) {
	out, errs := testSchema.Process(map[string]any{"name": "x", "tags": []any{"a", "a", "b"}}, Options{})
	if errs != nil {
		t.Fatal(errs)
	}
	want := map[string]any{"id": nil, "name": "x", "port": 80.0, "mode": "a", "on": true, "paths": nil,
		"tags": []any{"a", "b"}, "headers": nil, "rec": map[string]any{"n": 1.5, "host": nil}, "parent": nil}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("got  %#v\nwant %#v", out, want)
	}
}

func TestProcessErrors(t *testing.T) {
	tests := []struct {
		in   map[string]any
		want string
	}{
		{map[string]any{}, "schema violation (name: required field missing)"},
		{map[string]any{"name": ""}, "schema violation (name: length must be at least 1)"},
		{map[string]any{"name": "x", "port": 1.5}, "schema violation (port: expected an integer)"},
		{map[string]any{"name": "x", "port": 70000.0}, "schema violation (port: value should be between 0 and 65535)"},
		{map[string]any{"name": "x", "mode": "c"}, "schema violation (mode: expected one of: a, b)"},
		{map[string]any{"name": "x", "on": "yes"}, "schema violation (on: expected a boolean)"},
		{map[string]any{"name": "x", "paths": []any{"/ok", "bad"}}, "schema violation (paths.2: should start with: /)"},
		{map[string]any{"name": "x", "headers": map[string]any{"h": "v"}}, "schema violation (headers.h: expected an array)"},
		{map[string]any{"name": "x", "rec": map[string]any{"n": "1"}}, "schema violation (rec.n: expected a number)"},
		{map[string]any{"name": "x", "parent": map[string]any{"id": "nope"}}, "schema violation (parent.id: expected a valid UUID)"},
		{map[string]any{"name": "x", "zzz": 1.0}, "schema violation (zzz: unknown field)"},
		{map[string]any{"name": "x", "mode": "b"}, "schema violation (mode b needs paths)"},
		{map[string]any{"port": "x", "on": 1.0}, "3 schema violations (name: required field missing; on: expected a boolean; port: expected an integer)"},
	}
	for _, tc := range tests {
		_, errs := testSchema.Process(tc.in, Options{})
		if errs == nil || errs.Message() != tc.want {
			t.Errorf("%v: got %q, want %q", tc.in, errs.Message(), tc.want)
		}
	}
}

func TestPartialAndShorthand(t *testing.T) {
	out, errs := testSchema.Process(map[string]any{"port": 81.0}, Options{Partial: true})
	if errs != nil || len(out) != 1 || out["port"] != 81.0 {
		t.Fatalf("partial: %v %v", out, errs)
	}
	out, errs = testSchema.Process(map[string]any{"name": "x", "rec": map[string]any{"rec_host": "h"}}, Options{})
	if errs != nil || out["rec"].(map[string]any)["host"] != "h" {
		t.Fatalf("shorthand: %v %v", out, errs)
	}
	d := DescribeField(&testSchema.Fields[8])
	if _, ok := d["shorthand_fields"]; !ok || d["required"] != true {
		t.Fatalf("describe record: %v", d)
	}
}

func TestCoerceForm(t *testing.T) {
	in := map[string]any{"name": "x", "port": "8080", "on": "false", "paths": map[string]any{"2": "/b", "1": "/a"},
		"tags": "solo", "rec": map[string]any{"n": "2.5"}, "parent": "0b1c6c8e-5c7e-4d5e-9f8a-1b2c3d4e5f60"}
	out, errs := testSchema.Process(testSchema.Coerce(in), Options{})
	if errs != nil {
		t.Fatal(errs)
	}
	if out["port"] != 8080.0 || out["on"] != false || !reflect.DeepEqual(out["paths"], []any{"/a", "/b"}) ||
		!reflect.DeepEqual(out["tags"], []any{"solo"}) || out["rec"].(map[string]any)["n"] != 2.5 ||
		out["parent"].(map[string]any)["id"] != "0b1c6c8e-5c7e-4d5e-9f8a-1b2c3d4e5f60" {
		t.Fatalf("coerced: %#v", out)
	}
}
