package gatewaycmd

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kiln-dev/kiln/pkg/exitcode"
	"github.com/kiln-dev/kiln/pkg/proxy/proxytest/grpcecho"
)

// runProgram runs the gateway program with args (after the program's
// name), as cmd/kiln-gateway does, and returns its exit code.
func runProgram(ctx context.Context, args []string, out, errOut io.Writer) int {
	return Run(ctx, append([]string{"kiln-gateway"}, args...), Streams{Out: out, Err: errOut})
}

// startGatewayCLI runs `kiln-gateway run` in-process on ephemeral loopback
// ports and returns the proxy, admin and status base URLs.
func startGatewayCLI(t *testing.T, extra ...string) (proxy, admin, status string) {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"run", "--proxy-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--status-listen", "127.0.0.1:0", "--proxy-access-log", "off"}, extra...)
	done := make(chan int, 1)
	go func() {
		done <- runProgram(ctx, args, io.Discard, pw)
		_ = pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop")
		}
	})
	re := regexp.MustCompile(`proxy (\S+), admin (\S+), status (\S+)`)
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go func() { _, _ = io.Copy(io.Discard, pr) }()
			return m[1], m[2], m[3]
		}
	}
	t.Fatalf("gateway did not start (exit %v)", <-done)
	return
}

func upstreamEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"uri": r.RequestURI, "host": r.Host, "headers": r.Header})
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// apiConfigFile writes a DB-less file routing /api to a service at url and
// returns its path.
func apiConfigFile(t *testing.T, url string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "kong.yaml")
	doc := "_format_version: \"3.0\"\nservices:\n- name: s\n  url: " + url + "\n  routes:\n  - name: r\n    paths: [\"/api\"]\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// expectUsageError runs the gateway program with args and fails the test
// unless it exits with the usage code and says want.
func expectUsageError(t *testing.T, args []string, want string) {
	t.Helper()
	var stderr strings.Builder
	if code := runProgram(context.Background(), args, io.Discard, &stderr); code != exitcode.Usage || !strings.Contains(stderr.String(), want) {
		t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", args, code, stderr.String(), exitcode.Usage, want)
	}
}

