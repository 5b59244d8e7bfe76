package plugins

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
)

// Rate-limit periods, shortest first (index = CounterKey.Period).
var periodNames = [...]string{"second", "minute", "hour", "day", "month", "year"}

type rlLimit struct {
	period   uint8
	limit    int64
	limitStr []string // the limit, rendered once
	hdrLimit string   // X-RateLimit-Limit-Minute
	hdrRem   string   // X-RateLimit-Remaining-Minute
}

type rateLimiting struct {
	id         string
	limits     []rlLimit
	limitBy    string
	headerName string
	path       string
	hide       bool
	errCode    int
	errMsg     string
	counters   *plugin.Counters
	now        func() time.Time
}

func newRateLimiting(p *entity.Plugin, env *plugin.Env) (any, error) {
	cf := conf(p.Config)
	if pol := cf.str("policy"); pol != "" && pol != "local" {
		return nil, fmt.Errorf("rate-limiting policy %q is not supported by kiln; use policy=local", pol)
	}
	rl := &rateLimiting{id: p.ID, limitBy: cf.str("limit_by"), headerName: cf.str("header_name"), path: cf.str("path"),
		hide: cf.boolean("hide_client_headers"), errCode: http.StatusTooManyRequests, errMsg: "API rate limit exceeded",
		counters: env.State.Counters, now: env.State.Now}
	if v, ok := cf.num("error_code"); ok {
		rl.errCode = int(v)
	}
	if s, ok := p.Config["error_message"].(string); ok {
		rl.errMsg = s
	}
	for i, name := range periodNames {
		v, ok := cf.num(name)
		if !ok {
			continue
		}
		title := string(name[0]-'a'+'A') + name[1:]
		rl.limits = append(rl.limits, rlLimit{period: uint8(i), limit: int64(v), limitStr: []string{strconv.FormatInt(int64(v), 10)},
			hdrLimit: "X-RateLimit-Limit-" + title, hdrRem: "X-RateLimit-Remaining-" + title})
	}
	if len(rl.limits) == 0 {
		return nil, fmt.Errorf("rate-limiting needs at least one of second, minute, hour, day, month, year")
	}
	return rl, nil
}

// windowStart returns the start and end (unix seconds) of the calendar-aligned
// fixed window containing now.
func windowStart(period uint8, now time.Time) (int64, int64) {
	u := now.UTC()
	switch period {
	case 0:
		s := u.Unix()
		return s, s + 1
	case 1:
		s := u.Unix() / 60 * 60
		return s, s + 60
	case 2:
		s := u.Unix() / 3600 * 3600
		return s, s + 3600
	case 3:
		s := u.Unix() / 86400 * 86400
		return s, s + 86400
	case 4:
		st := time.Date(u.Year(), u.Month(), 1, 0, 0, 0, 0, time.UTC)
		return st.Unix(), st.AddDate(0, 1, 0).Unix()
	default:
		st := time.Date(u.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
		return st.Unix(), st.AddDate(1, 0, 0).Unix()
	}
}

func windowEnd(k plugin.CounterKey) int64 {
	_, end := windowStart(k.Period, time.Unix(k.Window, 0))
	return end
}

func (rl *rateLimiting) identifier(c *plugin.Context) string {
	switch rl.limitBy {
	case "consumer", "":
		if c.Consumer != nil {
			return c.Consumer.ID
		}
		if c.Credential != nil {
			return c.Credential.ID
		}
	case "credential":
		if c.Credential != nil {
			return c.Credential.ID
		}
	case "service":
		if c.Service != nil {
			return c.Service.ID
		}
	case "header":
		if v := c.Req.Header.Get(rl.headerName); v != "" {
			return v
		}
	case "path":
		if rl.path != "" && c.RawPath == rl.path {
			return rl.path
		}
	}
	return c.ClientIP
}

// Access counts the request in every configured window and blocks it when
// one is exhausted, setting both header families as Kong does.
func (rl *rateLimiting) Access(c *plugin.Context) {
	now := rl.now()
	id := rl.identifier(c)
	var (
		stop        bool
		minRem      int64 = -1
		minReset    int64
		minLimitStr []string
		minIdx      int
		keys        [6]plugin.CounterKey
		rems        [6]int64
	)
	nowS := now.Unix()
	// Count the request in every window at once (one lock per window);
	// when a window is over its limit the increments are taken back, so a
	// blocked request is not counted, as in Kong.
	for i, l := range rl.limits {
		start, end := windowStart(l.period, now)
		keys[i] = plugin.CounterKey{Plugin: rl.id, Identifier: id, Period: l.period, Window: start}
		used := rl.counters.Add(keys[i], 1, nowS, windowEnd) - 1
		remaining := l.limit - used
		rems[i] = remaining
		if remaining <= 0 {
			stop = true
			remaining = 0
		}
		reset := end - now.Unix()
		if reset < 1 {
			reset = 1
		}
		// The most restrictive window: lowest remaining, ties to the
		// longer window.
		if minRem < 0 || remaining <= minRem {
			minRem, minLimitStr, minReset, minIdx = remaining, l.limitStr, reset, i
		}
	}
	if stop {
		for i := range rl.limits {
			rl.counters.Add(keys[i], -1, nowS, windowEnd)
		}
	}
	if !rl.hide {
		var shown []string
		for i, l := range rl.limits {
			// A blocked request was not counted; an allowed one was.
			remaining := rems[i]
			if !stop {
				remaining--
			}
			v := c.Value(strconv.FormatInt(max(remaining, 0), 10))
			c.RespHeader[l.hdrLimit] = l.limitStr
			c.RespHeader[l.hdrRem] = v
			if i == minIdx {
				// RateLimit-Remaining is the most restrictive window's
				// remaining count: max(minRem-1, 0) when allowed, 0 when
				// blocked, which is that window's value above.
				shown = v
			}
		}
		c.RespHeader["RateLimit-Limit"] = minLimitStr
		c.RespHeader["RateLimit-Remaining"] = shown
		c.RespHeader["RateLimit-Reset"] = c.Value(strconv.FormatInt(minReset, 10))
	}
	if stop {
		c.SetRespHeader("Retry-After", strconv.FormatInt(minReset, 10))
		c.Error(rl.errCode, rl.errMsg)
	}
}
