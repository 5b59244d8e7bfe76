package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/pki"
	"github.com/kiln-dev/kiln/pkg/proxy/cluster"
	"github.com/kiln-dev/kiln/pkg/proxy/confighash"
	"github.com/kiln-dev/kiln/pkg/proxy/gateway"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
	"github.com/kiln-dev/kiln/pkg/proxy/store/sqlstore"
)

// node is one running gateway.
type node struct {
	proxy, admin, status, cluster string
	stop                          func()
}

// start runs a gateway on ephemeral loopback ports until stop (or the end
// of the test).
func start(t *testing.T, o gateway.Options) *node {
	t.Helper()
	o.ProxyListen, o.AdminListen, o.StatusListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	n := &node{}
	ready := make(chan struct{})
	o.Cluster.Ready = func(addr string) { n.cluster = addr }
	o.Ready = func(proxy, admin, status []string) {
		n.proxy, n.admin, n.status = proxy[0], admin[0], status[0]
		close(ready)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gateway.Run(ctx, o) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("gateway (%s) did not start: %v", o.Role, err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("gateway (%s) did not start", o.Role)
	}
	stopped := false
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway (%s): %v", o.Role, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("gateway (%s) did not stop", o.Role)
		}
	}
	t.Cleanup(n.stop)
	return n
}

// eventually polls fn until it returns "" (success) or a generous deadline
// passes; fn returns what it saw otherwise.
func eventually(t *testing.T, what string, fn func() string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if last = fn(); last == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last: %s", what, last)
}

var client = &http.Client{Timeout: 10 * time.Second}

func call(method, u string, form url.Values) (int, string) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return 0, err.Error()
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// proxiedBy reports "" once path on the proxy reaches the upstream named up.
func proxiedBy(proxy, path, up string) func() string {
	return func() string {
		code, body := call(http.MethodGet, proxy+path, nil)
		if code == http.StatusOK && strings.Contains(body, `"server":"`+up+`"`) {
			return ""
		}
		return body
	}
}

func statusJSON(t *testing.T, u string) map[string]any {
	t.Helper()
	code, body := call(http.MethodGet, u, nil)
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil || code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, code, body)
	}
	return out
}

