package admin

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/loglevel"
)

// defaultLogLevelTimeout is how long a level set through the Admin API
// lasts unless the request says otherwise (Kong's 60 s).
const defaultLogLevelTimeout = 60

// debug serves Kong's log level endpoints:
//   - GET /debug/node/log-level reports the node's level;
//   - PUT /debug/node/log-level/{level}[?timeout=seconds] changes it for
//     timeout seconds (60 by default, 0 until changed again);
//   - PUT /debug/cluster/log-level/{level} does the same on every node
//     sharing the database (each applies it when it next polls).
//
// As in Kong, a node without a database refuses the change.
func (s *Server) debug(r *http.Request, segs []string) (int, any, error) {
	lv := s.opt.LogLevel
	if lv == nil || len(segs) < 3 || len(segs) > 4 || segs[2] != "log-level" {
		return 0, nil, errNotFound
	}
	cluster := segs[1] == "cluster"
	switch {
	case segs[1] == "node" && len(segs) == 3:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return 0, nil, errMethodNotAllowed
		}
		return http.StatusOK, map[string]any{"message": "log level: " + loglevel.Name(lv.Level())}, nil
	case segs[1] == "node" && len(segs) == 4:
	case cluster && len(segs) == 4 && s.opt.ClusterLogLevel != nil:
	default:
		return 0, nil, errNotFound
	}
	if r.Method != http.MethodPut {
		return 0, nil, errMethodNotAllowed
	}
	if s.dbless {
		return 0, nil, plainError(http.StatusMethodNotAllowed, "cannot change log level when not using a database")
	}
	name := segs[3]
	level, ok := loglevel.Parse(name)
	if !ok {
		return 0, nil, plainError(http.StatusBadRequest, "unknown log level: "+name)
	}
	timeout, err := logLevelTimeout(r)
	if err != nil {
		return 0, nil, err
	}
	if lv.Level() == level {
		return http.StatusOK, map[string]any{"message": "log level is already " + name}, nil
	}
	d := time.Duration(timeout) * time.Second
	if cluster {
		var until time.Time
		if d > 0 {
			until = s.now().Add(d)
		}
		if _, err := s.opt.ClusterLogLevel.SetClusterLogLevel(r.Context(), name, until); err != nil {
			return 0, nil, err
		}
	}
	lv.Set(level, d)
	s.log.Info("log level changed through the Admin API", "level", name, "timeout_seconds", timeout, "cluster", cluster)
	return http.StatusOK, map[string]any{"message": "log level changed"}, nil
}

// logLevelTimeout reads the timeout parameter, from the query string or
// the body, in whole seconds rounded up.
func logLevelTimeout(r *http.Request) (int64, error) {
	raw := r.URL.Query().Get("timeout")
	if raw == "" {
		body, err := readBody(r, nil)
		if err != nil {
			return 0, err
		}
		switch v := body["timeout"].(type) {
		case nil:
		case string:
			raw = v
		case float64:
			raw = strconv.FormatFloat(v, 'f', -1, 64)
		default:
			return 0, plainError(http.StatusBadRequest, fmt.Sprintf("timeout must be a number of seconds, got %v", v))
		}
	}
	if raw == "" {
		return defaultLogLevelTimeout, nil
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f > math.MaxInt32 {
		return 0, plainError(http.StatusBadRequest, fmt.Sprintf("timeout must be a number of seconds, got %q", raw))
	}
	if f < 0 {
		return 0, plainError(http.StatusBadRequest, "timeout must be greater than or equal to 0")
	}
	return int64(math.Ceil(f)), nil
}
