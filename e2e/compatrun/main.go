// Command compatrun runs go-kong's published integration tests
// (github.com/kong/go-kong/kong at the version pinned by the separate module
// in e2e/kongcompat) against a kiln gateway, once per storage mode (SQLite,
// PostgreSQL, DB-less), and checks the number of passing tests against the
// floors in e2e/kongcompat/floors.txt. Run it from the repository root.
//
// go-kong's tests are not copied: the test binary is built from the module
// cache with `go test -c` inside e2e/kongcompat. Each test runs in its own process (a go-kong test
// that fails half-way can panic in its cleanup and would otherwise take the
// remaining tests down with it), and the gateway is emptied through the
// Admin API between tests so one failure does not cascade into the next.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/store/pgtest"
)

type result struct {
	Mode    string
	Pass    int
	Fail    int
	Skip    int
	Failed  []string
	Elapsed time.Duration
}

func main() {
	kiln := flag.String("kiln", "bin/kiln", "kiln binary to test")
	moduleDir := flag.String("module", "e2e/kongcompat", "directory of the Go module that pins go-kong")
	modes := flag.String("modes", "sqlite,postgres,off", "storage modes to run: sqlite, postgres, off")
	floors := flag.String("floors", "e2e/kongcompat/floors.txt", "file with the minimum passing count per mode")
	run := flag.String("run", "", "only run go-kong tests matching this regexp")
	verbose := flag.Bool("v", false, "print every test's result")
	multiNode := flag.Bool("multinode", true, "also check that two nodes sharing PostgreSQL see each other's Admin API writes")
	flag.Parse()
	if err := mainErr(*kiln, *moduleDir, strings.Split(*modes, ","), *floors, *run, *verbose, *multiNode); err != nil {
		fmt.Fprintln(os.Stderr, "✗", err)
		os.Exit(1)
	}
}

func mainErr(kiln, moduleDir string, modes []string, floorsFile, run string, verbose, multiNode bool) error {
	kilnAbs, err := filepath.Abs(kiln)
	if err != nil {
		return err
	}
	if _, err := os.Stat(kilnAbs); err != nil {
		return fmt.Errorf("kiln binary %s: %w (run `make build` first)", kiln, err)
	}
	work, err := os.MkdirTemp("", "kiln-kongcompat-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	start := time.Now()
	bin := filepath.Join(work, "gokong.test")
	build := exec.Command("go", "test", "-c", "-o", bin, "github.com/kong/go-kong/kong")
	build.Dir = moduleDir
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build go-kong's test binary: %w", err)
	}
	locate := exec.Command("go", "list", "-f", "{{.Dir}}", "github.com/kong/go-kong/kong")
	locate.Dir = moduleDir
	dir, err := locate.Output()
	if err != nil {
		return fmt.Errorf("locate go-kong's package directory: %w", err)
	}
	pkgDir := strings.TrimSpace(string(dir))
	fmt.Printf("✓ built go-kong test binary (%s)\n", time.Since(start).Round(time.Millisecond))
	list, err := exec.Command(bin, "-test.list", ".*").Output()
	if err != nil {
		return fmt.Errorf("list go-kong tests: %w", err)
	}
	var tests []string
	for _, name := range strings.Fields(string(list)) {
		if strings.HasPrefix(name, "Test") {
			tests = append(tests, name)
		}
	}
	if run != "" {
		tests = filterTests(bin, run)
	}
	floors, err := readFloors(floorsFile)
	if err != nil {
		return err
	}
	var results []result
	for _, mode := range modes {
		r, err := runMode(kilnAbs, bin, pkgDir, work, mode, tests, verbose)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		results = append(results, r)
	}
	fmt.Printf("\n| mode | pass | fail | skip | total | time |\n|---|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		fmt.Printf("| %s | %d | %d | %d | %d | %s |\n", r.Mode, r.Pass, r.Fail, r.Skip, r.Pass+r.Fail+r.Skip, r.Elapsed.Round(time.Second))
	}
	var below []string
	for _, r := range results {
		sort.Strings(r.Failed)
		fmt.Printf("\nfailed in %s (%d): %s\n", r.Mode, len(r.Failed), strings.Join(r.Failed, " "))
		if f, ok := floors[r.Mode]; ok && run == "" && r.Pass < f {
			below = append(below, fmt.Sprintf("%s: %d passed, floor is %d", r.Mode, r.Pass, f))
		}
	}
	if len(below) > 0 {
		return fmt.Errorf("go-kong compatibility regressed: %s", strings.Join(below, "; "))
	}
	if multiNode {
		if err := checkMultiNode(kilnAbs, work); err != nil {
			return fmt.Errorf("two nodes on one PostgreSQL: %w", err)
		}
	}
	fmt.Printf("\n✓ go-kong compatibility at or above the floors in %s (%s)\n", floorsFile, time.Since(start).Round(time.Second))
	return nil
}

