package ipmi

import (
	"net"
	"testing"

	"github.com/kiln-dev/kiln/pkg/lab/redfish/redfishtest"
)

const (
	testUser     = "admin"
	testPassword = "s3cret-lab-pass"
)

// startBMC serves a BMC backed by a fresh fake system on an ephemeral
// loopback UDP port.
func startBMC(t testing.TB) (*Server, *redfishtest.System) {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sys := redfishtest.New()
	srv, err := Serve(conn, Config{Name: "m1", Username: testUser, Password: testPassword, System: sys})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, sys
}
