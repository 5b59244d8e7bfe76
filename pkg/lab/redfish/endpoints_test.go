package redfish_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/lab/redfish"
	"github.com/kiln-dev/kiln/pkg/lab/redfish/redfishtest"
)

func startTLS(t *testing.T, sys redfish.System) (*redfish.Server, *http.Client) {
	t.Helper()
	srv := redfishtest.Serve(t, redfish.Config{ID: "vm-7", Name: "node7", Username: "root", Password: "pw", System: sys})
	// Verify the certificate: it must be valid for the listener's IP.
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.RootCAs}}}
	return srv, cl
}

func TestEndpoints(t *testing.T) {
	sys := redfishtest.New()
	srv, cl := startTLS(t, sys)
	base := "https://" + srv.Addr

	do := func(method, path, body string, hdr map[string]string) (*http.Response, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp, m
	}
	basic := map[string]string{"Authorization": "Basic cm9vdDpwdw=="} // root:pw
	wrong := map[string]string{"Authorization": "Basic cm9vdDp4"}     // root:x

	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
	}{
		{"root is public", "GET", "/redfish/v1/", "", nil, 200},
		{"root without slash", "GET", "/redfish/v1", "", nil, 200},
		{"systems need auth", "GET", "/redfish/v1/Systems", "", nil, 401},
		{"wrong password", "GET", "/redfish/v1/Systems", "", wrong, 401},
		{"systems with basic auth", "GET", "/redfish/v1/Systems", "", basic, 200},
		{"system", "GET", "/redfish/v1/Systems/vm-7", "", basic, 200},
		{"system with trailing slash", "GET", "/redfish/v1/Systems/vm-7/", "", basic, 200},
		{"unknown system", "GET", "/redfish/v1/Systems/1", "", basic, 404},
		{"reset", "POST", "/redfish/v1/Systems/vm-7/Actions/ComputerSystem.Reset", `{"ResetType":"ForceOff"}`, basic, 204},
		{"unknown reset type", "POST", "/redfish/v1/Systems/vm-7/Actions/ComputerSystem.Reset", `{"ResetType":"Explode"}`, basic, 400},
		{"reset with bad json", "POST", "/redfish/v1/Systems/vm-7/Actions/ComputerSystem.Reset", `{`, basic, 400},
		{"boot override", "PATCH", "/redfish/v1/Systems/vm-7", `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}`, basic, 204},
		{"bad boot target", "PATCH", "/redfish/v1/Systems/vm-7", `{"Boot":{"BootSourceOverrideTarget":"Floppy"}}`, basic, 400},
		{"patch without Boot", "PATCH", "/redfish/v1/Systems/vm-7", `{"AssetTag":"x"}`, basic, 400},
		{"session with wrong password", "POST", "/redfish/v1/SessionService/Sessions", `{"UserName":"root","Password":"x"}`, nil, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(tc.method, tc.path, tc.body, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s = %d %v; want %d", tc.method, tc.path, resp.StatusCode, body, tc.status)
			}
			if tc.status >= 400 {
				if _, ok := body["error"]; !ok {
					t.Fatalf("error response without a Redfish error body: %v", body)
				}
			}
		})
	}
	if boot, _ := sys.BootOverride(context.Background()); boot != (redfish.BootOverride{Target: redfish.TargetPxe, Enabled: redfish.EnabledOnce, Mode: redfish.ModeLegacy}) {
		t.Fatalf("boot override = %+v; want Pxe/Once with the mode kept", boot)
	}
	if r := sys.Resets(); len(r) != 1 || r[0] != redfish.ResetForceOff {
		t.Fatalf("resets = %v; want [ForceOff]", r)
	}

	// The system document carries what gofish reads.
	_, body := do("GET", "/redfish/v1/Systems/vm-7", "", basic)
	actions := body["Actions"].(map[string]any)["#ComputerSystem.Reset"].(map[string]any)
	if actions["target"] != "/redfish/v1/Systems/vm-7/Actions/ComputerSystem.Reset" || body["PowerState"] != "Off" {
		t.Fatalf("system document = %v", body)
	}

	// Sessions: create, use, delete, then the token no longer works.
	resp, _ := do("POST", "/redfish/v1/SessionService/Sessions", `{"UserName":"root","Password":"pw"}`, nil)
	tok, loc := resp.Header.Get("X-Auth-Token"), resp.Header.Get("Location")
	if resp.StatusCode != 201 || tok == "" || !strings.HasPrefix(loc, "/redfish/v1/SessionService/Sessions/") {
		t.Fatalf("create session = %d token=%q location=%q", resp.StatusCode, tok, loc)
	}
	withTok := map[string]string{"X-Auth-Token": tok}
	if resp, _ := do("GET", "/redfish/v1/Systems", "", withTok); resp.StatusCode != 200 {
		t.Fatalf("GET with session token = %d", resp.StatusCode)
	}
	if resp, _ := do("DELETE", loc, "", withTok); resp.StatusCode != 204 {
		t.Fatalf("DELETE session = %d", resp.StatusCode)
	}
	if resp, _ := do("GET", "/redfish/v1/Systems", "", withTok); resp.StatusCode != 401 {
		t.Fatalf("GET with a deleted session = %d; want 401", resp.StatusCode)
	}

	// A failing system is a 500 whose message says what failed.
	sys.Fail(errors.New("qemu is gone"))
	resp, body = do("POST", "/redfish/v1/Systems/vm-7/Actions/ComputerSystem.Reset", `{"ResetType":"On"}`, basic)
	if resp.StatusCode != 500 || !strings.Contains(body["error"].(map[string]any)["message"].(string), "qemu is gone") {
		t.Fatalf("failing reset = %d %v", resp.StatusCode, body)
	}
}

func TestNewHandlerValidates(t *testing.T) {
	for _, cfg := range []redfish.Config{
		{Name: "x", Username: "u", Password: "p"},
		{Name: "x", System: redfishtest.New(), Username: "u"},
		{Name: "x", System: redfishtest.New(), Username: "u", Password: "p", ID: "a/b"},
	} {
		if _, err := redfish.NewHandler(cfg); err == nil {
			t.Errorf("NewHandler(%+v) accepted an invalid config", cfg)
		}
	}
}