func TestGatewayRunSeedExample(t *testing.T) {
	up := upstreamEcho(t)
	proxy, admin, status := startGatewayCLI(t, "--database", "sqlite", "--sqlite-path", filepath.Join(t.TempDir(), "gw.db"))

	// The seed's commands: with httpie when it is installed (CI installs
	// it), and the form-encoded variant with a plain client.
	if httpie, err := exec.LookPath("http"); err == nil {
		a := strings.TrimPrefix(admin, "http://127.0.0.1")
		for _, args := range [][]string{
			{"--ignore-stdin", "--check-status", a + "/services", "name=httpservice", "url=http://" + up},
			{"--ignore-stdin", "--check-status", a + "/services/httpservice/routes", "name=httpbinroute", `paths:=["/httpbin"]`},
		} {
			out, err := exec.Command(httpie, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("http %v: %v\n%s", args, err, out)
			}
		}
	} else {
		t.Logf("httpie is not installed (apt-get install httpie); creating the service with net/http")
		resp, err := http.PostForm(admin+"/services", url.Values{"name": {"httpservice"}, "url": {"http://" + up}})
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("POST /services: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	resp, err := http.PostForm(admin+"/services/httpservice/routes", url.Values{"name": {"r"}, "paths[]": {"/formpath"}})
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST route with a form body: %v %v", resp, err)
	}
	resp.Body.Close()

	// The proxy follows the store without a restart.
	var body []byte
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err = http.Get(proxy + "/formpath/get")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET /formpath/get: %d %s", resp.StatusCode, body)
	}
	if _, err := exec.LookPath("http"); err == nil {
		resp, err = http.Get(proxy + "/httpbin/get")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	var got struct {
		URI     string      `json:"uri"`
		Headers http.Header `json:"headers"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("upstream answer %q: %v", body, err)
	}
	if got.URI != "/get" {
		t.Errorf("upstream saw %q, want /get", got.URI)
	}
	for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Path", "X-Forwarded-Prefix", "X-Real-Ip", "Via", "X-Kong-Request-Id"} {
		if got.Headers.Get(h) == "" {
			t.Errorf("upstream request lacks %s: %v", h, got.Headers)
		}
	}
	for _, h := range []string{"Via", "X-Kong-Upstream-Latency", "X-Kong-Proxy-Latency", "X-Kong-Request-Id"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("client response lacks %s", h)
		}
	}
	resp, err = http.Get(status + "/status/ready")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/status/ready: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestGatewayRunDeclarative(t *testing.T) {
	up := upstreamEcho(t)
	file := apiConfigFile(t, "http://"+up+"/base")
	proxy, admin, _ := startGatewayCLI(t, "--database", "off", "--declarative-config", file)
	resp, err := http.Get(proxy + "/api/items")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"uri":"/base/items"`) {
		t.Fatalf("declarative route: %d %s", resp.StatusCode, body)
	}
	// DB-less: writes are refused as in Kong.
	resp, err = http.PostForm(admin+"/services", url.Values{"name": {"x"}, "url": {"http://" + up}})
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("write in DB-less mode: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestGatewayRunUsageErrors(t *testing.T) {
	expectUsageError(t, []string{"run", "--database", "sqlite", "--declarative-config", "x.yaml"}, "--declarative-config needs --database off")
	var stderr strings.Builder
	code := runProgram(context.Background(), []string{"run", "--database", "mysql"}, io.Discard, &stderr)
	if code == exitcode.OK || !strings.Contains(stderr.String(), "mysql") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

func TestGatewayRunUpstreamHealth(t *testing.T) {
	a, b := upstreamEcho(t), upstreamEcho(t)
	proxy, admin, _ := startGatewayCLI(t, "--database", "off")
	doc := `{"_format_version":"3.0","upstreams":[{"name":"backend","healthchecks":{"passive":{"unhealthy":{"http_failures":1}}},
	"targets":[{"target":"` + a + `"},{"target":"` + b + `"}]}],
	"services":[{"name":"s","host":"backend","routes":[{"paths":["/lb"]}]}]}`
	resp, err := http.Post(admin+"/config", "application/json", strings.NewReader(doc))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST /config: %v %v", resp, err)
	}
	resp.Body.Close()
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(get("/upstreams/backend/health"), `"health":"HEALTHY"`) {
		if time.Now().After(deadline) {
			t.Fatalf("health: %s", get("/upstreams/backend/health"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Mark target a unhealthy by hand: all traffic goes to b.
	req, _ := http.NewRequest(http.MethodPut, admin+"/upstreams/backend/targets/"+a+"/unhealthy", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode >= 300 {
		t.Fatalf("PUT unhealthy: %v %v", resp, err)
	}
	resp.Body.Close()
	if h := get("/upstreams/backend/health"); !strings.Contains(h, `"health":"UNHEALTHY"`) {
		t.Fatalf("after PUT unhealthy: %s", h)
	}
	for i := 0; i < 10; i++ {
		resp, err := http.Get(proxy + "/lb")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"host":"`+b+`"`) {
			t.Fatalf("request %d went to %s (%d), want only %s", i, body, resp.StatusCode, b)
		}
	}
}

func TestGatewayRunTrustedIPs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--trusted-ips", "10.0.0.0/8,10.0.0.300"}, `--trusted-ips: "10.0.0.300" is not an IP address or CIDR block`},
		{[]string{"--trusted-ips", "example.com"}, `--trusted-ips: "example.com"`},
		{[]string{"--real-ip-header", "proxy_protocol"}, "--real-ip-header proxy_protocol needs at least one --proxy-listen entry with the proxy_protocol flag"},
		{[]string{"--real-ip-recursive=maybe"}, `"maybe": use on or off`},
	} {
		expectUsageError(t, append([]string{"run", "--database", "off"}, tc.args...), tc.want)
	}

	// The flags (and their KILN_* variables, with Kong's on/off) reach the
	// proxy: this test's client, on 127.0.0.1, is a trusted peer.
	up := upstreamEcho(t)
	file := apiConfigFile(t, "http://"+up)
	t.Setenv("KILN_REAL_IP_RECURSIVE", "on")
	proxy, admin, _ := startGatewayCLI(t, "--database", "off", "--declarative-config", file,
		"--trusted-ips", "10.0.0.0/8,127.0.0.1,::1", "--real-ip-header", "X-Forwarded-For")
	var root struct {
		Configuration struct {
			TrustedIPs []string `json:"trusted_ips"`
			Header     string   `json:"real_ip_header"`
			Recursive  string   `json:"real_ip_recursive"`
		} `json:"configuration"`
	}
	resp, err := http.Get(admin + "/")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&root)
	resp.Body.Close()
	if c := root.Configuration; err != nil || strings.Join(c.TrustedIPs, ",") != "10.0.0.0/8,127.0.0.1,::1" ||
		c.Header != "X-Forwarded-For" || c.Recursive != "on" {
		t.Errorf("GET / configuration %+v (%v)", c, err)
	}
	req, err := http.NewRequest(http.MethodGet, proxy+"/api/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", "203.0.113.5, 10.0.0.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct {
		Headers http.Header `json:"headers"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("upstream answer %q: %v", body, err)
	}
	for k, want := range map[string]string{"X-Real-Ip": "203.0.113.5", "X-Forwarded-Proto": "https",
		"X-Forwarded-For": "203.0.113.5, 10.0.0.7, 127.0.0.1"} {
		if got.Headers.Get(k) != want {
			t.Errorf("upstream %s = %q, want %q", k, got.Headers.Get(k), want)
		}
	}
}

func TestGatewayRunEventLoops(t *testing.T) {
	expectUsageError(t, []string{"run", "--database", "off", "--event-loops", "-2"}, "--event-loops -2 is not valid")
	// Without loops (the variable), and with more loops than CPUs: the
	// proxy serves the same way.
	up := upstreamEcho(t)
	file := apiConfigFile(t, "http://"+up)
	for _, loops := range []string{"-1", "3"} {
		t.Run(loops, func(t *testing.T) {
			t.Setenv("KILN_EVENT_LOOPS", loops)
			proxy, _, _ := startGatewayCLI(t, "--database", "off", "--declarative-config", file)
			client := &http.Client{Timeout: 10 * time.Second}
			for i := 0; i < 20; i++ {
				resp, err := client.Get(proxy + "/api/x")
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Header.Get("Via") == "" {
					t.Fatalf("request %d: %d, Via %q", i, resp.StatusCode, resp.Header.Get("Via"))
				}
			}
		})
	}
}

func TestGatewayRunHeaders(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--headers", "Via, X-Kong-Latency"}, `--headers: invalid entry "X-Kong-Latency": use off or a comma-separated list of Server, Via`},
		{[]string{"--headers-upstream", "Via"}, `--headers-upstream: invalid entry "Via": use off or a comma-separated list of X-Kong-Request-Id`},
	} {
		expectUsageError(t, append([]string{"run", "--database", "off"}, tc.args...), tc.want)
	}

	// The flag and the KILN_* variable reach the proxy and the Admin API.
	up := upstreamEcho(t)
	file := apiConfigFile(t, "http://"+up)
	t.Setenv("KILN_HEADERS_UPSTREAM", "off")
	proxy, admin, _ := startGatewayCLI(t, "--database", "off", "--declarative-config", file, "--headers", "X-Kong-Upstream-Status")
	resp, err := http.Get(admin + "/")
	if err != nil {
		t.Fatal(err)
	}
	var root struct {
		Configuration struct {
			Headers         []string        `json:"headers"`
			Enabled         map[string]bool `json:"enabled_headers"`
			Upstream        []string        `json:"headers_upstream"`
			EnabledUpstream map[string]bool `json:"enabled_headers_upstream"`
		} `json:"configuration"`
	}
	err = json.NewDecoder(resp.Body).Decode(&root)
	resp.Body.Close()
	if c := root.Configuration; err != nil || strings.Join(c.Headers, ",") != "X-Kong-Upstream-Status" || !c.Enabled["X-Kong-Upstream-Status"] ||
		c.Enabled["Via"] || strings.Join(c.Upstream, ",") != "off" || c.EnabledUpstream["X-Kong-Request-Id"] {
		t.Errorf("GET / configuration %+v (%v)", c, err)
	}
	if resp.Header.Get("X-Kong-Admin-Latency") != "" || resp.Header.Get("Server") != "" {
		t.Errorf("Admin API headers %v, want no Server or X-Kong-Admin-Latency", resp.Header)
	}
	resp, err = http.Get(proxy + "/api/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("X-Kong-Upstream-Status") != "200" || resp.Header.Get("Via") != "" || resp.Header.Get("X-Kong-Request-Id") != "" {
		t.Errorf("proxied response headers %v", resp.Header)
	}
	var got struct {
		Headers http.Header `json:"headers"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("upstream answer %q: %v", body, err)
	}
	if id := got.Headers.Get("X-Kong-Request-Id"); id != "" {
		t.Errorf("upstream got X-Kong-Request-Id %q with --headers-upstream off", id)
	}
}

// TestGatewayRunLogLevel checks that the Admin API's
// /debug/node/log-level starts at -v's level and changes the node's.
func TestGatewayRunLogLevel(t *testing.T) {
	_, admin, _ := startGatewayCLI(t, "-v", "1", "--database", "sqlite", "--sqlite-path", filepath.Join(t.TempDir(), "kg.db"))
	for _, step := range []struct{ method, path, want string }{
		{"GET", "/debug/node/log-level", "log level: info"},
		{"PUT", "/debug/node/log-level/debug?timeout=30", "log level changed"},
		{"GET", "/debug/node/log-level", "log level: debug"},
	} {
		if code, msg := adminMessage(t, step.method, admin+step.path); code != http.StatusOK || msg != step.want {
			t.Fatalf("%s %s: %d %q, want 200 %q", step.method, step.path, code, msg, step.want)
		}
	}
}

// adminMessage sends a bodiless request to an Admin API URL and returns
// the status and the answer's "message".
func adminMessage(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Message string `json:"message"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body.Message
}

// TestGatewayRunGRPC serves a gRPC service from a declarative file (the
// service given as a grpc:// url, the route with Kong's grpc defaults) and
// calls it through the gateway with a grpc-go client.
func TestGatewayRunGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpcecho.NewServer()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	file := filepath.Join(t.TempDir(), "kong.yaml")
	doc := "_format_version: \"3.0\"\nservices:\n- name: echo\n  url: grpc://" + ln.Addr().String() +
		"\n  routes:\n  - name: echo\n    protocols: [grpc]\n    paths: [/kiln.test.Echo/]\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	proxy, _, _ := startGatewayCLI(t, "--database", "off", "--declarative-config", file)
	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(proxy, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, grpcecho.SayPath, wrapperspb.String("gateway"), out); err != nil || out.Value != "hello gateway" {
		t.Fatalf("a gRPC call through kiln gateway run: %q %v", out.GetValue(), err)
	}
}
