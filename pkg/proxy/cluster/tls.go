package cluster

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// Mutual TLS modes (Kong's cluster_mtls).
const (
	// ModeShared: CP and DPs hold the same certificate; the CP admits a DP
	// whose certificate's SHA-256 equals its own.
	ModeShared = "shared"
	// ModePKI: certificates are verified against cluster_ca_cert.
	ModePKI = "pki"
)

// TLS is the cluster certificate material of a node.
type TLS struct {
	Mode string
	Cert tls.Certificate // with Leaf set
	// CA verifies the peer in pki mode.
	CA *x509.CertPool
	// ServerName is what a DP expects the CP's certificate to be issued
	// for in pki mode (cluster_server_name); empty means the host of the
	// control plane address.
	ServerName string
	digest     [sha256.Size]byte
}

// LoadTLS reads cluster_cert / cluster_cert_key (and cluster_ca_cert in pki
// mode). Errors name the flag to fix.
func LoadTLS(mode, certFile, keyFile, caFile, serverName string) (*TLS, error) {
	switch mode {
	case ModeShared, ModePKI:
	default:
		return nil, fmt.Errorf("--cluster-mtls %q: use shared or pki", mode)
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("cluster certificate and key must be provided to use hybrid mode: set --cluster-cert and --cluster-cert-key (kiln gateway gen-cert makes a pair)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--cluster-cert %s / --cluster-cert-key %s: %w", certFile, keyFile, err)
	}
	t := &TLS{Mode: mode, Cert: cert, ServerName: serverName}
	if mode == ModePKI {
		if caFile == "" {
			return nil, errors.New("--cluster-ca-cert must be specified when --cluster-mtls is pki")
		}
		data, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--cluster-ca-cert: %w", err)
		}
		t.CA = x509.NewCertPool()
		if !t.CA.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("--cluster-ca-cert %s: no PEM certificate found", caFile)
		}
	}
	if err := t.init(); err != nil {
		return nil, fmt.Errorf("--cluster-cert %s: %w", certFile, err)
	}
	return t, nil
}

// NewTLS builds the material from memory (tests, embedding programs).
func NewTLS(mode string, cert tls.Certificate, ca *x509.CertPool, serverName string) (*TLS, error) {
	t := &TLS{Mode: mode, Cert: cert, CA: ca, ServerName: serverName}
	if mode == ModePKI && ca == nil {
		return nil, errors.New("pki mode needs a CA pool")
	}
	return t, t.init()
}

func (t *TLS) init() error {
	if len(t.Cert.Certificate) == 0 {
		return errors.New("no certificate")
	}
	if t.Cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(t.Cert.Certificate[0])
		if err != nil {
			return err
		}
		t.Cert.Leaf = leaf
	}
	t.digest = sha256.Sum256(t.Cert.Certificate[0])
	return nil
}

// serverConfig is the cluster listener's TLS: in shared mode any client
// certificate is requested and checked against ours by checkPeer; in pki
// mode the handshake itself requires a certificate chaining to the CA.
func (t *TLS) serverConfig() *tls.Config {
	c := &tls.Config{
		Certificates: []tls.Certificate{t.Cert},
		NextProtos:   []string{"http/1.1"},
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   tls.RequestClientCert,
	}
	if t.Mode == ModePKI {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = t.CA
	}
	return c
}

// checkPeer admits a DP after the handshake: in shared mode only the
// cluster certificate itself (same SHA-256) is accepted.
func (t *TLS) checkPeer(state *tls.ConnectionState) error {
	if state == nil || len(state.PeerCertificates) == 0 {
		return errors.New("data plane failed to present client certificate during handshake")
	}
	if t.Mode != ModeShared {
		return nil
	}
	got := sha256.Sum256(state.PeerCertificates[0].Raw)
	if got != t.digest {
		return fmt.Errorf("data plane presented incorrect client certificate during handshake (expected: %x, got: %x)", t.digest, got)
	}
	return nil
}

// clientConfig is a DP's TLS towards the CP at address (host:port): it
// presents the cluster certificate and verifies the CP against the cluster
// certificate (shared, SNI kong_clustering) or the CA (pki, SNI
// cluster_server_name or the CP's host). As OpenSSL does, a certificate
// without DNS names is matched on its common name, so certificates made by
// `kong hybrid gen_cert` work.
func (t *TLS) clientConfig(address string) *tls.Config {
	roots := t.CA
	name := t.ServerName
	if t.Mode == ModeShared {
		roots = x509.NewCertPool()
		roots.AddCert(t.Cert.Leaf)
		name = SharedServerName
	}
	if name == "" {
		if host, _, err := net.SplitHostPort(address); err == nil {
			name = host
		} else {
			name = address
		}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{t.Cert},
		ServerName:   name,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
		// Verification is done below, with the common-name fallback Go's
		// own verifier no longer has.
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, roots, name)
		},
	}
}

func verifyServer(cs tls.ConnectionState, roots *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("control plane presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("control plane certificate: %w", err)
	}
	if ip := net.ParseIP(name); ip == nil && len(leaf.DNSNames) == 0 {
		if leaf.Subject.CommonName != name {
			return fmt.Errorf("control plane certificate is for %q, not %q", leaf.Subject.CommonName, name)
		}
		return nil
	}
	if err := leaf.VerifyHostname(name); err != nil {
		return fmt.Errorf("control plane certificate: %w", err)
	}
	return nil
}
