package admin

import (
	"encoding/base64"
	"net/http"
	"net/url"
)

// errNotControlPlane is Kong's answer to /clustering/* on a node that is
// not a hybrid-mode control plane.
var errNotControlPlane = plainError(http.StatusBadRequest,
	"this endpoint is only available when Kong is configured to run as Control Plane for the cluster")

// withHeaders is a response body that also sets headers.
type withHeaders struct {
	body   any
	header map[string]string
}

// clustering serves GET /clustering/data-planes (paginated by id) and the
// deprecated GET /clustering/status map.
func (s *Server) clustering(r *http.Request, segs []string) (int, any, error) {
	if len(segs) != 2 || (segs[1] != "data-planes" && segs[1] != "status") {
		return 0, nil, errNotFound
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return 0, nil, errMethodNotAllowed
	}
	if s.opt.Clustering == nil {
		return 0, nil, errNotControlPlane
	}
	ctx := r.Context()
	if segs[1] == "status" {
		rows, err := s.opt.Clustering.DataPlanes(ctx, "", 0)
		if err != nil {
			return 0, nil, err
		}
		out := make(map[string]any, len(rows))
		for _, row := range rows {
			id, _ := row["id"].(string)
			out[id] = map[string]any{"config_hash": row["config_hash"], "hostname": row["hostname"],
				"ip": row["ip"], "last_seen": row["last_seen"]}
		}
		return http.StatusOK, withHeaders{body: out, header: map[string]string{"Deprecation": "true"}}, nil
	}
	return keysetPage(r, func(after string, limit int) ([]map[string]any, error) {
		return s.opt.Clustering.DataPlanes(ctx, after, limit)
	})
}

// keysetPage serves one page of a collection of rows ordered by id (Kong's
// data, next and offset); fetch returns up to limit rows whose id sorts
// after after.
func keysetPage(r *http.Request, fetch func(after string, limit int) ([]map[string]any, error)) (int, any, error) {
	qv := r.URL.Query()
	size, err := pageSize(qv)
	if err != nil {
		return 0, nil, err
	}
	after := ""
	if off := qv.Get("offset"); off != "" {
		b, err := base64.RawURLEncoding.DecodeString(off)
		if err != nil || len(b) == 0 {
			return 0, nil, &apiError{status: http.StatusBadRequest, body: map[string]any{"code": 7, "name": "invalid offset",
				"message": "'" + off + "' is not a valid offset: bad base64 encoding"}}
		}
		after = string(b)
	}
	// One row more than the page tells whether another page follows.
	rows, err := fetch(after, size+1)
	if err != nil {
		return 0, nil, err
	}
	more := len(rows) > size
	if more {
		rows = rows[:size]
	}
	data := make([]any, len(rows))
	for i, row := range rows {
		data[i] = row
	}
	body := map[string]any{"data": data, "next": nil}
	if more {
		last, _ := rows[len(rows)-1]["id"].(string)
		offset := base64.RawURLEncoding.EncodeToString([]byte(last))
		next := url.Values{"offset": {offset}}
		if qv.Get("size") != "" {
			next.Set("size", qv.Get("size"))
		}
		body["next"] = r.URL.Path + "?" + next.Encode()
		body["offset"] = offset
	}
	return http.StatusOK, body, nil
}
