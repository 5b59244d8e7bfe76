package confighash

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
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
