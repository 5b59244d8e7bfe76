package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kiln-dev/kiln/pkg/pki"
	"github.com/kiln-dev/kiln/pkg/proxy/confighash"
	"github.com/kiln-dev/kiln/pkg/proxy/declarative"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

func sharedTLS(t testing.TB) *TLS {
	t.Helper()
	kp, err := pki.SelfSigned(pki.Options{CommonName: SharedServerName, Usage: pki.ServerAuth | pki.ClientAuth})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewTLS(ModeShared, kp.TLS(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const keyAuthDoc = `_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:9
  routes:
  - name: r
    paths: [/r]
  plugins:
  - name: key-auth
`

func loadedStore(t testing.TB, doc string) *store.Memory {
	t.Helper()
	st := store.NewMemory()
	if doc != "" {
		if _, err := declarative.Load(context.Background(), st, []byte(doc), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// startCP serves a control plane on an ephemeral loopback port.
func startCP(t *testing.T, st store.Store, m *TLS) (*ControlPlane, string) {
	t.Helper()
	return startCPWith(t, ControlPlaneOptions{Store: st, TLS: m, UpdateFrequency: 50 * time.Millisecond})
}

func startCPWith(t *testing.T, o ControlPlaneOptions) (*ControlPlane, string) {
	t.Helper()
	cp, err := NewControlPlane(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	return cp, ln.Addr().String()
}

// dialOutlet opens /v1/outlet as a DP with the given material and query.
func dialOutlet(addr string, m *TLS, q url.Values) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{TLSClientConfig: m.clientConfig(addr), HandshakeTimeout: 20 * time.Second}
	u := url.URL{Scheme: "wss", Host: addr, Path: OutletPath, RawQuery: q.Encode()}
	return d.Dial(u.String(), nil)
}

func dpQuery(id, version string) url.Values {
	return url.Values{"node_id": {id}, "node_hostname": {"dp-host"}, "node_version": {version}}
}

func sendBasicInfo(t *testing.T, c *websocket.Conn, plugins []PluginInfo) {
	t.Helper()
	data, err := EncodeBasicInfo(BasicInfo{Plugins: plugins, Labels: map[string]string{"zone": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, data); err != nil {
		t.Fatal(err)
	}
}

func rowOf(cp *ControlPlane, id string) map[string]any {
	rows, err := cp.DataPlanes(context.Background(), "", 0)
	if err != nil {
		panic(err) // the memory store never fails
	}
	for _, r := range rows {
		if r["id"] == id {
			return r
		}
	}
	return nil
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestDataPlaneRowTTL drives the CP's clock: each ping renews the row for
// PurgeDelay, ttl counts down the seconds left, an expired row is no longer
// listed, and the CP purges expired rows as it starts.
func TestDataPlaneRowTTL(t *testing.T) {
	ctx := context.Background()
	m := sharedTLS(t)
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	st := loadedStore(t, "")
	if err := st.UpsertDataPlane(ctx, store.DataPlane{ID: "stale", ExpiresAt: clk.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	cp, addr := startCPWith(t, ControlPlaneOptions{Store: st, TLS: m, PurgeDelay: time.Hour, Node: Node{Now: clk.Now}})
	proxytest.WaitFor(t, "the expired row to be purged", func() bool {
		rows, err := st.ListDataPlanes(ctx, time.Time{}, "", 0)
		return err == nil && len(rows) == 0
	})

	id := "99999999-9999-4999-8999-999999999999"
	c, _, err := dialOutlet(addr, m, dpQuery(id, "3.10.0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendBasicInfo(t, c, LocalPlugins())
	ping := func(hash string) {
		t.Helper()
		if err := c.WriteControl(websocket.PingMessage, []byte(hash), time.Now().Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	first := strings.Repeat("1", 32)
	ping(first)
	proxytest.WaitFor(t, "the pinged row", func() bool { r := rowOf(cp, id); return r != nil && r["config_hash"] == first })
	r := rowOf(cp, id)
	if r["ttl"] != int64(3600) || r["last_seen"] != clk.Now().Unix() || r["updated_at"] != clk.Now().Unix() {
		t.Fatalf("fresh row %v, want ttl 3600 and last_seen/updated_at %d", r, clk.Now().Unix())
	}

	clk.Add(time.Hour - time.Second)
	if r := rowOf(cp, id); r == nil || r["ttl"] != int64(1) {
		t.Fatalf("one second before expiry: %v, want ttl 1", r)
	}
	second := strings.Repeat("2", 32)
	ping(second)
	proxytest.WaitFor(t, "the renewed row", func() bool { r := rowOf(cp, id); return r != nil && r["config_hash"] == second })
	if r := rowOf(cp, id); r["ttl"] != int64(3600) || r["last_seen"] != clk.Now().Unix() {
		t.Fatalf("renewed row %v, want ttl 3600 and last_seen %d", r, clk.Now().Unix())
	}
	clk.Add(time.Hour)
	if r := rowOf(cp, id); r != nil {
		t.Fatalf("expired row still listed: %v", r)
	}
}

func TestOutletRefusals(t *testing.T) {
	m := sharedTLS(t)
	_, addr := startCP(t, loadedStore(t, ""), m)

	// Another certificate (even one named kong_clustering): the CP closes
	// the connection without upgrading it.
	bad := sharedTLS(t)
	// Trust the real CP so that only the CP's check can refuse.
	cfg := bad.clientConfig(addr)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		pool := x509.NewCertPool()
		pool.AddCert(m.Cert.Leaf)
		return verifyServer(cs, pool, SharedServerName)
	}
	d := websocket.Dialer{TLSClientConfig: cfg, HandshakeTimeout: 20 * time.Second}
	c, resp, err := d.Dial("wss://"+addr+OutletPath+"?"+dpQuery("11111111-1111-4111-8111-111111111111", "3.10.0").Encode(), nil)
	if err == nil {
		c.Close()
		t.Fatal("a data plane with another certificate was upgraded")
	}
	if resp != nil {
		t.Fatalf("a data plane with another certificate got an HTTP %d answer; Kong closes without one", resp.StatusCode)
	}
	if strings.Contains(err.Error(), "certificate") {
		t.Fatalf("the test data plane refused the CP instead: %v", err)
	}

	// Missing node_id or node_version: 400.
	for _, q := range []url.Values{{"node_version": {"3.10.0"}}, {"node_id": {"x"}}} {
		_, resp, err := dialOutlet(addr, m, q)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("query %v: err %v, response %v; want 400", q, err, resp)
		}
	}
}

func TestOutletVersionIncompatible(t *testing.T) {
	m := sharedTLS(t)
	cp, addr := startCP(t, loadedStore(t, ""), m)
	id := "22222222-2222-4222-8222-222222222222"
	c, _, err := dialOutlet(addr, m, dpQuery(id, "3.99.0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendBasicInfo(t, c, LocalPlugins())
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("a newer-minor data plane was not closed: %v", err)
	}
	proxytest.WaitFor(t, "the refused data plane's row", func() bool {
		r := rowOf(cp, id)
		return r != nil && r["sync_status"] == string(StatusKongVersionIncompatible) && r["version"] == "3.99.0"
	})
}

func TestOutletSyncAndPluginMismatch(t *testing.T) {
	m := sharedTLS(t)
	st := loadedStore(t, keyAuthDoc)
	cp, addr := startCP(t, st, m)
	proxytest.WaitFor(t, "the initial export", func() bool { return cp.ConfigHash() != confighash.Empty })

	// A DP with every plugin gets the configuration at once.
	good := "33333333-3333-4333-8333-333333333333"
	c, _, err := dialOutlet(addr, m, dpQuery(good, "3.9.0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendBasicInfo(t, c, LocalPlugins())
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	typ, frame, err := c.ReadMessage()
	if err != nil || typ != websocket.BinaryMessage {
		t.Fatalf("no configuration frame: %v", err)
	}
	msg, err := DecodeReconfigure(frame)
	if err != nil {
		t.Fatal(err)
	}
	if msg.ConfigHash != cp.ConfigHash() || len(msg.ConfigTable["plugins"].([]any)) != 1 {
		t.Fatalf("frame %s with table %v", msg.ConfigHash, msg.ConfigTable)
	}
	// Foreign keys are id strings, nulls are kept.
	route := msg.ConfigTable["routes"].([]any)[0].(map[string]any)
	if _, isString := route["service"].(string); !isString {
		t.Errorf("route.service = %#v, want an id string", route["service"])
	}
	if v, ok := route["hosts"]; !ok || v != nil {
		t.Errorf("route.hosts = %#v (present %v), want an explicit null", v, ok)
	}
	// The ping payload becomes the row's config_hash.
	if err := c.WriteControl(websocket.PingMessage, []byte(msg.ConfigHash), time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	proxytest.WaitFor(t, "the synced row", func() bool {
		r := rowOf(cp, good)
		return r != nil && r["config_hash"] == msg.ConfigHash && r["sync_status"] == string(StatusNormal) &&
			r["hostname"] == "dp-host" && r["ip"] == "127.0.0.1" && r["labels"].(map[string]string)["zone"] == "a"
	})
	r := rowOf(cp, good)
	if exp, _ := r["cert_details"].(map[string]any)["expiry_timestamp"].(int64); exp != m.Cert.Leaf.NotAfter.Unix() {
		t.Errorf("cert_details %v, want expiry %d", r["cert_details"], m.Cert.Leaf.NotAfter.Unix())
	}
	if ttl, _ := r["ttl"].(int64); ttl <= 0 || ttl > int64(DefaultPurgeDelay/time.Second) {
		t.Errorf("ttl %v", r["ttl"])
	}

	// A change reaches the connected DP.
	if err := st.Delete(context.Background(), "plugins", msg.ConfigTable["plugins"].([]any)[0].(map[string]any)["id"].(string)); err != nil {
		t.Fatal(err)
	}
	_, frame, err = c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	next, err := DecodeReconfigure(frame)
	if err != nil || next.ConfigHash == msg.ConfigHash || next.ConfigTable["plugins"] != nil {
		t.Fatalf("change frame: %v, %v", next, err)
	}

	// Put key-auth back: a DP without it keeps its link (pings are
	// answered) but gets no configuration, and its row says why.
	if _, err := declarative.Load(context.Background(), st, []byte(keyAuthDoc), time.Now()); err != nil {
		t.Fatal(err)
	}
	proxytest.WaitFor(t, "the re-export", func() bool { return cp.ConfigHash() != next.ConfigHash })
	lacking := "44444444-4444-4444-8444-444444444444"
	l, _, err := dialOutlet(addr, m, dpQuery(lacking, "3.10.0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sendBasicInfo(t, l, []PluginInfo{{"acl", "3.10.0"}})
	pong := make(chan struct{}, 1)
	l.SetPongHandler(func(string) error { pong <- struct{}{}; return nil })
	if err := l.WriteControl(websocket.PingMessage, []byte(confighash.Empty), time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_ = l.SetReadDeadline(time.Now().Add(30 * time.Second))
		typ, _, err := l.ReadMessage()
		if err == nil {
			err = errors.New("received a data frame, type " + string(rune('0'+typ)))
		}
		got <- err
	}()
	select {
	case <-pong:
	case err := <-got:
		t.Fatalf("before the pong: %v (configuration must be withheld, the link kept)", err)
	}
	proxytest.WaitFor(t, "the plugin_set_incompatible row", func() bool {
		r := rowOf(cp, lacking)
		return r != nil && r["sync_status"] == string(StatusPluginSetIncompatible) && r["config_hash"] == confighash.Empty
	})
}

func TestDataPlaneApplyAndPersist(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := store.NewMemory()
	dp, err := NewDataPlane(DataPlaneOptions{Store: st, ControlPlane: "127.0.0.1:1", TLS: sharedTLS(t), PersistPath: filepath.Join(dir, "config.json.gz")})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadedStore(t, keyAuthDoc).Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	table, _ := declarative.Table(cfg)
	msg, _ := NewReconfigure(table, time.Now())
	frame, _ := EncodeReconfigure(msg)

	if changed, err := dp.Apply(ctx, frame, true); err != nil || !changed {
		t.Fatalf("first apply: %v, %v", changed, err)
	}
	if dp.ConfigHash() != msg.ConfigHash || st.SourceHash() != msg.ConfigHash {
		t.Fatalf("hash %s / store %s, want %s", dp.ConfigHash(), st.SourceHash(), msg.ConfigHash)
	}
	got, _ := st.Snapshot(ctx)
	if got.Hash != cfg.Hash {
		t.Errorf("the configuration changed on its way through the frame: %s != %s", got.Hash, cfg.Hash)
	}
	if changed, err := dp.Apply(ctx, frame, true); err != nil || changed {
		t.Fatalf("same hash applied again: %v, %v", changed, err)
	}
	// An invalid configuration is refused and the previous one kept.
	bad := map[string]any{"_format_version": "3.0", "routes": []any{map[string]any{"id": "not-a-uuid", "paths": []any{"x"}}}}
	badMsg, _ := NewReconfigure(bad, time.Now())
	badFrame, _ := EncodeReconfigure(badMsg)
	if _, err := dp.Apply(ctx, badFrame, true); err == nil || !strings.Contains(err.Error(), "bad config received from control plane") {
		t.Fatalf("invalid configuration: %v", err)
	}
	if dp.ConfigHash() != msg.ConfigHash {
		t.Fatal("the invalid configuration replaced the good one")
	}
	// A Kong CP's workspaces and ws_id are tolerated; an empty
	// configuration reports the all-zeros hash.
	empty := map[string]any{"_format_version": "3.0", "workspaces": []any{map[string]any{"id": "w", "name": "default"}},
		"parameters": []any{map[string]any{"key": "cluster_id", "value": "x"}}}
	emptyMsg, _ := NewReconfigure(empty, time.Now())
	emptyFrame, _ := EncodeReconfigure(emptyMsg)
	if _, err := dp.Apply(ctx, emptyFrame, false); err != nil || dp.ConfigHash() != confighash.Empty {
		t.Fatalf("empty configuration: %v, hash %s", err, dp.ConfigHash())
	}

	// A new DP on the same file starts from the persisted configuration.
	st2 := store.NewMemory()
	dp2, _ := NewDataPlane(DataPlaneOptions{Store: st2, ControlPlane: "127.0.0.1:1", TLS: sharedTLS(t), PersistPath: filepath.Join(dir, "config.json.gz")})
	if err := dp2.LoadPersisted(ctx); err != nil {
		t.Fatal(err)
	}
	if dp2.ConfigHash() != msg.ConfigHash {
		t.Fatalf("persisted hash %s, want %s", dp2.ConfigHash(), msg.ConfigHash)
	}
	// A damaged file is skipped, not fatal.
	if err := os.WriteFile(filepath.Join(dir, "config.json.gz"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	dp3, _ := NewDataPlane(DataPlaneOptions{Store: store.NewMemory(), ControlPlane: "127.0.0.1:1", TLS: sharedTLS(t), PersistPath: filepath.Join(dir, "config.json.gz")})
	if err := dp3.LoadPersisted(ctx); err != nil || dp3.ConfigHash() != confighash.Empty {
		t.Fatalf("damaged file: %v, hash %s", err, dp3.ConfigHash())
	}
}

// TestPushBatching: the first change is pushed at once, the next one waits
// for db_update_frequency (an hour here, so it must not be seen).
func TestPushBatching(t *testing.T) {
	st := loadedStore(t, "")
	cp, _ := startCPWith(t, ControlPlaneOptions{Store: st, TLS: sharedTLS(t), UpdateFrequency: time.Hour})
	// An empty store still exports a table (with _format_version), whose
	// hash is not the all-zeros one ConfigHash reports before any export.
	proxytest.WaitFor(t, "the initial export", func() bool { return cp.ConfigHash() != confighash.Empty })
	h0 := cp.ConfigHash()
	if _, err := declarative.Load(context.Background(), st, []byte(keyAuthDoc), time.Now()); err != nil {
		t.Fatal(err)
	}
	proxytest.WaitFor(t, "the first change to be pushed", func() bool { return cp.ConfigHash() != h0 })
	h1 := cp.ConfigHash()
	if _, err := declarative.Load(context.Background(), st, []byte(strings.Replace(keyAuthDoc, "/r]", "/other]", 1)), time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if cp.ConfigHash() != h1 {
		t.Fatal("a second change was pushed before db_update_frequency elapsed")
	}
}

// TestSilentDataPlaneDropped: a DP that stops pinging loses its link after
// PingWait.
func TestSilentDataPlaneDropped(t *testing.T) {
	m := sharedTLS(t)
	_, addr := startCPWith(t, ControlPlaneOptions{Store: loadedStore(t, ""), TLS: m, Node: Node{PingWait: 300 * time.Millisecond}})
	c, _, err := dialOutlet(addr, m, dpQuery("55555555-5555-4555-8555-555555555555", "3.10.0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendBasicInfo(t, c, LocalPlugins())
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the control plane kept a silent data plane connected")
			}
			return
		}
	}
}

// TestOutletPKI: in pki mode both sides verify the other against the CA;
// the DP checks the CP's name (cluster_server_name).
func TestOutletPKI(t *testing.T) {
	ca, err := pki.NewCA(pki.Options{CommonName: "cluster-ca"})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(cn string) tls.Certificate {
		kp, err := ca.Issue(pki.Options{CommonName: cn, Hosts: []string{cn}, Usage: pki.ServerAuth | pki.ClientAuth})
		if err != nil {
			t.Fatal(err)
		}
		return kp.TLS()
	}
	pool := ca.Pool()
	cpTLS, err := NewTLS(ModePKI, issue("cp.cluster.test"), pool, "")
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startCP(t, loadedStore(t, keyAuthDoc), cpTLS)
	dpTLS, err := NewTLS(ModePKI, issue("dp-1"), pool, "cp.cluster.test")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := dialOutlet(addr, dpTLS, dpQuery("66666666-6666-4666-8666-666666666666", "3.10.0"))
	if err != nil {
		t.Fatalf("a CA-issued data plane was refused: %v", err)
	}
	defer c.Close()
	sendBasicInfo(t, c, LocalPlugins())
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, frame, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	} else if _, err := DecodeReconfigure(frame); err != nil {
		t.Fatal(err)
	}

	// A certificate from elsewhere fails the CP's handshake.
	stranger, err := NewTLS(ModePKI, sharedTLS(t).Cert, pool, "cp.cluster.test")
	if err != nil {
		t.Fatal(err)
	}
	if c, resp, err := dialOutlet(addr, stranger, dpQuery("77777777-7777-4777-8777-777777777777", "3.10.0")); err == nil {
		c.Close()
		t.Fatal("a data plane with a certificate from another CA was upgraded")
	} else if resp != nil {
		t.Fatalf("answered HTTP %d", resp.StatusCode)
	}
	// The DP refuses a CP that is not the expected name.
	wrongName, _ := NewTLS(ModePKI, issue("dp-2"), pool, "other.cluster.test")
	if c, _, err := dialOutlet(addr, wrongName, dpQuery("88888888-8888-4888-8888-888888888888", "3.10.0")); err == nil {
		c.Close()
		t.Fatal("a data plane accepted a control plane certificate for another name")
	}
}
