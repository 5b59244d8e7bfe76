package cluster

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/confighash"
)

func TestCheckVersion(t *testing.T) {
	tests := []struct {
		cp, dp string
		want   SyncStatus
	}{
		{"3.10.0", "3.10.0", StatusNormal},
		{"3.10.0", "3.10.7", StatusNormal}, // patch ignored
		{"3.10.0", "3.4.2", StatusNormal},  // older DP minor
		{"3.10.0", "3.11.0", StatusKongVersionIncompatible},
		{"3.10.0", "4.0.0", StatusKongVersionIncompatible},
		{"3.10.0", "2.8.1", StatusKongVersionIncompatible},
		{"3.10.0", "3.10", StatusKongVersionIncompatible}, // not x.y.z
		{"3.10.0", "garbage", StatusKongVersionIncompatible},
		{"3.10.0", "3.9.1.2-enterprise", StatusNormal},
	}
	for _, tt := range tests {
		got, err := CheckVersion(tt.cp, tt.dp)
		if got != tt.want || (err == nil) != (tt.want == StatusNormal) {
			t.Errorf("CheckVersion(%s, %s) = %s, %v; want %s", tt.cp, tt.dp, got, err, tt.want)
		}
	}
}

func TestCheckPlugins(t *testing.T) {
	cp := []PluginInfo{{"acl", "3.10.0"}, {"key-auth", "3.10.0"}, {"cors", ""}}
	cpMap := pluginMap(cp)
	tests := []struct {
		name       string
		configured []string
		dp         []PluginInfo
		want       SyncStatus
	}{
		{"nothing configured", nil, nil, StatusNormal},
		{"configured plugin present", []string{"key-auth"}, []PluginInfo{{"key-auth", "3.10.0"}}, StatusNormal},
		{"older DP minor", []string{"key-auth"}, []PluginInfo{{"key-auth", "3.2.0"}}, StatusNormal},
		{"configured plugin missing", []string{"key-auth"}, []PluginInfo{{"acl", "3.10.0"}}, StatusPluginSetIncompatible},
		{"unversioned CP plugin missing", []string{"cors"}, nil, StatusPluginSetIncompatible},
		{"newer DP minor", []string{"acl"}, []PluginInfo{{"acl", "3.11.0"}}, StatusPluginVersionIncompatible},
		{"other major", []string{"acl"}, []PluginInfo{{"acl", "2.10.0"}}, StatusPluginVersionIncompatible},
		{"unversioned DP plugin", []string{"acl"}, []PluginInfo{{"acl", ""}}, StatusNormal},
		{"unconfigured plugin missing", []string{"acl"}, []PluginInfo{{"acl", "3.10.0"}}, StatusNormal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			configured := map[string]bool{}
			for _, n := range tt.configured {
				configured[n] = true
			}
			got, err := checkPlugins(cp, cpMap, configured, pluginMap(tt.dp))
			if got != tt.want || (err == nil) != (tt.want == StatusNormal) {
				t.Errorf("got %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestDecodeBasicInfo(t *testing.T) {
	tests := []struct {
		name, in, err string
		labels        map[string]string
		plugins       int
	}{
		{"kong DP", `{"type":"basic_info","plugins":[{"name":"acl","version":"3.9.1"},{"name":"x"}],"labels":{"region":"eu"},"process_conf":{"role":"data_plane"},"filters":[]}`, "", map[string]string{"region": "eu"}, 2},
		{"no labels", `{"type":"basic_info","plugins":[]}`, "", nil, 0},
		{"wrong type", `{"type":"hello","plugins":[]}`, "invalid basic info data type: hello", nil, 0},
		{"no type", `{"plugins":[]}`, "invalid basic info data type: unknown", nil, 0},
		{"missing plugins", `{"type":"basic_info"}`, "missing plugins", nil, 0},
		{"plugins not an array", `{"type":"basic_info","plugins":{}}`, "missing plugins", nil, 0},
		{"plugin without name", `{"type":"basic_info","plugins":[{"version":"1.0.0"}]}`, "plugins[0]", nil, 0},
		{"labels not an object", `{"type":"basic_info","plugins":[],"labels":[1]}`, "labels", nil, 0},
		{"not JSON", `nope`, "failed to decode", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := DecodeBasicInfo([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Plugins) != tt.plugins || len(b.Labels) != len(tt.labels) {
				t.Fatalf("decoded %+v", b)
			}
			for k, v := range tt.labels {
				if b.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, b.Labels[k], v)
				}
			}
		})
	}
	// What a kiln DP sends decodes back to the same plugins, sorted.
	data, err := EncodeBasicInfo(BasicInfo{Plugins: LocalPlugins(), Labels: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := DecodeBasicInfo(data)
	if err != nil || len(b.Plugins) != len(LocalPlugins()) || b.Labels["a"] != "b" {
		t.Fatalf("round trip: %+v, %v", b, err)
	}
	for i := 1; i < len(b.Plugins); i++ {
		if b.Plugins[i-1].Name >= b.Plugins[i].Name {
			t.Fatalf("plugins not sorted: %v", b.Plugins)
		}
	}
}

func gz(t testing.TB, s string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReconfigureFrames(t *testing.T) {
	table := map[string]any{"_format_version": "3.0", "services": []any{map[string]any{"id": "x", "port": 80.0}}}
	msg, err := NewReconfigure(table, time.Unix(1700000000, 250e6))
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := confighash.Config(table)
	if msg.ConfigHash != want || msg.Hashes["services"] == confighash.Empty || msg.Timestamp != 1700000000.25 {
		t.Fatalf("frame %+v", msg)
	}
	frame, err := EncodeReconfigure(msg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeReconfigure(frame)
	if err != nil || got.ConfigHash != msg.ConfigHash {
		t.Fatalf("decode: %+v, %v", got, err)
	}
	// The payload is gzip-compressed JSON with Kong's field names.
	var raw map[string]any
	zr, _ := gzip.NewReader(bytes.NewReader(frame))
	if err := json.NewDecoder(zr).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"type", "timestamp", "config_table", "config_hash", "hashes"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("frame lacks %q: %v", k, raw)
		}
	}

	errs := []struct {
		name  string
		frame []byte
		want  string
	}{
		{"not gzip", []byte("{}"), "inflate"},
		{"not JSON", gz(t, "nope"), "decode"},
		{"other type", gz(t, `{"type":"error","error":{}}`), ErrNotReconfigure.Error()},
		{"no table", gz(t, `{"type":"reconfigure"}`), "config_table"},
		{"bad hash", gz(t, `{"type":"reconfigure","config_table":{},"config_hash":"zz"}`), "32 hexadecimal"},
	}
	for _, tt := range errs {
		if _, err := DecodeReconfigure(tt.frame); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := DecodeReconfigure(gz(t, `{"type":"error"}`)); !errors.Is(err, ErrNotReconfigure) {
		t.Errorf("an error frame is not reported as ErrNotReconfigure: %v", err)
	}
	// Without a hash the DP computes Kong's.
	noHash, err := DecodeReconfigure(gz(t, `{"type":"reconfigure","config_table":{"_format_version":"3.0"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if h, _, _ := confighash.Config(map[string]any{"_format_version": "3.0"}); noHash.ConfigHash != h {
		t.Errorf("computed hash %s, want %s", noHash.ConfigHash, h)
	}
}
