package agent

import (
	"net"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/syslog"
)

// TestSyslogWriterMatchesReceiver sends a log line over loopback UDP and
// parses it with kiln's syslog receiver parser.
func TestSyslogWriterMatchesReceiver(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w, err := DialSyslog(conn.LocalAddr().String(), "kiln-agent")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("level=INFO msg=\"image2disk: done\" action=stream\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := conn.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := syslog.Parse(buf[:n])
	if m.App != "kiln-agent" || m.Severity != 6 || m.Facility != 1 || m.Text != `level=INFO msg="image2disk: done" action=stream` {
		t.Fatalf("parsed %+v from %q", m, buf[:n])
	}
	if _, err := DialSyslog("10.0.0.1:notaport", "x"); err == nil {
		t.Error("bad syslog address accepted")
	}
}