func clusterTLS(t *testing.T) *cluster.TLS {
	t.Helper()
	kp, err := pki.SelfSigned(pki.Options{CommonName: cluster.SharedServerName, Hosts: []string{cluster.SharedServerName},
		Usage: pki.ServerAuth | pki.ClientAuth})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cluster.NewTLS(cluster.ModeShared, kp.TLS(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHybridMode runs a real control plane (SQLite) and data planes over
// loopback mTLS, end to end through the Admin API and the proxy.
func TestHybridMode(t *testing.T) {
	ctx := context.Background()
	m := clusterTLS(t)
	up1, up2 := proxytest.StartEcho(t, "one"), proxytest.StartEcho(t, "two")

	cpDB := filepath.Join(t.TempDir(), "cp.db")
	cpStore, err := sqlstore.OpenSQLite(ctx, cpDB)
	if err != nil {
		t.Fatal(err)
	}
	cpOpts := gateway.Options{Store: cpStore, Role: gateway.RoleControlPlane,
		Cluster: gateway.ClusterOptions{TLS: m, Listen: "127.0.0.1:0", UpdateFrequency: 100 * time.Millisecond}}
	cp := start(t, cpOpts)
	if cp.cluster == "" {
		t.Fatal("no cluster listener address")
	}
	fast := func() time.Duration { return 100 * time.Millisecond }
	prefix := t.TempDir()
	dpOpts := gateway.Options{Store: store.NewMemory(), Role: gateway.RoleDataPlane,
		Cluster: gateway.ClusterOptions{TLS: m, ControlPlane: cp.cluster, PersistDir: prefix,
			Labels: map[string]string{"region": "eu"}, ReconnectDelay: fast}}
	dp := start(t, dpOpts)

	// Nothing configured yet: the DP is not ready.
	if code, body := call(http.MethodGet, dp.status+"/status/ready", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("empty data plane /status/ready = %d %s, want 503", code, body)
	}

	// Configure the CP through its Admin API; the DP proxies it.
	if code, body := call(http.MethodPost, cp.admin+"/services", url.Values{"name": {"svc"}, "url": {"http://" + up1}}); code != http.StatusCreated {
		t.Fatalf("POST /services: %d %s", code, body)
	}
	if code, body := call(http.MethodPost, cp.admin+"/services/svc/routes", url.Values{"name": {"r"}, "paths[]": {"/hybrid"}}); code != http.StatusCreated {
		t.Fatalf("POST /routes: %d %s", code, body)
	}
	eventually(t, "the data plane to proxy /hybrid to the first upstream", proxiedBy(dp.proxy, "/hybrid/x", "one"))
	if code, body := call(http.MethodGet, dp.status+"/status/ready", nil); code != http.StatusOK {
		t.Fatalf("configured data plane /status/ready = %d %s", code, body)
	}

	// A change reaches it too.
	if code, body := call(http.MethodPatch, cp.admin+"/services/svc", url.Values{"url": {"http://" + up2}}); code != http.StatusOK {
		t.Fatalf("PATCH /services/svc: %d %s", code, body)
	}
	eventually(t, "the data plane to follow the change", proxiedBy(dp.proxy, "/hybrid/x", "two"))

	// The CP lists the DP with the hash the DP reports in /status.
	var dpRow map[string]any
	eventually(t, "the data plane row with the current hash", func() string {
		dpHash, _ := statusJSON(t, dp.status+"/status")["configuration_hash"].(string)
		list := statusJSON(t, cp.admin+"/clustering/data-planes")
		rows, _ := list["data"].([]any)
		if len(rows) != 1 {
			return "rows: " + toJSON(list)
		}
		row := rows[0].(map[string]any)
		labels, _ := row["labels"].(map[string]any)
		if dpHash == confighash.Empty || row["config_hash"] != dpHash || row["sync_status"] != "normal" ||
			row["ip"] != "127.0.0.1" || labels["region"] != "eu" || row["version"] == nil {
			return "row " + toJSON(row) + " dp hash " + dpHash
		}
		dpRow = row
		return ""
	})
	if conf, _ := statusJSON(t, cp.admin+"/")["configuration"].(map[string]any); conf["role"] != "control_plane" || conf["database"] != "sqlite" {
		t.Errorf("control plane GET / configuration: %v", conf)
	}
	root := statusJSON(t, dp.admin+"/")
	if conf, _ := root["configuration"].(map[string]any); conf["role"] != "data_plane" || conf["database"] != "off" {
		t.Errorf("data plane GET / configuration: %v", conf)
	}
	if code, body := call(http.MethodPost, dp.admin+"/services", url.Values{"name": {"x"}}); code != http.StatusMethodNotAllowed {
		t.Errorf("data plane POST /services = %d %s, want 405", code, body)
	}
	if code, _ := call(http.MethodGet, dp.admin+"/clustering/data-planes", nil); code != http.StatusBadRequest {
		t.Errorf("data plane /clustering/data-planes = %d, want 400", code)
	}

	// A DP whose minor version is newer than the CP's is refused, and the
	// CP records why.
	old := start(t, gateway.Options{Store: store.NewMemory(), Role: gateway.RoleDataPlane,
		Cluster: gateway.ClusterOptions{TLS: m, ControlPlane: cp.cluster, Version: "3.99.0", ReconnectDelay: fast}})
	eventually(t, "the incompatible data plane's row", func() string {
		list := statusJSON(t, cp.admin+"/clustering/data-planes")
		for _, r := range list["data"].([]any) {
			if row := r.(map[string]any); row["version"] == "3.99.0" {
				if row["sync_status"] == "kong_version_incompatible" {
					return ""
				}
				return toJSON(row)
			}
		}
		return toJSON(list)
	})
	if code, _ := call(http.MethodGet, old.status+"/status/ready", nil); code != http.StatusServiceUnavailable {
		t.Errorf("refused data plane /status/ready = %d, want 503", code)
	}
	old.stop()

	// The CP goes away: the DP keeps serving and stays ready.
	cp.stop()
	if code, body := call(http.MethodGet, dp.proxy+"/hybrid/x", nil); code != http.StatusOK || !strings.Contains(body, `"server":"two"`) {
		t.Fatalf("data plane without its control plane: %d %s", code, body)
	}
	if code, body := call(http.MethodGet, dp.status+"/status/ready", nil); code != http.StatusOK {
		t.Fatalf("data plane without its control plane /status/ready = %d %s", code, body)
	}

	// A restarted CP on the same database still lists both DPs before any
	// reconnects (they dial the old address): the rows are in SQLite.
	if cpOpts.Store, err = sqlstore.OpenSQLite(ctx, cpDB); err != nil {
		t.Fatal(err)
	}
	cp2 := start(t, cpOpts)
	list := statusJSON(t, cp2.admin+"/clustering/data-planes")
	rows, _ := list["data"].([]any)
	if len(rows) != 2 {
		t.Fatalf("restarted control plane lists %s, want both data planes", toJSON(list))
	}
	found := false
	for _, r := range rows {
		row := r.(map[string]any)
		if row["id"] == dpRow["id"] {
			found = true
			if row["config_hash"] != dpRow["config_hash"] || row["hostname"] != dpRow["hostname"] || toJSON(row["labels"]) != toJSON(dpRow["labels"]) {
				t.Errorf("restarted control plane's row %s, before the restart %s", toJSON(row), toJSON(dpRow))
			}
			if ttl, _ := row["ttl"].(float64); ttl <= 0 || ttl > float64(cluster.DefaultPurgeDelay/time.Second) {
				t.Errorf("ttl %v", row["ttl"])
			}
		}
	}
	if !found {
		t.Fatalf("restarted control plane lost data plane %v: %s", dpRow["id"], toJSON(list))
	}
	cp2.stop()

	// A restarted DP serves its persisted configuration with the CP down.
	dp.stop()
	dpOpts.Store = store.NewMemory()
	dp2 := start(t, dpOpts)
	if code, body := call(http.MethodGet, dp2.proxy+"/hybrid/x", nil); code != http.StatusOK || !strings.Contains(body, `"server":"two"`) {
		t.Fatalf("restarted data plane: %d %s", code, body)
	}
	if code, body := call(http.MethodGet, dp2.status+"/status/ready", nil); code != http.StatusOK {
		t.Fatalf("restarted data plane /status/ready = %d %s", code, body)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestCheckRole: the role / database / cluster address combinations Kong
// refuses, each with the flag to change.
func TestCheckRole(t *testing.T) {
	cases := []struct {
		role, database, listen, cp string
		want                       string // "" = accepted
	}{
		{"", "sqlite", "", "", ""},
		{gateway.RoleTraditional, "off", "", "", ""},
		{gateway.RoleControlPlane, "postgres", "127.0.0.1:8005", "", ""},
		{gateway.RoleControlPlane, "off", "127.0.0.1:8005", "", "--role control_plane needs a database"},
		{gateway.RoleControlPlane, "sqlite", "off", "", "--cluster-listen must be specified"},
		{gateway.RoleDataPlane, "off", "", "cp.example:8005", ""},
		{gateway.RoleDataPlane, "postgres", "", "cp.example:8005", "--role data_plane needs --database off"},
		{gateway.RoleDataPlane, "off", "", "cp.example", `--cluster-control-plane "cp.example": expected host:port`},
		{"primary", "off", "", "", `--role "primary" is not supported`},
	}
	for _, c := range cases {
		err := gateway.CheckRole(c.role, c.database, c.listen, c.cp)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q/%q refused: %v", c.role, c.database, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q/%q: error %v, want %q", c.role, c.database, err, c.want)
		}
	}
}
