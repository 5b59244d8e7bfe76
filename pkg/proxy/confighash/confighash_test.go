package confighash

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestValue(t *testing.T) {
	big1 := strings.Repeat("a", 600000)
	big2 := strings.Repeat("b", 600000)
	big3 := strings.Repeat("c", 10)
	rolled := md5.Sum([]byte(big1 + ";" + big2 + ";"))
	tests := []struct {
		name string
		in   any
		want string // canonical string whose md5 is expected
	}{
		{"null inside a map", map[string]any{"a": nil}, "a:/null/;"},
		{"string", "hello", "hello"},
		{"empty string", "", ""},
		{"integer", float64(80), "80"},
		{"fraction", 1.5, "1.5"},
		{"millisecond timestamp", 1700000000.123, "1700000000.123"},
		{"14 significant digits", 123456789012345.0, "1.2345678901234e+14"},
		{"small exponent", 0.00001, "1e-05"},
		{"int type", 42, "42"},
		{"json.Number", json.Number("7"), "7"},
		{"true", true, "true"},
		{"false", false, "false"},
		{"empty array", []any{}, "{}"},
		{"empty map", map[string]any{}, "{}"},
		{"one element", []any{"a"}, "a"},
		{"five elements joined", []any{"a", "b", "c", "d", "e"}, "a;b;c;d;e"},
		{"six elements terminated", []any{"a", "b", "c", "d", "e", "f"}, "a;b;c;d;e;f;"},
		{"array with null", []any{1.0, nil, 3.0}, "1;/null/;3"},
		{"map sorted by key", map[string]any{"b": 2.0, "a": "x", "C": true}, "C:true;a:x;b:2;"},
		{"nested", map[string]any{"routes": []any{map[string]any{"paths": []any{"/a", "/b"}, "id": "r1"}}},
			"routes:id:r1;paths:/a;/b;;"},
		{"rolling digest beyond 1 MB", []any{big1, big2, big3}, string(rolled[:]) + big3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Value(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if want := md5hex(tt.want); got != want {
				t.Errorf("Value(%s) = %s, want md5(%.60q) = %s", tt.name, got, tt.want, want)
			}
		})
	}
}

func TestValueNilAndErrors(t *testing.T) {
	if h, err := Value(nil); err != nil || h != Empty {
		t.Errorf("Value(nil) = %q, %v; want the all-zeros hash", h, err)
	}
	if _, err := Value(map[string]any{"x": struct{}{}}); err == nil {
		t.Error("a non-JSON type was hashed without an error")
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name  string
		table any
		want  func() (string, Hashes)
	}{
		{"only top-level keys", map[string]any{"_format_version": "3.0", "_transform": false}, func() (string, Hashes) {
			rest := md5hex("_format_version:3.0;_transform:false;")
			h := Hashes{"config": md5hex(strings.Repeat(Empty, 5) + rest)}
			for _, s := range Sections {
				h[s] = Empty
			}
			return h["config"], h
		}},
		{"sections hashed separately", map[string]any{
			"_format_version": "3.0",
			"services":        []any{map[string]any{"id": "s", "port": 80.0}},
			"routes":          []any{map[string]any{"id": "r", "service": "s"}},
			"targets":         []any{},
		}, func() (string, Hashes) {
			h := Hashes{
				"routes": md5hex("id:r;service:s;"), "services": md5hex("id:s;port:80;"),
				"plugins": Empty, "upstreams": Empty, "targets": md5hex("{}"),
			}
			rest := md5hex("_format_version:3.0;")
			h["config"] = md5hex(h["routes"] + h["services"] + h["plugins"] + h["upstreams"] + h["targets"] + rest)
			return h["config"], h
		}},
		{"not a table", "x", func() (string, Hashes) { return md5hex("x"), Hashes{"config": md5hex("x")} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, hashes, err := Config(tt.table)
			if err != nil {
				t.Fatal(err)
			}
			want, wantHashes := tt.want()
			if got != want {
				t.Errorf("config hash %s, want %s", got, want)
			}
			for k, v := range wantHashes {
				if hashes[k] != v {
					t.Errorf("hashes[%s] = %s, want %s", k, hashes[k], v)
				}
			}
			if len(hashes) != len(wantHashes) {
				t.Errorf("hashes %v, want keys of %v", hashes, wantHashes)
			}
		})
	}
}

