package server_test

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/proxytest"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
	"github.com/kiln-dev/kiln/pkg/syncbuf"
)

// TestAcceptOutOfDescriptors: when the process has no descriptor left for
// a new connection, accepting pauses (and says so) instead of stopping or
// spinning; the connections that waited are served once descriptors are
// free again. The clients' sockets are made before the limit is lowered,
// since they live in the same process.
func TestAcceptOutOfDescriptors(t *testing.T) {
	up := proxytest.StartEcho(t, "up")
	logs := &syncbuf.Buffer{}
	e, gw := proxytest.StartGatewayOptions(t, server.Options{Log: slog.New(slog.NewTextHandler(logs, nil))})
	routeAllTo(t, e, up)
	// A first request: the upstream connection exists before the limit.
	if resp := raw(t, strings.TrimPrefix(gw, "http://"), "GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(resp, "HTTP/1.1 200") {
		t.Fatalf("warm-up answer:\n%s", resp)
	}
	addr, err := net.ResolveTCPAddr("tcp", strings.TrimPrefix(gw, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	var fds [n]int
	for i := range fds {
		if fds[i], err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0); err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fds[i])
		tv := syscall.Timeval{Sec: 10}
		_ = syscall.SetsockoptTimeval(fds[i], syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	}

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// A new descriptor takes the lowest free number; below the limit
	// none is free.
	probe, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	lowest := probe.Fd()
	_ = probe.Close()
	low := lim
	low.Cur = uint64(lowest)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	sa := &syscall.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	for i, fd := range fds {
		if err := syscall.Connect(fd, sa); err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
		req := fmt.Sprintf("GET /held/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", i)
		if _, err := syscall.Write(fd, []byte(req)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "accept failed; pausing accepts") {
		if time.Now().After(deadline) {
			t.Fatalf("no accept failure was logged with no descriptor left; log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	restore()
	for i, fd := range fds {
		b, err := readAllFD(fd)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if !strings.HasPrefix(string(b), "HTTP/1.1 200") || !strings.Contains(string(b), fmt.Sprintf(`"uri":"/held/%d"`, i)) {
			t.Fatalf("client %d was answered:\n%s\nlog:\n%s", i, b, logs.String())
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") && strings.Count(logs.String(), "pausing accepts") > 200 {
		t.Fatalf("accepting spun while out of descriptors:\n%.2000s", logs.String())
	}
}

// readAllFD reads a blocking socket until the peer closes it.
func readAllFD(fd int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := syscall.Read(fd, buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return out, err
		case n == 0:
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}
