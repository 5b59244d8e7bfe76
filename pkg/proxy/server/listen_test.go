package server_test

import (
	"context"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/server"
)

func TestParseListenKeepAlive(t *testing.T) {
	const sys = -1 // the system's value
	cases := []struct {
		in   string
		want net.KeepAliveConfig
		err  string
	}{
		{"127.0.0.1:8000", net.KeepAliveConfig{}, ""},
		{"127.0.0.1:8000 so_keepalive=off", net.KeepAliveConfig{}, ""},
		{"127.0.0.1:8000 so_keepalive=on", net.KeepAliveConfig{Enable: true, Idle: sys, Interval: sys, Count: sys}, ""},
		{"127.0.0.1:8000 reuseport so_keepalive=30m::10", net.KeepAliveConfig{Enable: true, Idle: 30 * time.Minute, Interval: sys, Count: 10}, ""},
		{"127.0.0.1:8000 so_keepalive=60:15:", net.KeepAliveConfig{Enable: true, Idle: time.Minute, Interval: 15 * time.Second, Count: sys}, ""},
		{"127.0.0.1:8000 so_keepalive=yes", net.KeepAliveConfig{}, "use on, off or keepidle:keepintvl:keepcnt"},
		{"127.0.0.1:8000 so_keepalive=0::", net.KeepAliveConfig{}, `"0" is not a time of at least 1s`},
		{"127.0.0.1:8000 so_keepalive=::x", net.KeepAliveConfig{}, `keepcnt "x" is not a positive number`},
	}
	for _, c := range cases {
		specs, err := server.ParseListen(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || len(specs) != 1 || specs[0].KeepAlive != c.want {
			t.Errorf("%q: %+v, %v; want keep-alive %+v", c.in, specs, err, c.want)
		}
	}
}

// TestListenKeepAlive checks the accepted sockets themselves: no TCP
// keep-alive probes by default (as Kong), the configured ones with
// so_keepalive.
func TestListenKeepAlive(t *testing.T) {
	for _, c := range []struct {
		flag     string
		on       bool
		idleSecs int
	}{{"", false, 0}, {"so_keepalive=45::3", true, 45}} {
		specs, err := server.ParseListen("127.0.0.1:0 " + c.flag)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := specs[0].Listen(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var on, idle int
		var serr error
		_ = rc.Control(func(fd uintptr) {
			if on, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); serr == nil {
				idle, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
			}
		})
		_ = client.Close()
		_ = conn.Close()
		_ = ln.Close()
		if serr != nil {
			t.Fatal(serr)
		}
		if (on != 0) != c.on || (c.on && idle != c.idleSecs) {
			t.Errorf("%q: SO_KEEPALIVE %d, TCP_KEEPIDLE %d; want on=%v idle %d", c.flag, on, idle, c.on, c.idleSecs)
		}
	}
}