func filterTests(bin, run string) []string {
	out, _ := exec.Command(bin, "-test.list", run).Output()
	return strings.Fields(string(out))
}

// readFloors reads "mode count" lines.
func readFloors(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read floors: %w", err)
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		parts := strings.Fields(text)
		n, err := strconv.Atoi(parts[len(parts)-1])
		if len(parts) != 2 || err != nil {
			return nil, fmt.Errorf("%s:%d: expected \"<mode> <passing count>\", got %q", path, line, text)
		}
		out[parts[0]] = n
	}
	return out, sc.Err()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// node is a running `kiln gateway run`.
type node struct {
	admin, proxy string
	stop         func()
}

// startNode starts kiln with the storage arguments and waits for its Admin API.
func startNode(kiln, work, name string, storeArgs []string) (*node, error) {
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	proxyPort, err := freePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"gateway", "run",
		"--admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort),
		"--proxy-listen", fmt.Sprintf("127.0.0.1:%d", proxyPort),
		"--status-listen", "off", "--proxy-access-log", "off"}, storeArgs...)
	logPath := filepath.Join(work, "kiln-"+name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(kiln, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start kiln: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	n := &node{admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort), proxy: fmt.Sprintf("http://127.0.0.1:%d", proxyPort)}
	n.stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	}
	if err := waitReady(n.admin, done, logPath); err != nil {
		n.stop()
		return nil, err
	}
	return n, nil
}

func pgArgs(pg *pgtest.Server, db string) []string {
	return []string{"--database", "postgres", "--pg-host", pg.SocketDir(), "--pg-port", "5432", "--pg-user", "postgres", "--pg-database", db}
}

func runMode(kiln, bin, pkgDir, work, mode string, tests []string, verbose bool) (result, error) {
	res := result{Mode: mode}
	start := time.Now()
	ctx := context.Background()
	var storeArgs []string
	switch mode {
	case "sqlite":
		storeArgs = []string{"--database", "sqlite", "--sqlite-path", filepath.Join(work, "kiln.db")}
	case "postgres":
		pg, err := pgtest.Start(ctx)
		if err != nil {
			return res, err
		}
		defer pg.Stop()
		if _, err := pg.CreateDB(ctx, "kong"); err != nil {
			return res, err
		}
		storeArgs = pgArgs(pg, "kong")
	case "off":
		storeArgs = []string{"--database", "off"}
	default:
		return res, fmt.Errorf("unknown mode %q (want sqlite, postgres or off)", mode)
	}
	n, err := startNode(kiln, work, mode, storeArgs)
	if err != nil {
		return res, err
	}
	defer n.stop()
	admin := n.admin
	fmt.Printf("✓ kiln gateway run --database %s: Admin API at %s\n", mode, admin)
	for _, name := range tests {
		status := runOne(bin, pkgDir, admin, name)
		switch status {
		case "PASS":
			res.Pass++
		case "SKIP":
			res.Skip++
		default:
			res.Fail++
			res.Failed = append(res.Failed, name)
		}
		if verbose {
			fmt.Printf("  %s %s\n", status, name)
		}
		if mode != "off" {
			if err := reset(admin); err != nil {
				return res, fmt.Errorf("empty the gateway after %s: %w", name, err)
			}
		}
	}
	res.Elapsed = time.Since(start)
	fmt.Printf("✓ %s: %d pass, %d fail, %d skip (%s)\n", mode, res.Pass, res.Fail, res.Skip, res.Elapsed.Round(time.Second))
	return res, nil
}

