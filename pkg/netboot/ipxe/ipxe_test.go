package ipxe

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/netboot/binary"
)

var inv = &hardware.Inventory{Machines: []hardware.Machine{
	{Hostname: "cp-1", IPAddress: "10.77.0.11", MAC: "52:54:00:AA:00:01", VLANID: "42"},
	{Hostname: "wk-1", IPAddress: "10.77.0.12", MAC: "52:54:00:aa:00:02"},
}}

type deny string

func (d deny) NetbootAllowed(m hardware.Machine) bool { return m.Hostname != string(d) }

type rec []string

func (r *rec) Record(mac, ev string) { *r = append(*r, mac+" "+ev) }

func newScript(t *testing.T) *Script {
	t.Helper()
	s, err := NewScript(ScriptConfig{HTTPBase: "http://10.77.0.1:7080/", GRPCAuthority: "10.77.0.1:42113", SyslogIP: "10.77.0.1", ExtraKernelArgs: []string{"tink_worker_image=x"}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRender(t *testing.T) {
	s := newScript(t)
	m, _ := inv.ByHostname("cp-1")
	out, err := s.Render(m, "52:54:00:AA:00:01", time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	script := string(out)
	for _, want := range []string{
		"#!ipxe\n",
		"set syslog 10.77.0.1",
		"imgfetch --name kiln-started http://10.77.0.1:7080/ipxe/52:54:00:aa:00:01/started?arch=${arch}",
		"kernel --name kernel http://10.77.0.1:7080/hook/vmlinuz-${arch} worker_id=52:54:00:aa:00:01 hw_addr=52:54:00:aa:00:01 grpc_authority=10.77.0.1:42113 syslog_host=10.77.0.1 tinkerbell_tls=false tinkerbell_insecure_tls=false kiln_metadata_url=http://10.77.0.1:7080 vlan_id=42 console=tty0 console=ttyS0,115200 tink_worker_image=x initrd=initramfs-${arch}",
		"initrd --name initramfs-${arch} http://10.77.0.1:7080/hook/initramfs-${arch}",
		":kernel2\n", // two retries: three attempts
		"(attempt 3 of 3)",
		"boot ||",
		"exit 1\n",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, ":kernel3") || strings.Contains(script, "<no value>") {
		t.Errorf("bad script:\n%s", script)
	}
	// Every goto has its label.
	for _, line := range strings.Split(script, "\n") {
		if i := strings.Index(line, "goto "); i >= 0 {
			label := strings.Fields(line[i+5:])[0]
			if !strings.Contains(script, "\n:"+label+"\n") {
				t.Errorf("goto %s has no label", label)
			}
		}
	}
}

func TestNewScriptValidates(t *testing.T) {
	for _, c := range []ScriptConfig{
		{},
		{HTTPBase: "http://x", GRPCAuthority: "nohost"},
		{HTTPBase: "http://x", ExtraKernelArgs: []string{"a b"}},
	} {
		if _, err := NewScript(c); err == nil {
			t.Errorf("NewScript(%+v) accepted", c)
		}
	}
}

func TestHandler(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "ipxe.efi"), []byte("EFI-BINARY-CONTENT"), 0o644)
	bins, _, err := binary.Load(dir, []string{"ipxe.efi"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &rec{}
	h := &Handler{Script: newScript(t), Machines: inv, Policy: deny("wk-1"), Binaries: bins, Recorder: r, Log: testLog()}
	tests := []struct {
		name, method, path, remote, rangeHdr string
		code                                 int
		body                                 string
	}{
		{"script by mac", "GET", "/ipxe/52:54:00:aa:00:01/auto.ipxe", "10.9.9.9:1", "", 200, "worker_id=52:54:00:aa:00:01"},
		{"script by source ip", "GET", "/ipxe/auto/auto.ipxe", "10.77.0.11:1234", "", 200, "hw_addr=52:54:00:aa:00:01"},
		{"unknown mac", "GET", "/ipxe/52:54:00:ff:ff:ff/auto.ipxe", "10.9.9.9:1", "", 404, "no machine"},
		{"netboot disabled exits non-zero", "GET", "/ipxe/52:54:00:aa:00:02/auto.ipxe", "10.9.9.9:1", "", 200, "exit 1"},
		{"started marker", "GET", "/ipxe/52:54:00:aa:00:01/started?arch=x86_64", "10.9.9.9:1", "", 200, "#!ipxe"},
		{"binary", "GET", "/ipxe/binary/52:54:00:aa:00:01/ipxe.efi", "10.9.9.9:1", "", 200, "EFI-BINARY-CONTENT"},
		{"binary without mac", "GET", "/ipxe/binary/ipxe.efi", "10.9.9.9:1", "", 200, "EFI-BINARY-CONTENT"},
		{"binary range", "GET", "/ipxe/binary/ipxe.efi", "10.9.9.9:1", "bytes=4-9", 206, "BINARY"},
		{"binary head", "HEAD", "/ipxe/binary/ipxe.efi", "10.9.9.9:1", "", 200, ""},
		{"binary traversal", "GET", "/ipxe/binary/../../etc/passwd", "10.9.9.9:1", "", 404, ""},
		{"binary unknown", "GET", "/ipxe/binary/undionly.kpxe", "10.9.9.9:1", "", 404, ""},
		{"post refused", "POST", "/ipxe/binary/ipxe.efi", "10.9.9.9:1", "", 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			req.RemoteAddr = tc.remote
			if tc.rangeHdr != "" {
				req.Header.Set("Range", tc.rangeHdr)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.body) {
				t.Fatalf("%s %s = %d %q, want %d containing %q", tc.method, tc.path, w.Code, w.Body.String(), tc.code, tc.body)
			}
		})
	}
	// ETag: a conditional request gets 304.
	f, _ := bins.Get("ipxe.efi")
	req := httptest.NewRequest("GET", "/ipxe/binary/ipxe.efi", nil)
	req.Header.Set("If-None-Match", f.ETag)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match: got %d", w.Code)
	}
	joined := strings.Join(*r, "\n")
	for _, want := range []string{"52:54:00:aa:00:01 script", "52:54:00:aa:00:01 script started", "52:54:00:aa:00:02 script (netboot disabled)", "52:54:00:aa:00:01 http ipxe.efi"} {
		if !strings.Contains(joined, want) {
			t.Errorf("journal lacks %q: %s", want, joined)
		}
	}
}
