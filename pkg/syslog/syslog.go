// Package syslog receives syslog messages over UDP from netbooting machines
// (iPXE and the in-memory OS send there), tags each with the machine it came
// from and writes it to kiln's log.
package syslog

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/pkg/hardware"
)

// Machines finds the sender by IP; *hardware.Inventory implements it.
type Machines interface {
	ByIP(ip string) (hardware.Machine, bool)
}

// Observer is told about every message; nil is allowed.
type Observer interface {
	SyslogMessage(known bool)
}

// Message is one parsed syslog datagram.
type Message struct {
	Facility int    // -1 when the datagram had no <PRI>
	Severity int    // -1 when the datagram had no <PRI>
	App      string // tag / APP-NAME when recognisable
	Text     string
}

var severityNames = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// SeverityName is the keyword for a severity, "" when unknown.
func SeverityName(s int) string {
	if s >= 0 && s < len(severityNames) {
		return severityNames[s]
	}
	return ""
}

// Parse reads an RFC 3164 or RFC 5424 datagram leniently: whatever follows a
// valid <PRI> is kept as text, with an RFC 5424 header or a "tag:" prefix
// split off into App. Invalid UTF-8 is replaced.
func Parse(b []byte) Message {
	m := Message{Facility: -1, Severity: -1}
	b = bytes.TrimRight(b, "\r\n\x00")
	if len(b) > 2 && b[0] == '<' {
		if end := bytes.IndexByte(b[:min(len(b), 5)], '>'); end > 1 {
			if pri, err := strconv.Atoi(string(b[1:end])); err == nil && pri >= 0 && pri <= 191 {
				m.Facility, m.Severity = pri/8, pri%8
				b = b[end+1:]
			}
		}
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if m.Severity >= 0 && strings.HasPrefix(s, "1 ") {
		// RFC 5424: VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
		f := strings.SplitN(s, " ", 7)
		if len(f) == 7 {
			m.App = f[3]
			msg := f[6]
			if strings.HasPrefix(msg, "-") {
				msg = strings.TrimPrefix(strings.TrimPrefix(msg, "-"), " ")
			} else if strings.HasPrefix(msg, "[") {
				if i := strings.Index(msg, "] "); i >= 0 {
					msg = msg[i+2:]
				}
			}
			m.Text = strings.TrimPrefix(msg, "\uFEFF")
			return m
		}
	}
	// RFC 3164: optional "Mmm dd hh:mm:ss host " then "tag[pid]: text".
	if len(s) > 16 && s[3] == ' ' && s[6] == ' ' && s[9] == ':' && s[12] == ':' && s[15] == ' ' {
		s = s[16:]
		if i := strings.IndexByte(s, ' '); i > 0 && !strings.HasSuffix(s[:i], ":") {
			s = s[i+1:]
		}
	}
	if i := strings.Index(s, ": "); i > 0 && i < 48 && !strings.ContainsAny(s[:i], " \t") {
		m.App = s[:i]
		if j := strings.IndexByte(m.App, '['); j > 0 {
			m.App = m.App[:j]
		}
		s = s[i+2:]
	}
	m.Text = s
	return m
}

// Server receives syslog datagrams.
type Server struct {
	Machines Machines
	Observer Observer
	Log      *slog.Logger
	// Handle, when set, is called with every message after logging (the
	// lab uses it to follow a machine's boot).
	Handle func(from net.IP, m hardware.Machine, known bool, msg Message)
}

// Listen opens the syslog socket on addr (e.g. "10.0.0.1:514").
func Listen(addr string) (net.PacketConn, error) {
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for syslog on %s: %w", addr, err)
	}
	return c, nil
}

// Serve reads datagrams until ctx ends.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "syslog")
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	log.Info("syslog receiver listening", "addr", conn.LocalAddr())
	buf := make([]byte, 8192)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read syslog: %w", err)
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		msg := Parse(buf[:n])
		var m hardware.Machine
		known := false
		if s.Machines != nil {
			m, known = s.Machines.ByIP(ua.IP.String())
		}
		attrs := []any{"from", ua.IP.String(), "app", msg.App, "severity", SeverityName(msg.Severity), "text", msg.Text}
		if known {
			attrs = append([]any{"host", m.Hostname, "mac", strings.ToLower(m.MAC)}, attrs...)
		}
		level := slog.LevelInfo
		if msg.Severity >= 0 && msg.Severity <= 3 {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "machine log", attrs...)
		if s.Observer != nil {
			s.Observer.SyslogMessage(known)
		}
		if s.Handle != nil {
			s.Handle(ua.IP, m, known, msg)
		}
	}
}