// TestKongVectors checks the hashes Kong's own unit tests expect
// (spec/01-unit/19-hybrid/02-clustering_spec.lua).
func TestKongVectors(t *testing.T) {
	six := func() []any { return []any{"v1", "v2", "v3", "v4", "v5", "v6"} }
	plugin := func(name string, config map[string]any) any {
		return map[string]any{"name": name, "config": config}
	}
	consumers := make([]any, 1000)
	for i := range consumers {
		consumers[i] = map[string]any{"username": "user-" + strconv.Itoa(i+1)}
	}
	complexTable := map[string]any{
		"plugins": []any{
			plugin("0", map[string]any{"param": "value"}),
			plugin("1", map[string]any{"param": six()}),
			plugin("2", map[string]any{"param": []any{"v1", "v2", "v3", "v4", "v5"}}),
			plugin("3", map[string]any{"param": []any{"v1", "v2", "v3", "v4"}}),
			plugin("4", map[string]any{"param": []any{"v1", "v2", "v3"}}),
			plugin("5", map[string]any{"param": []any{"v1", "v2"}}),
			plugin("6", map[string]any{"param": []any{"v1"}}),
			plugin("7", map[string]any{"param": []any{}}),
			plugin("8", map[string]any{"param": "value", "array": six()}),
			plugin("9", map[string]any{"bool1": true, "bool2": false, "number": 1.0, "double": 1.1, "empty": map[string]any{},
				"null": nil, "string": "test", "hash": map[string]any{"k": "v"}, "array": six()}),
		},
		"consumers": consumers,
	}
	tests := []struct {
		name   string
		in     any
		want   string
		hashes Hashes
	}{
		{"nil", nil, Empty, nil},
		{"number", 10.0, "d3d9446802a44259755d38e6d163e820", nil},
		{"double", 0.9, "a894124cc6d5c5c71afe060d5dde0762", nil},
		{"empty string", "", "d41d8cd98f00b204e9800998ecf8427e", nil},
		{"string", "hello", "5d41402abc4b2a76b9719d911017c592", nil},
		{"false", false, "68934a3e9455fa72420237eb05902327", nil},
		{"true", true, "b326b5062b2f0e69046810717534cb09", nil},
		{"empty table", map[string]any{}, "2da3c26e4dbd6dd6ea3ab60a3dd7fb3e", Hashes{"config": "2da3c26e4dbd6dd6ea3ab60a3dd7fb3e",
			"routes": Empty, "services": Empty, "plugins": Empty, "upstreams": Empty, "targets": Empty}},
		{"empty routes, services, plugins", map[string]any{"routes": []any{}, "services": []any{}, "plugins": []any{}},
			"81aac97a81ad03c0cf0b36663806488e", Hashes{"config": "81aac97a81ad03c0cf0b36663806488e",
				"routes": "99914b932bd37a50b983c5e7c90ae93b", "services": "99914b932bd37a50b983c5e7c90ae93b",
				"plugins": "99914b932bd37a50b983c5e7c90ae93b", "upstreams": Empty, "targets": Empty}},
		{"empty upstreams, targets", map[string]any{"upstreams": []any{}, "targets": []any{}},
			"4d60dd9998ea4314039da5ca2f1db96f", Hashes{"config": "4d60dd9998ea4314039da5ca2f1db96f",
				"routes": Empty, "services": Empty, "plugins": Empty,
				"upstreams": "99914b932bd37a50b983c5e7c90ae93b", "targets": "99914b932bd37a50b983c5e7c90ae93b"}},
		{"complex table", complexTable, "675ff4b6b1c8cefa5198284110786ad0", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, hashes, err := Config(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("hash %s, Kong's is %s", got, tt.want)
			}
			for k, v := range tt.hashes {
				if hashes[k] != v {
					t.Errorf("hashes[%s] = %s, Kong's is %s", k, hashes[k], v)
				}
			}
		})
	}
}
