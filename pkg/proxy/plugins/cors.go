package plugins

import (
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
)

type cors struct {
	origins           []string
	originREs         []*regexp.Regexp
	any               bool
	methods, headers  string
	exposed           string
	maxAge            string
	credentials       bool
	privateNetwork    bool
	preflightContinue bool
	allowAbsent       bool
}

func newCORS(p *entity.Plugin, _ *plugin.Env) (any, error) {
	cf := conf(p.Config)
	c := &cors{credentials: cf.boolean("credentials"), privateNetwork: cf.boolean("private_network"),
		preflightContinue: cf.boolean("preflight_continue"), allowAbsent: true}
	if v, ok := p.Config["allow_origin_absent"].(bool); ok {
		c.allowAbsent = v
	}
	for _, o := range cf.strs("origins") {
		if o == "*" {
			c.any = true
			continue
		}
		if strings.ContainsAny(o, `^$*+?()[]{}|\`) {
			re, err := regexp.Compile("^(?:" + o + ")$")
			if err != nil {
				return nil, fmt.Errorf("cors origin %q is not a valid regex: %w", o, err)
			}
			c.originREs = append(c.originREs, re)
			continue
		}
		c.origins = append(c.origins, strings.TrimSuffix(o, "/"))
	}
	if len(c.origins) == 0 && len(c.originREs) == 0 {
		c.any = true
	}
	methods := cf.strs("methods")
	if len(methods) == 0 {
		methods = []string{"GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
	}
	c.methods = strings.Join(methods, ",")
	c.headers = strings.Join(cf.strs("headers"), ",")
	c.exposed = strings.Join(cf.strs("exposed_headers"), ",")
	if v, ok := cf.num("max_age"); ok {
		c.maxAge = strconv.FormatFloat(v, 'f', -1, 64)
	}
	return c, nil
}

// allowOrigin returns the Access-Control-Allow-Origin value for origin, or
// "" when the origin is not allowed.
func (c *cors) allowOrigin(origin string) string {
	if c.any {
		if c.credentials && origin != "" {
			return origin
		}
		return "*"
	}
	if origin == "" {
		return ""
	}
	o := strings.TrimSuffix(origin, "/")
	for _, x := range c.origins {
		if strings.EqualFold(x, o) {
			return origin
		}
	}
	for _, re := range c.originREs {
		if re.MatchString(o) {
			return origin
		}
	}
	return ""
}

func (c *cors) common(pc *plugin.Context, origin string) {
	if ao := c.allowOrigin(origin); ao != "" {
		pc.SetRespHeader("Access-Control-Allow-Origin", ao)
		if ao != "*" {
			pc.SetRespHeader("Vary", "Origin")
		}
	}
	if c.credentials && (!c.any || origin != "") {
		pc.SetRespHeader("Access-Control-Allow-Credentials", "true")
	}
}

// Access answers preflight requests (unless preflight_continue).
func (c *cors) Access(pc *plugin.Context) {
	r := pc.Req
	origin := r.Header.Get("Origin")
	if origin == "" && !c.allowAbsent {
		return
	}
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return
	}
	if c.preflightContinue {
		return
	}
	c.common(pc, origin)
	hdrs := c.headers
	if hdrs == "" {
		hdrs = r.Header.Get("Access-Control-Request-Headers")
	}
	if hdrs != "" {
		pc.SetRespHeader("Access-Control-Allow-Headers", hdrs)
	}
	pc.SetRespHeader("Access-Control-Allow-Methods", c.methods)
	if c.maxAge != "" {
		pc.SetRespHeader("Access-Control-Max-Age", c.maxAge)
	}
	if c.privateNetwork && r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		pc.SetRespHeader("Access-Control-Allow-Private-Network", "true")
	}
	pc.ExitWith(&plugin.Exit{Status: http.StatusOK, Body: []byte{}, ContentType: ""})
	pc.Set("cors.preflight", true)
}

// HeaderFilter adds the CORS headers to actual (non-preflight) responses.
func (c *cors) HeaderFilter(pc *plugin.Context) {
	if pc.Get("cors.preflight") != nil {
		return
	}
	r := pc.Req
	origin := r.Header.Get("Origin")
	if origin == "" && !c.allowAbsent {
		return
	}
	h := pc.ResponseHeader
	if ao := c.allowOrigin(origin); ao != "" {
		h["Access-Control-Allow-Origin"] = []string{ao}
		if ao != "*" {
			h["Vary"] = append(h["Vary"], "Origin")
		}
	}
	if c.credentials && (!c.any || origin != "") {
		h["Access-Control-Allow-Credentials"] = []string{"true"}
	}
	if c.exposed != "" {
		h["Access-Control-Expose-Headers"] = []string{c.exposed}
	}
}

type ipRestriction struct {
	allow, deny []*net.IPNet
	status      int
	message     string
}

func parseCIDRs(list []string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, s := range list {
		if !strings.Contains(s, "/") {
			if ip := net.ParseIP(s); ip != nil {
				bits := 32
				if ip.To4() == nil {
					bits = 128
				}
				s = fmt.Sprintf("%s/%d", s, bits)
			}
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("ip-restriction: %q is not an IP or CIDR", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func newIPRestriction(p *entity.Plugin, _ *plugin.Env) (any, error) {
	cf := conf(p.Config)
	allow, err := parseCIDRs(cf.strs("allow"))
	if err != nil {
		return nil, err
	}
	deny, err := parseCIDRs(cf.strs("deny"))
	if err != nil {
		return nil, err
	}
	ir := &ipRestriction{allow: allow, deny: deny, status: http.StatusForbidden, message: cf.str("message")}
	if v, ok := cf.num("status"); ok {
		ir.status = int(v)
	}
	return ir, nil
}

func inNets(nets []*net.IPNet, ip net.IP) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Access blocks clients outside allow or inside deny (deny wins).
func (ir *ipRestriction) Access(c *plugin.Context) {
	ip := net.ParseIP(c.ClientIP)
	blocked := ip == nil
	if !blocked && len(ir.deny) > 0 && inNets(ir.deny, ip) {
		blocked = true
	}
	if !blocked && len(ir.allow) > 0 && !inNets(ir.allow, ip) {
		blocked = true
	}
	if !blocked {
		return
	}
	msg := ir.message
	if msg == "" {
		msg = "IP address not allowed: " + c.ClientIP
	}
	c.Error(ir.status, msg)
}
