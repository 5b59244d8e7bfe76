package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"

	"github.com/kiln-dev/kiln/pkg/proxy/balancer"
	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/plugin"
	"github.com/kiln-dev/kiln/pkg/proxy/router"
)

// snapshot is everything compiled from one entity.Config. It is immutable;
// the engine swaps snapshots atomically.
type snapshot struct {
	cfg       *entity.Config
	router    *router.Router
	plugins   *plugin.Set
	balancers *balancer.Set
	certs     *certIndex
	// grpc holds the HTTP/2 clients of the grpc and grpcs services.
	grpc []*http2.Transport
}

// closeIdle closes the snapshot's idle gRPC upstream connections (it is
// no longer served; calls in flight finish on theirs, which close when
// idle).
func (s *snapshot) closeIdle() {
	for _, t := range s.grpc {
		t.CloseIdleConnections()
	}
}

type routeInfo struct {
	route *entity.Route
	svc   *serviceInfo
	chain *plugin.Chain
	name  string
}

type serviceInfo struct {
	svc        *entity.Service
	name       string
	https      bool
	addr       string // direct dial address when bal is nil
	host       string // Host header when not preserving host
	bal        *balancer.Balancer
	hostHeader string // upstream host_header override
	connect    time.Duration
	read       time.Duration
	write      time.Duration
	retries    int
	tls        *tls.Config
	path       string
	// h2 is the HTTP/2 client of a grpc or grpcs service (nil for
	// http and https, spoken to in HTTP/1.1).
	h2 *http2.Transport
}

func strOr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

func ms(v int) time.Duration {
	if v <= 0 {
		v = 60000
	}
	return time.Duration(v) * time.Millisecond
}

