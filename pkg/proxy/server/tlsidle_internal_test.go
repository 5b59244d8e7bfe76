package server

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/pki"
)

// readSignal tells, on each Read, that a read is about to wait.
type readSignal struct {
	net.Conn
	reading chan struct{}
}

func (r *readSignal) Read(p []byte) (int, error) {
	select {
	case r.reading <- struct{}{}:
	default:
	}
	return r.Conn.Read(p)
}

// TestIdleTLSConnectionHoldsNoBuffers: a TLS connection waiting for its
// next request has given its read and write buffers back, and the request
// that ends the wait is read whole (its first byte included).
func TestIdleTLSConnectionHoldsNoBuffers(t *testing.T) {
	certPEM, keyPEM, err := pki.SelfSignedPEM(pki.Options{CommonName: "h", Hosts: []string{"h"}, Usage: pki.ServerAuth, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := &h1Server{e: e, tls: &tls.Config{Certificates: []tls.Certificate{cert}}}
	serverSide, clientSide := net.Pipe()
	defer clientSide.Close()
	sig := &readSignal{Conn: serverSide, reading: make(chan struct{})}
	c := &h1Conn{s: s, nc: sig, remoteAddr: "192.0.2.1:1234"}
	c.init()
	defer serverSide.Close()

	client := tls.Client(clientSide, &tls.Config{ServerName: "h", InsecureSkipVerify: true}) //nolint:gosec // the test's own certificate
	handshook := make(chan error, 1)
	go func() { handshook <- client.Handshake() }()
	handshakeReads := sig.reading
	go func() {
		for range handshakeReads {
		}
	}()
	if err := c.tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-handshook; err != nil {
		t.Fatal(err)
	}
	sig.reading = make(chan struct{}, 1)
	close(handshakeReads)
	got := make(chan error, 1)
	go func() { _, err := c.awaitRequest(); got <- err }()
	select {
	case <-sig.reading:
	case <-time.After(10 * time.Second):
		t.Fatal("awaitRequest did not start waiting")
	}
	if c.br != nil || c.bw != nil {
		t.Fatalf("waiting for a request with buffers: reader %v, writer %v", c.br != nil, c.bw != nil)
	}
	go io.WriteString(client, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if status, err := c.readRequest(); err != nil || c.x.req.Method != "GET" || c.x.req.URL.Path != "/next" {
		t.Fatalf("request after the wait: %d %v, %s %v", status, err, c.x.req.Method, c.x.req.URL)
	}
}
