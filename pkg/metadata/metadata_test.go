package metadata

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/hardware"
)

func TestHandler(t *testing.T) {
	inv := &hardware.Inventory{Machines: []hardware.Machine{{Hostname: "cp-1", IPAddress: "10.77.0.11", MAC: "52:54:00:AA:00:01"}}}
	h := &Handler{Machines: inv, Source: Static{Data: []byte("#cloud-config\n"), Keys: []string{"ssh-ed25519 AAAA kiln@admin"}}}
	tests := []struct {
		path, remote string
		code         int
		body         string
	}{
		{"/2009-04-04/meta-data/instance-id", "10.77.0.11:40000", 200, "52:54:00:aa:00:01"},
		{"/2009-04-04/meta-data/hostname", "10.77.0.11:40000", 200, "cp-1"},
		{"/2009-04-04/meta-data/local-hostname", "10.77.0.11:40000", 200, "cp-1"},
		{"/2009-04-04/meta-data/local-ipv4", "10.77.0.11:40000", 200, "10.77.0.11"},
		{"/2009-04-04/meta-data/", "10.77.0.11:40000", 200, "hostname\ninstance-id\nlocal-hostname\nlocal-ipv4\npublic-keys/"},
		{"/2009-04-04/meta-data/public-keys", "10.77.0.11:40000", 200, "0=kiln-0"},
		{"/2009-04-04/meta-data/public-keys/0/", "10.77.0.11:40000", 200, "openssh-key"},
		{"/2009-04-04/meta-data/public-keys/0/openssh-key", "10.77.0.11:40000", 200, "ssh-ed25519 AAAA kiln@admin"},
		{"/2009-04-04/meta-data/public-keys/1/openssh-key", "10.77.0.11:40000", 404, ""},
		{"/2009-04-04/meta-data/public-keys/00/openssh-key", "10.77.0.11:40000", 404, ""},
		{"/2009-04-04/user-data", "10.77.0.11:40000", 200, "#cloud-config\n"},
		{"/2009-04-04/", "10.77.0.11:40000", 200, "meta-data\nuser-data"},
		{"/2009-04-04/meta-data/nothing", "10.77.0.11:40000", 404, ""},
		{"/2009-04-04/meta-data/hostname", "10.77.0.99:40000", 404, "no machine in the inventory has address 10.77.0.99"},
	}
	for _, tc := range tests {
		req := httptest.NewRequest("GET", tc.path, nil)
		req.RemoteAddr = tc.remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tc.code || (w.Code == 200 && w.Body.String() != tc.body) || (w.Code != 200 && !strings.Contains(w.Body.String(), tc.body)) {
			t.Errorf("GET %s from %s = %d %q, want %d %q", tc.path, tc.remote, w.Code, w.Body.String(), tc.code, tc.body)
		}
	}
	// No source: no user-data.
	h2 := &Handler{Machines: inv}
	req := httptest.NewRequest("GET", "/2009-04-04/user-data", nil)
	req.RemoteAddr = "10.77.0.11:1"
	w := httptest.NewRecorder()
	h2.ServeHTTP(w, req)
	if w.Code != 404 {
		t.Errorf("user-data without a source: %d", w.Code)
	}
}
