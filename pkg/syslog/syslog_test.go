package syslog

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kiln-dev/kiln/pkg/hardware"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		fac, sev int
		app      string
		text     string
	}{
		{"<30>Nov 21 19:00:01 hook docker[123]: pulling image", 3, 6, "docker", "pulling image"},
		{"<11>1 2026-11-21T19:00:01Z hook tink-agent 55 - - action failed", 1, 3, "tink-agent", "action failed"},
		{"<14>1 2026-11-21T19:00:01Z hook app - - [x@1 a=\"b\"] with sd", 1, 6, "app", "with sd"},
		{"<6>ipxe: DHCP ok", 0, 6, "ipxe", "DHCP ok"},
		{"no pri at all", -1, -1, "", "no pri at all"},
		{"<999>too big", -1, -1, "", "<999>too big"},
		{"<13>\xff\xfebad utf8\n", 1, 5, "", "\uFFFDbad utf8"},
	}
	for _, tc := range tests {
		m := Parse([]byte(tc.in))
		if m.Facility != tc.fac || m.Severity != tc.sev || m.App != tc.app || m.Text != tc.text {
			t.Errorf("Parse(%q) = %+v, want fac %d sev %d app %q text %q", tc.in, m, tc.fac, tc.sev, tc.app, tc.text)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"<30>Nov 21 19:00:01 hook docker[123]: x", "<11>1 2026-11-21T19:00:01Z h a 1 - - m", "", "<", "<1>"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := Parse(b)
		if !utf8.ValidString(m.Text) || !utf8.ValidString(m.App) {
			t.Fatalf("invalid UTF-8 out of %q", b)
		}
		if m.Severity < -1 || m.Severity > 7 {
			t.Fatalf("severity %d", m.Severity)
		}
	})
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestServerTagsMachine(t *testing.T) {
	inv := &hardware.Inventory{Machines: []hardware.Machine{{Hostname: "cp-1", IPAddress: "127.0.0.1", MAC: "52:54:00:AA:00:01"}}}
	var buf syncBuf
	got := make(chan Message, 1)
	s := &Server{Machines: inv, Log: slog.New(slog.NewTextHandler(&buf, nil)), Handle: func(_ net.IP, m hardware.Machine, known bool, msg Message) {
		if known && m.Hostname == "cp-1" {
			got <- msg
		}
	}}
	conn, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	c, err := net.Dial("udp4", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("<30>Nov 21 19:00:01 hook docker[1]: hello from hook"))
	select {
	case m := <-got:
		if m.Text != "hello from hook" {
			t.Fatalf("got %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "host=cp-1") || !strings.Contains(out, "mac=52:54:00:aa:00:01") || !strings.Contains(out, `text="hello from hook"`) {
		t.Fatalf("log line not tagged: %s", out)
	}
}
