package plugins

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseHMACAuthorization(t *testing.T) {
	cases := []struct {
		in   string
		ok   bool
		want hmacParams
	}{
		{`hmac username="bob", algorithm="hmac-sha256", headers="date request-line", signature="c2ln"`, true,
			hmacParams{username: "bob", algorithm: "hmac-sha256", headers: []string{"date", "request-line"}, signature: "c2ln"}},
		{`Hmac username="a b",algorithm="hmac-sha1",headers="x",signature="s"`, true,
			hmacParams{username: "a b", algorithm: "hmac-sha1", headers: []string{"x"}, signature: "s"}},
		{`Basic Zm9vOmJhcg==`, false, hmacParams{}},
		{`hmac username="bob", algorithm="hmac-sha256", signature="c2ln"`, false, hmacParams{}},
		{``, false, hmacParams{}},
	}
	for _, c := range cases {
		got, ok := parseHMACAuthorization(c.in)
		if ok != c.ok || got.username != c.want.username || got.algorithm != c.want.algorithm || got.signature != c.want.signature ||
			strings.Join(got.headers, "|") != strings.Join(c.want.headers, "|") {
			t.Errorf("%q → %+v %v, want %+v %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestParseJWT(t *testing.T) {
	const hdr = "eyJhbGciOiJIUzI1NiJ9" // {"alg":"HS256"}
	cases := []struct {
		in, err string
	}{
		{hdr + ".eyJpc3MiOiJ4In0.c2ln", ""},
		{hdr + ".eyJpc3MiOiJ4In0", "invalid JSON"},
		{"a.b.c", "invalid JSON"},
		{"eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.", "invalid alg"}, // alg none
		{hdr + ".WzFd.c2ln", "invalid claims"},                  // claims [1]
		{hdr + ".eyJpc3MiOiJ4In0.!!!", "invalid JSON"},
	}
	for _, c := range cases {
		_, err := parseJWT(c.in)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.err {
			t.Errorf("%q → %q, want %q", c.in, got, c.err)
		}
	}
}

func FuzzParseJWT(f *testing.F) {
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln")
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjF9.AAAA")
	f.Add("..")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := parseJWT(s)
		if err != nil {
			return
		}
		if tok.header == nil || tok.claims == nil || !jwtAlgs[tok.alg] {
			t.Fatalf("accepted %q without header, claims or a known alg", s)
		}
		// Verification of garbage must fail without panicking.
		if tok.verify([]byte("k")) && tok.alg[:2] != "HS" {
			t.Fatalf("%q verified without a key", s)
		}
		tok.verifyClaims([]string{"exp", "nbf"}, 1e9)
	})
}

func FuzzParseHMACAuthorization(f *testing.F) {
	f.Add(`hmac username="bob", algorithm="hmac-sha256", headers="date request-line", signature="c2ln"`)
	f.Add(`Hmac username="",algorithm="",headers="",signature=""`)
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := parseHMACAuthorization(s)
		if !ok {
			return
		}
		if p.username == "" || p.algorithm == "" || p.signature == "" || len(p.headers) == 0 {
			t.Fatalf("%q parsed to %+v", s, p)
		}
		if !strings.Contains(s, `username="`+p.username+`"`) {
			t.Fatalf("%q: username %q is not in the input", s, p.username)
		}
	})
}

// bearerRE is Kong's pattern, the oracle for bearerToken.
var bearerRE = regexp.MustCompile(`\s*[Bb]earer\s+(.+)`)

func checkBearer(t *testing.T, v string) {
	got, ok := bearerToken(v)
	m := bearerRE.FindStringSubmatch(v)
	if ok != (m != nil) || (m != nil && got != m[1]) {
		t.Fatalf("%q: bearerToken %q %v, regexp %q", v, got, ok, m)
	}
}

func TestBearerToken(t *testing.T) {
	for _, v := range []string{"Bearer abc", "bearer  abc def", "Bearerabc", "Basic x, Bearer y", "Bearer ", "Bearer   ",
		"xBearer\tT", "Bearer \n", "Bearer \nx", "Bearer x\ny", "BEARER x", "Bearerx bearer y", ""} {
		checkBearer(t, v)
	}
}

func FuzzBearerToken(f *testing.F) {
	f.Add("Bearer abc")
	f.Add("bearer \n x")
	f.Fuzz(func(t *testing.T, v string) { checkBearer(t, v) })
}

func TestLogQueue(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Run("batches and exits when drained", func(t *testing.T) {
		var mu sync.Mutex
		var batches [][][]byte
		q := newLogQueue(queueConfig{maxBatch: 3, maxCoalescing: 20 * time.Millisecond, maxEntries: 100, maxRetryTime: time.Second,
			initialRetry: time.Millisecond, maxRetryDelay: time.Millisecond, log: quiet, handlerTimeLimit: time.Second,
			handler: func(_ context.Context, b [][]byte) error {
				mu.Lock()
				defer mu.Unlock()
				batches = append(batches, b)
				return nil
			}})
		for i := 0; i < 7; i++ {
			q.add([]byte{byte('a' + i)})
		}
		deadline := time.Now().Add(30 * time.Second)
		for q.delivered.Load() < 7 || q.isRunning() {
			if time.Now().After(deadline) {
				t.Fatalf("delivered %d, running %v", q.delivered.Load(), q.isRunning())
			}
			time.Sleep(5 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, b := range batches {
			if len(b) > 3 {
				t.Fatalf("batch of %d > max_batch_size", len(b))
			}
			n += len(b)
		}
		if n != 7 || q.dropped.Load() != 0 {
			t.Fatalf("%d entries in %d batches, %d dropped", n, len(batches), q.dropped.Load())
		}
	})
	t.Run("bounded and dropping when the endpoint fails", func(t *testing.T) {
		release := make(chan struct{})
		q := newLogQueue(queueConfig{maxBatch: 1, maxEntries: 4, maxRetryTime: 50 * time.Millisecond,
			initialRetry: time.Millisecond, maxRetryDelay: 5 * time.Millisecond, log: quiet, handlerTimeLimit: time.Second,
			handler: func(ctx context.Context, b [][]byte) error {
				<-release
				return errors.New("connection refused")
			}})
		for i := 0; i < 20; i++ {
			q.add([]byte("x"))
		}
		q.mu.Lock()
		queued := len(q.entries)
		q.mu.Unlock()
		if queued > 4 {
			t.Fatalf("%d entries queued, max_entries is 4", queued)
		}
		close(release)
		deadline := time.Now().Add(30 * time.Second)
		for q.isRunning() {
			if time.Now().After(deadline) {
				t.Fatal("queue worker did not give up")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if got := q.dropped.Load(); got != 20 {
			t.Fatalf("dropped %d, want all 20", got)
		}
	})
}
