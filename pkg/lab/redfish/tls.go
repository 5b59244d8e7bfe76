package redfish

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/kiln-dev/kiln/pkg/pki"
)

// SelfSignedCert returns a fresh self-signed TLS certificate (ECDSA P-256,
// valid for a year) for the given IPs and host names, and a pool that trusts it.
func SelfSignedCert(hosts ...string) (tls.Certificate, *x509.CertPool, error) {
	kp, err := pki.SelfSigned(pki.Options{
		CommonName: "kiln virtual BMC", Organization: []string{"kiln lab"},
		Hosts: hosts, Usage: pki.ServerAuth,
	})
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("BMC TLS certificate: %w", err)
	}
	return kp.TLS(), kp.Pool(), nil
}

// Server is a running virtual BMC.
type Server struct {
	// Addr is the address the BMC listens on (host:port).
	Addr string
	// RootCAs trusts the BMC's self-signed certificate.
	RootCAs *x509.CertPool
	srv     *http.Server
	done    chan error
}

// Serve serves h over TLS on ln with a self-signed certificate for the
// listener's address until Close.
func Serve(ln net.Listener, h http.Handler) (*Server, error) {
	host, _, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("BMC listener address %s: %w", ln.Addr(), err)
	}
	cert, pool, err := SelfSignedCert(host, "localhost")
	if err != nil {
		return nil, err
	}
	s := &Server{
		Addr:    ln.Addr().String(),
		RootCAs: pool,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		},
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(tls.NewListener(ln, s.srv.TLSConfig)) }()
	return s, nil
}

// Close stops the server and closes its listener.
func (s *Server) Close() error {
	err := s.srv.Close()
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
