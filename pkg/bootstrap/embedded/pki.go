package embedded

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/kiln-dev/kiln/pkg/pki"
)

// Certificate and key file names under <data>/pki.
const (
	CACertFile            = "ca.crt"
	CAKeyFile             = "ca.key"
	APIServerCertFile     = "apiserver.crt"
	APIServerKeyFile      = "apiserver.key"
	AdminCertFile         = "admin.crt"
	AdminKeyFile          = "admin.key"
	EtcdServerCertFile    = "etcd-server.crt"
	EtcdServerKeyFile     = "etcd-server.key"
	APIServerEtcdCertFile = "apiserver-etcd-client.crt"
	APIServerEtcdKeyFile  = "apiserver-etcd-client.key"
	ServiceAccountKeyFile = "sa.key"
	ServiceAccountPubFile = "sa.pub"
)

const certificateLifetime = 365 * 24 * time.Hour

// pkiDir is the certificate set of one embedded control plane: a private CA,
// serving certificates for kube-apiserver and etcd, and client certificates
// for the administrator and for kube-apiserver → etcd.
type pkiDir struct {
	dir string
}

func (p pkiDir) path(name string) string { return filepath.Join(p.dir, name) }

// ensure creates every certificate and key that does not exist yet. Existing
// files are kept so a restart on the same data directory keeps the same CA
// and the kubeconfig written earlier stays valid.
func (p pkiDir) ensure(hosts []net.IP) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return fmt.Errorf("creating certificate directory %s: %w", p.dir, err)
	}
	if fileExists(p.path(CACertFile)) && fileExists(p.path(CAKeyFile)) &&
		fileExists(p.path(APIServerCertFile)) && fileExists(p.path(AdminCertFile)) &&
		fileExists(p.path(EtcdServerCertFile)) && fileExists(p.path(APIServerEtcdCertFile)) &&
		fileExists(p.path(ServiceAccountKeyFile)) {
		return nil
	}
	ca, err := pki.NewCA(pki.Options{CommonName: "kiln-bootstrap-ca", Organization: []string{"kiln"}, Validity: 10 * certificateLifetime})
	if err != nil {
		return fmt.Errorf("creating the bootstrap CA: %w", err)
	}
	if err := ca.WriteFiles(p.path(CACertFile), p.path(CAKeyFile)); err != nil {
		return err
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	all := append(append([]net.IP{}, loopback...), hosts...)
	issue := []struct {
		cert, key string
		opts      pki.Options
	}{
		{APIServerCertFile, APIServerKeyFile, pki.Options{
			CommonName: "kube-apiserver",
			Hosts:      []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
			IPs:        all,
			Usage:      pki.ServerAuth,
		}},
		{AdminCertFile, AdminKeyFile, pki.Options{
			CommonName: "kiln-admin", Organization: []string{"system:masters"},
			Usage: pki.ClientAuth,
		}},
		{EtcdServerCertFile, EtcdServerKeyFile, pki.Options{
			CommonName: "etcd",
			Hosts:      []string{"localhost"},
			IPs:        loopback,
			Usage:      pki.ServerAuth | pki.ClientAuth,
		}},
		{APIServerEtcdCertFile, APIServerEtcdKeyFile, pki.Options{
			CommonName: "kube-apiserver-etcd-client",
			Usage:      pki.ClientAuth,
		}},
	}
	for _, c := range issue {
		c.opts.Validity = certificateLifetime
		kp, err := ca.Issue(c.opts)
		if err != nil {
			return fmt.Errorf("issuing %s: %w", c.cert, err)
		}
		if err := kp.WriteFiles(p.path(c.cert), p.path(c.key)); err != nil {
			return err
		}
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating service-account key: %w", err)
	}
	if err := pki.WriteKey(p.path(ServiceAccountKeyFile), saKey); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return fmt.Errorf("encoding service-account public key: %w", err)
	}
	return pki.WritePEM(p.path(ServiceAccountPubFile), "PUBLIC KEY", pub, 0o600)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, os.ErrNotExist)
}
