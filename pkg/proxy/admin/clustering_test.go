package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/admin"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// rows lists fixed data plane rows, already ordered by id.
type rows []map[string]any

func (r rows) DataPlanes(_ context.Context, after string, limit int) ([]map[string]any, error) {
	var out []map[string]any
	for _, row := range r {
		if row["id"].(string) > after && (limit <= 0 || len(out) < limit) {
			out = append(out, row)
		}
	}
	return out, nil
}

// failing is a control plane whose database is down.
type failing struct{}

func (failing) DataPlanes(context.Context, string, int) ([]map[string]any, error) {
	return nil, errors.New("database unreachable")
}

func TestClusteringEndpoints(t *testing.T) {
	dps := rows{
		{"id": "a", "ip": "10.0.0.1", "hostname": "h1", "config_hash": "x", "last_seen": 1, "sync_status": "normal"},
		{"id": "b", "ip": "10.0.0.2", "hostname": "h2", "config_hash": "y", "last_seen": 2, "sync_status": "normal"},
		{"id": "c", "ip": "10.0.0.3", "hostname": "h3", "config_hash": "z", "last_seen": 3, "sync_status": "unknown"},
	}
	cp := admin.New(admin.Options{Store: store.NewMemory(), Clustering: dps})
	plain := admin.New(admin.Options{Store: store.NewMemory()})
	get := func(s *admin.Server, path string) (*httptest.ResponseRecorder, map[string]any) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("GET %s: %s", path, rec.Body)
		}
		return rec, body
	}

	var ids []string
	path := "/clustering/data-planes?size=2"
	for path != "" {
		rec, body := get(cp, path)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, rec.Code, body)
		}
		for _, d := range body["data"].([]any) {
			ids = append(ids, d.(map[string]any)["id"].(string))
		}
		path, _ = body["next"].(string)
	}
	if len(ids) != 3 || ids[0] != "a" || ids[2] != "c" {
		t.Fatalf("paginated ids %v", ids)
	}
	if rec, _ := get(cp, "/clustering/data-planes?size=0"); rec.Code != http.StatusBadRequest {
		t.Errorf("size=0: %d", rec.Code)
	}
	if rec, _ := get(cp, "/clustering/data-planes?offset=%25%25"); rec.Code != http.StatusBadRequest {
		t.Errorf("bad offset: %d", rec.Code)
	}

	rec, status := get(cp, "/clustering/status")
	if rec.Code != http.StatusOK || rec.Header().Get("Deprecation") != "true" {
		t.Fatalf("/clustering/status: %d %v", rec.Code, rec.Header())
	}
	if b := status["b"].(map[string]any); b["config_hash"] != "y" || b["ip"] != "10.0.0.2" || b["hostname"] != "h2" || len(b) != 4 {
		t.Errorf("/clustering/status entry %v", b)
	}

	for _, p := range []string{"/clustering/data-planes", "/clustering/status"} {
		if rec, body := get(plain, p); rec.Code != http.StatusBadRequest || body["message"] == nil {
			t.Errorf("%s on a non-CP node: %d %v", p, rec.Code, body)
		}
	}
	down := admin.New(admin.Options{Store: store.NewMemory(), Clustering: failing{}})
	for _, p := range []string{"/clustering/data-planes", "/clustering/status"} {
		if rec, body := get(down, p); rec.Code != http.StatusInternalServerError || body["message"] == nil {
			t.Errorf("%s with the database down: %d %v", p, rec.Code, body)
		}
	}
	if rec, _ := get(cp, "/clustering/nope"); rec.Code != http.StatusNotFound {
		t.Errorf("/clustering/nope: %d", rec.Code)
	}
}
