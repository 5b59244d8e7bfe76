package phonehome

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	path := filepath.Join(t.TempDir(), "phonehome.jsonl")
	s, err := NewStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()

	for _, tc := range []struct {
		name, method, body string
		status             int
	}{
		{"report", "POST", `{"hostname":"node1","ip":"10.0.0.5","mac":"52:54:00:AA:BB:01","boot":1,"uptimeSeconds":12.5,"kernel":"6.1.0"}`, 204},
		{"second boot", "POST", `{"hostname":"node1","ip":"10.0.0.5","boot":2}`, 204},
		{"not json", "POST", `hostname=node1`, 400},
		{"no hostname", "POST", `{"ip":"10.0.0.5"}`, 400},
		{"bad ip", "POST", `{"hostname":"n","ip":"10.0.0.300"}`, 400},
		{"bad mac", "POST", `{"hostname":"n","mac":"zz"}`, 400},
		{"too big", "POST", `{"hostname":"` + strings.Repeat("a", 20000) + `"}`, 400},
		{"wrong method", "PUT", `{}`, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+Path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d; want %d", resp.StatusCode, tc.status)
			}
		})
	}
	rs := s.Reports()
	if len(rs) != 2 || rs[0].MAC != "52:54:00:aa:bb:01" || rs[0].RemoteIP != "127.0.0.1" || rs[0].ReceivedAt.IsZero() {
		t.Fatalf("reports = %+v", rs)
	}
	if l := Latest(rs); l["node1"].Boot != 2 {
		t.Fatalf("latest = %+v", l)
	}
	// Another process sees the same reports in the file.
	fromFile, err := ReadFile(path)
	if err != nil || len(fromFile) != 2 || fromFile[1].Boot != 2 {
		t.Fatalf("ReadFile = %+v, %v", fromFile, err)
	}
	// A new store continues from the file.
	s2, err := NewStore(path, nil)
	if err != nil || len(s2.Reports()) != 2 {
		t.Fatalf("reloaded store: %v, %d reports", err, len(s2.Reports()))
	}
	resp, err := http.Get(srv.URL + Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var listed []Report
	if err := json.NewDecoder(resp.Body).Decode(&listed); err != nil || len(listed) != 2 {
		t.Fatalf("GET list = %v, %v", listed, err)
	}
}

func TestWait(t *testing.T) {
	s, _ := NewStore("", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Add(Report{Hostname: "early"})
	if r, err := s.Wait(ctx, func(r Report) bool { return r.Hostname == "early" }); err != nil || r.Hostname != "early" {
		t.Fatalf("Wait for an earlier report = %+v, %v", r, err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = s.Add(Report{Hostname: "other"})
		_ = s.Add(Report{Hostname: "late"})
	}()
	if r, err := s.Wait(ctx, func(r Report) bool { return r.Hostname == "late" }); err != nil || r.Hostname != "late" {
		t.Fatalf("Wait = %+v, %v", r, err)
	}
	short, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	if _, err := s.Wait(short, func(r Report) bool { return r.Hostname == "never" }); err == nil {
		t.Fatal("Wait for a report that never comes returned")
	}
}

func FuzzParseReport(f *testing.F) {
	f.Add([]byte(`{"hostname":"node1","ip":"10.0.0.5","mac":"52:54:00:aa:bb:01","boot":1}`))
	f.Add([]byte(`{"hostname":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReport(b)
		if err != nil {
			return
		}
		if r.Hostname == "" || strings.ContainsAny(r.Hostname, " \n/") || r.Boot < 0 {
			t.Fatalf("accepted %+v", r)
		}
	})
}
