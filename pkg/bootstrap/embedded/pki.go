package embedded

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
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

// pki is the certificate set of one embedded control plane: a private CA,
// serving certificates for kube-apiserver and etcd, and client certificates
// for the administrator and for kube-apiserver → etcd.
type pki struct {
	dir string
}

func (p pki) path(name string) string { return filepath.Join(p.dir, name) }

// ensure creates every certificate and key that does not exist yet. Existing
// files are kept so a restart on the same data directory keeps the same CA
// and the kubeconfig written earlier stays valid.
func (p pki) ensure(hosts []net.IP) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return fmt.Errorf("creating certificate directory %s: %w", p.dir, err)
	}
	if fileExists(p.path(CACertFile)) && fileExists(p.path(CAKeyFile)) &&
		fileExists(p.path(APIServerCertFile)) && fileExists(p.path(AdminCertFile)) &&
		fileExists(p.path(EtcdServerCertFile)) && fileExists(p.path(APIServerEtcdCertFile)) &&
		fileExists(p.path(ServiceAccountKeyFile)) {
		return nil
	}
	ca, caSigner, err := newCA("kiln-bootstrap-ca")
	if err != nil {
		return err
	}
	if err := writeCertKey(p.path(CACertFile), p.path(CAKeyFile), ca, caSigner); err != nil {
		return err
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	all := append(append([]net.IP{}, loopback...), hosts...)
	issue := []struct {
		cert, key string
		tmpl      x509.Certificate
	}{
		{APIServerCertFile, APIServerKeyFile, x509.Certificate{
			Subject:     pkix.Name{CommonName: "kube-apiserver"},
			DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
			IPAddresses: all,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}},
		{AdminCertFile, AdminKeyFile, x509.Certificate{
			Subject:     pkix.Name{CommonName: "kiln-admin", Organization: []string{"system:masters"}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
		{EtcdServerCertFile, EtcdServerKeyFile, x509.Certificate{
			Subject:     pkix.Name{CommonName: "etcd"},
			DNSNames:    []string{"localhost"},
			IPAddresses: loopback,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}},
		{APIServerEtcdCertFile, APIServerEtcdKeyFile, x509.Certificate{
			Subject:     pkix.Name{CommonName: "kube-apiserver-etcd-client"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	}
	for _, c := range issue {
		cert, key, err := signLeaf(ca, caSigner, c.tmpl)
		if err != nil {
			return fmt.Errorf("issuing %s: %w", c.cert, err)
		}
		if err := writeCertKey(p.path(c.cert), p.path(c.key), cert, key); err != nil {
			return err
		}
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating service-account key: %w", err)
	}
	if err := writeKey(p.path(ServiceAccountKeyFile), saKey); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return fmt.Errorf("encoding service-account public key: %w", err)
	}
	return writePEM(p.path(ServiceAccountPubFile), "PUBLIC KEY", pub, 0o600)
}

func newCA(cn string) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"kiln"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * certificateLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signing CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	return cert, key, nil
}

func signLeaf(ca *x509.Certificate, CAKeyFile crypto.Signer, tmpl x509.Certificate) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(certificateLifetime)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca, &key.PublicKey, CAKeyFile)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, fmt.Errorf("generating certificate serial: %w", err)
	}
	return s, nil
}

func writeCertKey(certPath, keyPath string, cert *x509.Certificate, key crypto.Signer) error {
	if err := writePEM(certPath, "CERTIFICATE", cert.Raw, 0o644); err != nil {
		return err
	}
	return writeKey(keyPath, key)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key %s: %w", path, err)
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, os.ErrNotExist)
}
