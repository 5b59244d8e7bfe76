package cluster

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/declarative"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// FuzzDecodeBasicInfo feeds the CP's parser of a DP's first frame.
func FuzzDecodeBasicInfo(f *testing.F) {
	f.Add([]byte(`{"type":"basic_info","plugins":[{"name":"acl","version":"3.9.1"}],"labels":{"a":"b"},"process_conf":{},"filters":[]}`))
	f.Add([]byte(`{"type":"basic_info","plugins":[{"name":"x","version":7}],"labels":{"n":1}}`))
	f.Add([]byte(`{"type":"basic_info"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBasicInfo(data)
		if err != nil {
			return
		}
		if b.Type != "basic_info" || b.Plugins == nil {
			t.Fatalf("accepted %q as %+v", data, b)
		}
		for _, p := range b.Plugins {
			if p.Name == "" {
				t.Fatalf("accepted a plugin without a name: %q", data)
			}
		}
		_ = pluginMap(b.Plugins)
	})
}

// FuzzReconfigurePayload feeds a DP's whole apply path with the JSON of a
// reconfigure frame (compressed here, since a fuzzer cannot usefully mutate
// gzip): decode, hash, parse and validate the config_table, load it.
func FuzzReconfigurePayload(f *testing.F) {
	m := sharedTLS(f)
	cfg, err := loadedStore(f, keyAuthDoc).Snapshot(context.Background())
	if err != nil {
		f.Fatal(err)
	}
	table, _ := declarative.Table(cfg)
	msg, _ := NewReconfigure(table, time.Unix(1700000000, 0))
	f.Add(string(mustJSON(f, msg)))
	f.Add(`{"type":"reconfigure","config_table":{"_format_version":"3.0","workspaces":[{"id":"w"}],"services":[{"host":"a","ws_id":"w"}]}}`)
	f.Add(`{"type":"reconfigure","config_table":{"_format_version":"3.0","routes":[{"paths":["/x"],"service":"00000000-0000-4000-8000-000000000000"}]},"config_hash":"0123456789abcdef0123456789abcdef"}`)
	f.Add(`{"type":"reconfigure","config_table":{"_format_version":"9"}}`)
	f.Fuzz(func(t *testing.T, payload string) {
		st := store.NewMemory()
		dp, err := NewDataPlane(DataPlaneOptions{Store: st, ControlPlane: "127.0.0.1:1", TLS: m})
		if err != nil {
			t.Fatal(err)
		}
		changed, err := dp.Apply(context.Background(), gz(t, payload), false)
		if err != nil {
			if changed || st.SourceHash() != "" {
				t.Fatalf("a refused frame changed the store: %q", payload)
			}
			return
		}
		if _, err := st.Snapshot(context.Background()); err != nil {
			t.Fatalf("an accepted frame left an unusable store: %v", err)
		}
		if !validHash(dp.ConfigHash()) {
			t.Fatalf("hash %q after %q", dp.ConfigHash(), payload)
		}
	})
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