func waitReady(admin string, done <-chan error, logPath string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("kiln exited before serving the Admin API: %v\n%s", err, log)
		default:
		}
		res, err := http.Get(admin + "/")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("kiln's Admin API did not answer within 30s")
}

// runOne runs one go-kong test in its own process and returns PASS, SKIP
// or FAIL.
func runOne(bin, pkgDir, admin, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run", "^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "KONG_ADMIN_URL="+admin)
	cmd.Dir = pkgDir // go test runs a package's tests in its directory (testdata/)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := out.String()
	switch {
	case err == nil && strings.Contains(text, "--- SKIP: "+name+" "):
		return "SKIP"
	case err == nil && strings.Contains(text, "--- PASS: "+name+" "):
		return "PASS"
	}
	return "FAIL"
}

// reset deletes every entity through the Admin API, children first.
func reset(admin string) error {
	for _, coll := range []string{"plugins", "key-auths", "basic-auths", "acls", "routes", "services", "upstreams", "consumers", "snis", "certificates", "ca_certificates", "keys", "key-sets"} {
		for i := 0; i < 20; i++ {
			res, err := http.Get(admin + "/" + coll + "?size=1000")
			if err != nil {
				return err
			}
			var page struct {
				Data []struct {
					ID string `json:"id"`
				} `json:"data"`
			}
			err = json.NewDecoder(res.Body).Decode(&page)
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if err != nil || len(page.Data) == 0 {
				break
			}
			for _, e := range page.Data {
				req, _ := http.NewRequest(http.MethodDelete, admin+"/"+coll+"/"+e.ID, nil)
				if r, err := http.DefaultClient.Do(req); err == nil {
					r.Body.Close()
				}
			}
		}
	}
	return nil
}

// checkMultiNode starts two gateway nodes on one PostgreSQL database,
// configures a service and route through node A's Admin API and waits for
// node B's proxy to route it, then moves the route and waits again: the
// change must reach the other node's proxy without a restart.
func checkMultiNode(kiln, work string) error {
	ctx := context.Background()
	pg, err := pgtest.Start(ctx)
	if err != nil {
		return err
	}
	defer pg.Stop()
	if _, err := pg.CreateDB(ctx, "shared"); err != nil {
		return err
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "upstream saw "+r.URL.Path)
	}))
	defer upstream.Close()
	a, err := startNode(kiln, work, "node-a", pgArgs(pg, "shared"))
	if err != nil {
		return err
	}
	defer a.stop()
	b, err := startNode(kiln, work, "node-b", pgArgs(pg, "shared"))
	if err != nil {
		return err
	}
	defer b.stop()
	for _, call := range []struct{ method, path, body string }{
		{http.MethodPost, "/services", `{"name":"shared","url":"` + upstream.URL + `"}`},
		{http.MethodPost, "/services/shared/routes", `{"name":"r","paths":["/one"]}`},
	} {
		if err := adminCall(a.admin, call.method, call.path, call.body); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := waitStatus(b.proxy+"/one/x", http.StatusOK); err != nil {
		return fmt.Errorf("node B never routed the route created on node A: %w", err)
	}
	first := time.Since(start)
	if err := adminCall(a.admin, http.MethodPatch, "/routes/r", `{"paths":["/two"]}`); err != nil {
		return err
	}
	start = time.Now()
	if err := waitStatus(b.proxy+"/one/x", http.StatusNotFound); err != nil {
		return fmt.Errorf("node B kept the old route: %w", err)
	}
	if err := waitStatus(b.proxy+"/two/x", http.StatusOK); err != nil {
		return fmt.Errorf("node B never routed the moved route: %w", err)
	}
	fmt.Printf("✓ two nodes on one PostgreSQL: a route created on node A was proxied by node B after %s, a change after %s\n",
		first.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return nil
}

func adminCall(admin, method, path, body string) error {
	req, err := http.NewRequest(method, admin+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		msg, _ := io.ReadAll(res.Body)
		return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, msg)
	}
	return nil
}

func waitStatus(url string, want int) error {
	deadline := time.Now().Add(15 * time.Second)
	last := 0
	for time.Now().Before(deadline) {
		res, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			last = res.StatusCode
			if last == want {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("GET %s: status %d after 15s, want %d", url, last, want)
}
