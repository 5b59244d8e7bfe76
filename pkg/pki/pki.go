// Package pki issues the self-signed CAs and leaf certificates kiln's
// services and tests use. Every key is ECDSA P-256; private keys are encoded
// as PKCS#8 ("PRIVATE KEY") PEM.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// DefaultValidity is how long a certificate is valid when Options.Validity is zero.
const DefaultValidity = 365 * 24 * time.Hour

// Usage selects the extended key usages of a certificate.
type Usage int

// Usage bits; combine with |.
const (
	ServerAuth Usage = 1 << iota
	ClientAuth
)

// Options describe one certificate.
type Options struct {
	CommonName   string
	Organization []string
	// Hosts are IP literals (put into the IP SANs) and DNS names (DNS SANs);
	// empty entries are skipped.
	Hosts []string
	// IPs are added to the IP SANs as they are.
	IPs []net.IP
	// Usage is the extended key usage; zero means none.
	Usage Usage
	// Validity is the lifetime from now; zero means DefaultValidity. Every
	// certificate is back-dated by an hour against clock skew.
	Validity time.Duration
}

// KeyPair is a certificate and its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// CA is a key pair that signs other certificates.
type CA struct{ KeyPair }

// NewCA makes a self-signed CA (key usage cert sign, CRL sign and digital
// signature). o.Usage and the SANs are applied too, so a CA may also serve
// as its own server certificate.
func NewCA(o Options) (*CA, error) {
	kp, err := create(o, true, nil)
	if err != nil {
		return nil, err
	}
	return &CA{kp}, nil
}

// Issue makes a leaf certificate signed by ca (key usage digital signature
// and key encipherment).
func (ca *CA) Issue(o Options) (KeyPair, error) {
	return create(o, false, &ca.KeyPair)
}

// SelfSigned makes a certificate that signs itself. It is marked as a CA so
// that a pool holding it (Pool) trusts it as a root.
func SelfSigned(o Options) (KeyPair, error) {
	return create(o, true, nil)
}

func create(o Options, isCA bool, parent *KeyPair) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generating the key for certificate %q: %w", o.CommonName, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return KeyPair{}, fmt.Errorf("generating the serial of certificate %q: %w", o.CommonName, err)
	}
	validity := o.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: o.CommonName, Organization: o.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		IPAddresses:  append([]net.IP(nil), o.IPs...),
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	}
	if o.Usage&ServerAuth != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if o.Usage&ClientAuth != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		return KeyPair{}, fmt.Errorf("signing certificate %q: %w", o.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return KeyPair{}, fmt.Errorf("parsing certificate %q: %w", o.CommonName, err)
	}
	return KeyPair{Cert: cert, Key: key}, nil
}

// TLS returns the pair as a tls.Certificate (with Leaf set).
func (kp KeyPair) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{kp.Cert.Raw}, PrivateKey: kp.Key, Leaf: kp.Cert}
}

// Pool returns a certificate pool that trusts only kp's certificate.
func (kp KeyPair) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(kp.Cert)
	return p
}

// CertPEM is the certificate as a PEM "CERTIFICATE" block.
func (kp KeyPair) CertPEM() []byte { return CertPEM(kp.Cert) }

// KeyPEM is the private key as a PKCS#8 PEM "PRIVATE KEY" block.
func (kp KeyPair) KeyPEM() ([]byte, error) { return KeyPEM(kp.Key) }

// WriteFiles writes the certificate (mode 0644) and key (mode 0600) as PEM.
func (kp KeyPair) WriteFiles(certPath, keyPath string) error {
	if err := WritePEM(certPath, "CERTIFICATE", kp.Cert.Raw, 0o644); err != nil {
		return err
	}
	return WriteKey(keyPath, kp.Key)
}

// CertPEM encodes cert as a PEM "CERTIFICATE" block.
func CertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// KeyPEM encodes key (any type x509.MarshalPKCS8PrivateKey takes) as a
// PKCS#8 PEM "PRIVATE KEY" block.
func KeyPEM(key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteKey writes key as PKCS#8 PEM to path with mode 0600.
func WriteKey(path string, key any) error {
	data, err := KeyPEM(key)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeFile(path, data, 0o600)
}

// WritePEM writes der as one PEM block of type typ to path.
func WritePEM(path, typ string, der []byte, mode os.FileMode) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// SelfSignedPEM makes a self-signed certificate (see SelfSigned) and returns
// it and its key as PEM, the form Kong's certificate entities carry.
func SelfSignedPEM(o Options) (certPEM, keyPEM []byte, err error) {
	kp, err := SelfSigned(o)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = kp.KeyPEM()
	if err != nil {
		return nil, nil, err
	}
	return kp.CertPEM(), keyPEM, nil
}
