// Package tcptest starts loopback TCP servers for tests: a peer that
// speaks raw bytes (or nothing at all) where a test needs one. It imports
// only the standard library, so any package's tests can use it.
package tcptest

import (
	"net"
	"testing"
)

// Serve listens on a free loopback port and hands every accepted
// connection to serve, each in a goroutine of its own, until the test
// ends. It returns the listener's address.
func Serve(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}
