package balancer

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http2"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

// prober runs one upstream's active health probes (healthchecks.active),
// each over a connection of its own, as Kong's health checker does:
//   - tcp: a connection is opened and closed;
//   - http, https: a GET of http_path with the configured headers, whose
//     status is looked up in healthy/unhealthy http_statuses;
//   - grpc, grpcs: a call of the standard gRPC health service
//     (grpc.health.v1.Health/Check) over HTTP/2, cleartext or TLS. Kong's
//     schema accepts these two types but its checker refuses them; kiln
//     asks the server itself. The answer SERVING counts as a success,
//     any other answer (NOT_SERVING, an unknown service, a server without
//     the health service, a non-gRPC reply) as an HTTP failure;
//     http_path names the service checked ("/" checks the server as a
//     whole, "/pkg.Service" that service); http_statuses are not used.
//
// https_sni is the TLS server name (and the name the certificate is
// verified against when https_verify_certificate is on); the upstream's
// host_header, when set, is the Host header (:authority) of the request.
type prober struct {
	active  entity.ActiveHealthcheck
	timeout time.Duration
	host    string // Host header override (the upstream's host_header)
	ok, bad map[int]bool
	tls     *tls.Config
	client  *http.Client // http and https probes
}

// newProber prepares the probes of upstream u.
func newProber(u *entity.Upstream) *prober {
	a := u.Healthchecks.Active
	p := &prober{active: a, ok: intSet(a.Healthy.HTTPStatuses), bad: intSet(a.Unhealthy.HTTPStatuses)}
	p.timeout = time.Duration(a.Timeout * float64(time.Second))
	if p.timeout <= 0 {
		p.timeout = time.Second
	}
	if u.HostHeader != nil {
		p.host = *u.HostHeader
	}
	p.tls = &tls.Config{InsecureSkipVerify: !a.HTTPSVerifyCertificate} //nolint:gosec // Kong's https_verify_certificate=false
	if a.HTTPSSNI != nil {
		p.tls.ServerName = *a.HTTPSSNI
	}
	p.client = &http.Client{
		Timeout: p.timeout,
		Transport: &http.Transport{
			TLSClientConfig:   p.tls,
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p
}

// close releases the prober's connections.
func (p *prober) close() { p.client.CloseIdleConnections() }

// probe checks target t once.
func (p *prober) probe(ctx context.Context, t *Target) Event {
	switch p.active.Type {
	case "tcp":
		d := net.Dialer{Timeout: p.timeout}
		c, err := d.DialContext(ctx, "tcp", t.Name)
		if err != nil {
			return connEvent(err)
		}
		_ = c.Close()
		return EventSuccess
	case "grpc", "grpcs":
		return p.probeGRPC(ctx, t)
	}
	return p.probeHTTP(ctx, t)
}

func (p *prober) probeHTTP(ctx context.Context, t *Target) Event {
	scheme := "http"
	if p.active.Type == "https" {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+t.Name+p.active.HTTPPath, nil)
	if err != nil {
		return EventTCPFailure
	}
	p.addHeaders(req)
	resp, err := p.client.Do(req)
	if err != nil {
		return connEvent(err)
	}
	_ = resp.Body.Close()
	switch {
	case p.ok[resp.StatusCode]:
		return EventSuccess
	case p.bad[resp.StatusCode]:
		return EventHTTPFailure
	}
	return EventNone
}

func (p *prober) addHeaders(req *http.Request) {
	for k, vs := range p.active.Headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if p.host != "" {
		req.Host = p.host
	}
}

// grpcHealthMethod is the standard gRPC health check's path.
const grpcHealthMethod = "/grpc.health.v1.Health/Check"

func (p *prober) probeGRPC(ctx context.Context, t *Target) Event {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	conn, err := p.dialH2(ctx, t.Name)
	if err != nil {
		return connEvent(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	cc, err := (&http2.Transport{}).NewClientConn(conn)
	if err != nil {
		return connEvent(err)
	}
	service := strings.TrimPrefix(p.active.HTTPPath, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+t.Name+grpcHealthMethod,
		bytes.NewReader(grpcFrame(healthCheckRequest(service))))
	if err != nil {
		return EventTCPFailure
	}
	if p.active.Type == "grpcs" {
		req.URL.Scheme = "https"
	}
	p.addHeaders(req)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return p.afterError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHealthResponse))
	if err != nil {
		return p.afterError(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		return EventHTTPFailure
	}
	grpcStatus := resp.Trailer.Get("Grpc-Status")
	if grpcStatus == "" { // a trailers-only answer
		grpcStatus = resp.Header.Get("Grpc-Status")
	}
	if grpcStatus != "0" {
		return EventHTTPFailure
	}
	msg, err := grpcMessage(body)
	if err != nil {
		return EventHTTPFailure
	}
	if status, err := healthCheckStatus(msg); err != nil || status != servingStatusServing {
		return EventHTTPFailure
	}
	return EventSuccess
}

// afterError is the event for a gRPC probe that failed after connecting:
// a timeout when the probe's time ran out (closing the connection then
// ends the call with an error of its own), else a connection failure.
func (p *prober) afterError(ctx context.Context, err error) Event {
	if ctx.Err() != nil {
		return EventTimeout
	}
	return connEvent(err)
}

// dialH2 opens a connection speaking HTTP/2 to addr: cleartext with prior
// knowledge for grpc, TLS with h2 chosen by ALPN for grpcs.
func (p *prober) dialH2(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || p.active.Type != "grpcs" {
		return conn, err
	}
	cfg := p.tls.Clone()
	cfg.NextProtos = []string{http2.NextProtoTLS}
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if proto := tc.ConnectionState().NegotiatedProtocol; proto != http2.NextProtoTLS {
		_ = conn.Close()
		return nil, fmt.Errorf("%s did not choose HTTP/2 in the TLS handshake (ALPN %q)", addr, proto)
	}
	return tc, nil
}

func connEvent(err error) Event {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return EventTimeout
	}
	return EventTCPFailure
}

// The health service's messages (grpc/health/v1/health.proto), encoded by
// hand: one field each, not worth a protobuf runtime in the gateway.
//
//	message HealthCheckRequest { string service = 1; }
//	message HealthCheckResponse { ServingStatus status = 1; }

// servingStatusServing is ServingStatus SERVING.
const servingStatusServing = 1

// maxHealthResponse bounds the health answer read (it is a few bytes).
const maxHealthResponse = 64 << 10

// healthCheckRequest encodes a HealthCheckRequest for service.
func healthCheckRequest(service string) []byte {
	if service == "" {
		return nil
	}
	b := []byte{1<<3 | 2} // field 1, length-delimited
	b = binary.AppendUvarint(b, uint64(len(service)))
	return append(b, service...)
}

// grpcFrame prefixes msg with gRPC's message header (not compressed, its
// length).
func grpcFrame(msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// grpcMessage returns the one message of a unary response body.
func grpcMessage(body []byte) ([]byte, error) {
	if len(body) < 5 {
		return nil, fmt.Errorf("gRPC response of %d bytes: shorter than a message header", len(body))
	}
	if body[0] != 0 {
		return nil, errors.New("gRPC response is compressed, which the health check did not accept")
	}
	n := binary.BigEndian.Uint32(body[1:5])
	if uint64(n) != uint64(len(body)-5) {
		return nil, fmt.Errorf("gRPC response holds %d bytes after the header, its header says %d", len(body)-5, n)
	}
	return body[5:], nil
}

// healthCheckStatus decodes a HealthCheckResponse's status (0, UNKNOWN,
// when absent), skipping fields it does not know.
func healthCheckStatus(msg []byte) (uint64, error) {
	var status uint64
	for len(msg) > 0 {
		tag, n := binary.Uvarint(msg)
		if n <= 0 {
			return 0, errors.New("health response: bad field tag")
		}
		msg = msg[n:]
		field, wire := tag>>3, tag&7
		switch wire {
		case 0: // varint
			v, n := binary.Uvarint(msg)
			if n <= 0 {
				return 0, errors.New("health response: bad varint")
			}
			msg = msg[n:]
			if field == 1 {
				status = v
			}
		case 1, 5: // fixed 64 or 32 bits
			size := 8
			if wire == 5 {
				size = 4
			}
			if len(msg) < size {
				return 0, errors.New("health response: truncated field")
			}
			msg = msg[size:]
		case 2: // length-delimited
			l, n := binary.Uvarint(msg)
			if n <= 0 || l > uint64(len(msg)-n) {
				return 0, errors.New("health response: truncated field")
			}
			msg = msg[n+int(l):]
		default:
			return 0, fmt.Errorf("health response: wire type %d not supported", wire)
		}
	}
	return status, nil
}
