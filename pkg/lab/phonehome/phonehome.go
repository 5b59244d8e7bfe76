// Package phonehome records the reports provisioned machines send to kiln
// when their installed OS has booted ("phone home"): an HTTP handler kiln's
// HTTP server mounts at Path, an in-memory list, and an optional JSON-lines
// file that other kiln processes (kiln lab status) read.
package phonehome

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Path is where kiln's HTTP server mounts the handler.
const Path = "/phone-home"

// Report is one phone-home.
type Report struct {
	Hostname      string  `json:"hostname"`
	IP            string  `json:"ip"`
	MAC           string  `json:"mac,omitempty"`
	Boot          int     `json:"boot,omitempty"`
	UptimeSeconds float64 `json:"uptimeSeconds,omitempty"`
	Kernel        string  `json:"kernel,omitempty"`
	// RemoteIP is the source address the report came from.
	RemoteIP   string    `json:"remoteIP"`
	ReceivedAt time.Time `json:"receivedAt"`
}

const maxBody = 16 << 10

// ParseReport decodes and checks a phone-home body.
func ParseReport(body []byte) (Report, error) {
	var r Report
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&r); err != nil {
		return Report{}, fmt.Errorf("the phone-home body is not a JSON object: %w", err)
	}
	r.Hostname = strings.TrimSpace(r.Hostname)
	if r.Hostname == "" || len(r.Hostname) > 253 || strings.ContainsAny(r.Hostname, " \t\r\n/") {
		return Report{}, fmt.Errorf("hostname %q is not a host name", r.Hostname)
	}
	if r.IP != "" && net.ParseIP(r.IP) == nil {
		return Report{}, fmt.Errorf("ip %q is not an IP address", r.IP)
	}
	if r.MAC != "" {
		hw, err := net.ParseMAC(r.MAC)
		if err != nil {
			return Report{}, fmt.Errorf("mac %q is not a MAC address", r.MAC)
		}
		r.MAC = hw.String()
	}
	if r.Boot < 0 || r.UptimeSeconds < 0 {
		return Report{}, errors.New("boot and uptimeSeconds must not be negative")
	}
	if len(r.Kernel) > 256 {
		return Report{}, errors.New("kernel is longer than 256 characters")
	}
	r.RemoteIP, r.ReceivedAt = "", time.Time{}
	return r, nil
}

// Store keeps the reports.
type Store struct {
	path string
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	reports []Report
	changed chan struct{}
}

// NewStore returns a store; when path is not empty, existing reports are
// loaded from it and new ones appended. log may be nil.
func NewStore(path string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{path: path, log: log, now: time.Now, changed: make(chan struct{})}
	if path != "" {
		rs, err := ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		s.reports = rs
	}
	return s, nil
}

// ReadFile reads the reports a Store appended to path.
func ReadFile(path string) ([]Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("phone-home records: %w", err)
	}
	defer f.Close()
	var out []Report
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r Report
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return out, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// Add records r.
func (s *Store) Add(r Report) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path != "" {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(s.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("record phone-home: %w", err)
		}
		_, err = f.Write(append(b, '\n'))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("record phone-home in %s: %w", s.path, err)
		}
	}
	s.reports = append(s.reports, r)
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// Reports returns every report, oldest first.
func (s *Store) Reports() []Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Report(nil), s.reports...)
}

// Latest returns the newest report per host name.
func Latest(rs []Report) map[string]Report {
	m := map[string]Report{}
	for _, r := range rs {
		m[r.Hostname] = r
	}
	return m
}

// Wait blocks until a report satisfying match has arrived (including one
// received before the call) and returns it.
func (s *Store) Wait(ctx context.Context, match func(Report) bool) (Report, error) {
	seen := 0
	for {
		s.mu.Lock()
		rs := s.reports[seen:]
		ch := s.changed
		seen = len(s.reports)
		s.mu.Unlock()
		for _, r := range rs {
			if match(r) {
				return r, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Report{}, fmt.Errorf("waiting for a phone-home: %w", ctx.Err())
		}
	}
}

// ServeHTTP records a POSTed report and lists the reports on GET.
func (s *Store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Reports())
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "use POST to phone home", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "the phone-home body is missing or larger than 16 KiB", http.StatusBadRequest)
		return
	}
	rep, err := ParseReport(body)
	if err != nil {
		s.log.Warn("rejected a phone-home", "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		rep.RemoteIP = host
	}
	rep.ReceivedAt = s.now().UTC()
	if err := s.Add(rep); err != nil {
		s.log.Error("recording a phone-home failed", "err", err)
		http.Error(w, "kiln could not record the phone-home", http.StatusInternalServerError)
		return
	}
	s.log.Info("machine phoned home", "hostname", rep.Hostname, "ip", rep.IP, "mac", rep.MAC, "boot", rep.Boot)
	w.WriteHeader(http.StatusNoContent)
}
