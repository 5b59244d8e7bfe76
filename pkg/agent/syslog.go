package agent

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// SyslogWriter sends each Write as one RFC 5424 syslog message over UDP
// (facility user, severity info), the way Hook's containers reach the
// syslog_host receiver. Delivery is best effort: errors are not returned, so
// a missing receiver never stalls the agent.
type SyslogWriter struct {
	conn     net.Conn
	hostname string
	app      string
}

// DialSyslog connects to host (port 514 unless given).
func DialSyslog(host, app string) (*SyslogWriter, error) {
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "514")
	}
	conn, err := net.Dial("udp", host)
	if err != nil {
		return nil, fmt.Errorf("syslog_host %s: %w", host, err)
	}
	hn, _ := os.Hostname()
	if hn == "" {
		hn = "-"
	}
	return &SyslogWriter{conn: conn, hostname: hn, app: app}, nil
}

// Write implements io.Writer.
func (s *SyslogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimRight(string(p), "\n")
	const pri = 1*8 + 6 // user.info
	line := fmt.Sprintf("<%d>1 %s %s %s %d - - %s", pri, time.Now().UTC().Format(time.RFC3339Nano), s.hostname, s.app, os.Getpid(), msg)
	_, _ = s.conn.Write([]byte(line))
	return len(p), nil
}

// Close closes the socket.
func (s *SyslogWriter) Close() error { return s.conn.Close() }

var _ io.WriteCloser = (*SyslogWriter)(nil)