// hostHeader renders host[:port], omitting the scheme's default port.
func hostHeader(host string, port int, https bool) string {
	if (https && port == 443) || (!https && port == 80) || port == 0 {
		return host
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}

func compile(cfg *entity.Config, reg plugin.Registry, st *plugin.State, bals *balancer.Set, caPool func(*entity.Config, []string) *x509.CertPool) (*snapshot, error) {
	env := plugin.NewEnv(cfg, st)
	ps, err := plugin.Compile(cfg, reg, env)
	if err != nil {
		return nil, err
	}
	certs, err := newCertIndex(cfg)
	if err != nil {
		return nil, err
	}
	services := map[string]*serviceInfo{}
	for _, s := range cfg.Services {
		si := &serviceInfo{
			svc: s, name: strOr(s.Name, s.ID),
			https:   s.Protocol == "https" || s.Protocol == "grpcs",
			connect: ms(s.ConnectTimeout), read: ms(s.ReadTimeout), write: ms(s.WriteTimeout),
			retries: s.Retries, path: strOr(s.Path, ""),
		}
		port := s.Port
		if port == 0 {
			port = 80
			if si.https {
				port = 443
			}
		}
		si.bal = bals.ByName(s.Host)
		if si.bal != nil && si.bal.Upstream.HostHeader != nil {
			si.hostHeader = *si.bal.Upstream.HostHeader
		}
		si.addr = hostHeader(s.Host, port, false)
		if !strings.Contains(si.addr, ":") || strings.HasSuffix(si.addr, "]") {
			si.addr += ":" + strconv.Itoa(port)
		}
		si.host = hostHeader(s.Host, port, si.https)
		if si.https {
			tc := &tls.Config{ServerName: s.Host, InsecureSkipVerify: true} //nolint:gosec // Kong's proxy_ssl_verify defaults to off
			if s.TLSVerify != nil && *s.TLSVerify {
				tc.InsecureSkipVerify = false
				if len(s.CACertificates) > 0 {
					tc.RootCAs = caPool(cfg, s.CACertificates)
				}
			}
			if s.ClientCertificate != nil {
				if c := cfg.Certificate(s.ClientCertificate.ID); c != nil {
					kp, err := tls.X509KeyPair([]byte(c.Cert), []byte(c.Key))
					if err != nil {
						return nil, fmt.Errorf("service %s: client_certificate %s: %w", si.name, c.ID, err)
					}
					tc.Certificates = []tls.Certificate{kp}
				}
			}
			si.tls = tc
		}
		if grpcService(s.Protocol) {
			si.h2 = newGRPCTransport(si)
		}
		services[s.ID] = si
	}
	var routes []*router.Route
	for _, r := range cfg.Routes {
		var si *serviceInfo
		if r.Service != nil {
			si = services[r.Service.ID]
			if si == nil || !si.svc.Enabled {
				// A disabled service's routes are not served, as in Kong.
				continue
			}
		}
		if !hasHTTP(r.Protocols) {
			continue
		}
		ri := &routeInfo{route: r, svc: si, chain: ps.ForRoute(r.ID), name: strOr(r.Name, r.ID)}
		routes = append(routes, &router.Route{
			ID: r.ID, Name: ri.name, Protocols: r.Protocols, Methods: r.Methods, Hosts: r.Hosts,
			Paths: r.Paths, Headers: r.Headers, SNIs: r.SNIs, RegexPriority: r.RegexPriority,
			StripPath: r.StripPath, PreserveHost: r.PreserveHost, PathHandling: r.PathHandling,
			HTTPSRedirectStatusCode: r.HTTPSRedirectStatusCode, Value: ri,
		})
	}
	rt, err := router.New(routes)
	if err != nil {
		return nil, err
	}
	snap := &snapshot{cfg: cfg, router: rt, plugins: ps, balancers: bals, certs: certs}
	for _, si := range services {
		if si.h2 != nil {
			snap.grpc = append(snap.grpc, si.h2)
		}
	}
	return snap, nil
}

func hasHTTP(protocols []string) bool {
	if len(protocols) == 0 {
		return true
	}
	for _, p := range protocols {
		switch p {
		case "http", "https", "grpc", "grpcs":
			return true
		}
	}
	return false
}

func caPoolFor(cfg *entity.Config, ids []string) *x509.CertPool {
	pool := x509.NewCertPool()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for _, ca := range cfg.CACertificates {
		if want[ca.ID] {
			pool.AppendCertsFromPEM([]byte(ca.Cert))
		}
	}
	return pool
}

// certIndex serves TLS certificates by SNI.
type certIndex struct {
	exact    map[string][]*tls.Certificate
	wildcard map[string][]*tls.Certificate // "*.example.com" → key ".example.com"; "example.*" → key "example."
}

func newCertIndex(cfg *entity.Config) (*certIndex, error) {
	idx := &certIndex{exact: map[string][]*tls.Certificate{}, wildcard: map[string][]*tls.Certificate{}}
	parsed := map[string][]*tls.Certificate{}
	for _, c := range cfg.Certificates {
		kp, err := tls.X509KeyPair([]byte(c.Cert), []byte(c.Key))
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", c.ID, err)
		}
		parsed[c.ID] = []*tls.Certificate{&kp}
		if c.CertAlt != nil && c.KeyAlt != nil && *c.CertAlt != "" {
			alt, err := tls.X509KeyPair([]byte(*c.CertAlt), []byte(*c.KeyAlt))
			if err != nil {
				return nil, fmt.Errorf("certificate %s: cert_alt: %w", c.ID, err)
			}
			parsed[c.ID] = append(parsed[c.ID], &alt)
		}
	}
	for _, s := range cfg.SNIs {
		if s.Certificate == nil || parsed[s.Certificate.ID] == nil {
			continue
		}
		name := strings.ToLower(s.Name)
		switch {
		case strings.HasPrefix(name, "*."):
			idx.wildcard[name[1:]] = parsed[s.Certificate.ID]
		case strings.HasSuffix(name, ".*"):
			idx.wildcard[name[:len(name)-1]] = parsed[s.Certificate.ID]
		default:
			idx.exact[name] = parsed[s.Certificate.ID]
		}
	}
	return idx, nil
}

// lookup returns the certificate for a ClientHello: exact SNI, then
// wildcard; among a certificate's pairs (cert + cert_alt) the first the
// client supports.
func (idx *certIndex) lookup(hello *tls.ClientHelloInfo) *tls.Certificate {
	name := strings.ToLower(hello.ServerName)
	list := idx.exact[name]
	if list == nil {
		if i := strings.IndexByte(name, '.'); i > 0 {
			list = idx.wildcard[name[i:]]
		}
	}
	if list == nil {
		if i := strings.LastIndexByte(name, '.'); i > 0 {
			list = idx.wildcard[name[:i+1]]
		}
	}
	for _, c := range list {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	if len(list) > 0 {
		return list[0]
	}
	return nil
}
