package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCertificates(t *testing.T) {
	ca, err := NewCA(Options{CommonName: "test-ca", Organization: []string{"kiln"}, Validity: 10 * DefaultValidity})
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Fatalf("CA: IsCA=%v usage=%v", ca.Cert.IsCA, ca.Cert.KeyUsage)
	}
	roots := ca.Pool()
	cases := []struct {
		name     string
		opts     Options
		self     bool
		verifyAs x509.ExtKeyUsage
		dns      string
		wantDNS  []string
		wantIPs  int
		validity time.Duration
	}{
		{"server with hosts", Options{CommonName: "srv", Hosts: []string{"127.0.0.1", "localhost", "", "::1"}, Usage: ServerAuth},
			false, x509.ExtKeyUsageServerAuth, "localhost", []string{"localhost"}, 2, DefaultValidity},
		{"client", Options{CommonName: "admin", Organization: []string{"system:masters"}, Usage: ClientAuth, Validity: time.Hour},
			false, x509.ExtKeyUsageClientAuth, "", nil, 0, time.Hour},
		{"both with IPs", Options{CommonName: "etcd", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Hosts: []string{"etcd.local"}, Usage: ServerAuth | ClientAuth},
			false, x509.ExtKeyUsageClientAuth, "etcd.local", []string{"etcd.local"}, 1, DefaultValidity},
		{"self-signed", Options{CommonName: "bmc", Hosts: []string{"10.0.0.1", "bmc.test"}, Usage: ServerAuth},
			true, x509.ExtKeyUsageServerAuth, "bmc.test", []string{"bmc.test"}, 1, DefaultValidity},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var kp KeyPair
			var err error
			pool := roots
			if c.self {
				kp, err = SelfSigned(c.opts)
				pool = kp.Pool()
			} else {
				kp, err = ca.Issue(c.opts)
			}
			if err != nil {
				t.Fatal(err)
			}
			if kp.Cert.Subject.CommonName != c.opts.CommonName || len(kp.Cert.IPAddresses) != c.wantIPs ||
				len(kp.Cert.DNSNames) != len(c.wantDNS) || (len(c.wantDNS) > 0 && kp.Cert.DNSNames[0] != c.wantDNS[0]) {
				t.Fatalf("subject %v DNS %v IPs %v", kp.Cert.Subject, kp.Cert.DNSNames, kp.Cert.IPAddresses)
			}
			if got := kp.Cert.NotAfter.Sub(kp.Cert.NotBefore); got != c.validity+time.Hour {
				t.Errorf("validity %v, want %v", got, c.validity+time.Hour)
			}
			if _, err := kp.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: c.dns, KeyUsages: []x509.ExtKeyUsage{c.verifyAs}}); err != nil {
				t.Errorf("verify: %v", err)
			}
			if _, err := kp.Cert.Verify(x509.VerifyOptions{Roots: x509.NewCertPool()}); err == nil {
				t.Error("verified against an empty pool")
			}
			keyPEM, err := kp.KeyPEM()
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
				t.Fatalf("key PEM: %q", keyPEM)
			}
			if _, err := tls.X509KeyPair(kp.CertPEM(), keyPEM); err != nil {
				t.Errorf("PEM pair does not load: %v", err)
			}
			if kp.TLS().Leaf != kp.Cert {
				t.Error("TLS() lost the leaf")
			}
		})
	}
}

func TestWriteFiles(t *testing.T) {
	kp, err := SelfSigned(Options{CommonName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "x.crt"), filepath.Join(dir, "x.key")
	if err := kp.WriteFiles(crt, key); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{crt: 0o644, key: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode&^umask(t) {
			t.Errorf("%s mode %v, want %v", path, st.Mode().Perm(), mode)
		}
	}
	if _, err := tls.LoadX509KeyPair(crt, key); err != nil {
		t.Fatal(err)
	}
	if err := kp.WriteFiles(filepath.Join(dir, "missing", "a"), key); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

// umask returns the bits the process umask clears, measured with a file.
func umask(t *testing.T) os.FileMode {
	p := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(p, nil, 0o777); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return 0o777 &^ st.Mode().Perm()
}

func TestSelfSignedPEM(t *testing.T) {
	certPEM, keyPEM, err := SelfSignedPEM(Options{CommonName: "api.example.test", Hosts: []string{"api.example.test"}, Usage: ServerAuth})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.Leaf.VerifyHostname("api.example.test"); err != nil {
		t.Error(err)
	}
	if err := pair.Leaf.VerifyHostname("other.test"); err == nil {
		t.Error("certificate valid for a host it does not name")
	}
}
