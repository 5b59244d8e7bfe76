package proxyproto

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// listen starts a Listener on 127.0.0.1 and a goroutine handing its
// accepted connections to the returned channel.
func listen(t *testing.T, o Options) (*Listener, <-chan net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, o)
	ch := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		close(ch)
		for c := range ch {
			_ = c.Close()
		}
	})
	return l, ch
}

func dial(t *testing.T, l *Listener, send string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", l.Addr().String(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func accept(t *testing.T, ch <-chan net.Conn) *Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c.(*Conn)
	case <-time.After(time.Minute):
		t.Fatal("no connection accepted within a minute")
		return nil
	}
}

// closedByPeer waits (generously) for the listener side to close c.
func closedByPeer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	n, err := c.Read(make([]byte, 64))
	if n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestListenerHeaders(t *testing.T) {
	l, ch := listen(t, Options{})
	for _, tc := range []struct {
		name, send, after string
		proxy             string // "": none
		raw               bool
	}{
		// A version 1 header is peeked and read exactly: the request
		// behind it stays in the socket, so the raw path stays too.
		{"v1 with data in the same write", "PROXY TCP4 203.0.113.7 127.0.0.1 51234 8000\r\nGET / HTTP/1.1\r\n", "", "203.0.113.7:51234", true},
		{"v1 alone", "PROXY TCP6 2001:db8::7 ::1 1 2\r\n", "hello", "[2001:db8::7]:1", true},
		{"v1 UNKNOWN", "PROXY UNKNOWN\r\n", "hello", "", true},
		{"v2 TCP4 with TLVs", string(v2(0x21, 0x11, []byte{198, 51, 100, 1, 127, 0, 0, 1}, ports(4000, 8000), tlv(5, "vpce"))), "hello", "198.51.100.1:4000", true},
		{"v2 LOCAL", string(v2(0x20, 0x00)), "hello", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := dial(t, l, tc.send)
			c := accept(t, ch)
			defer func() { _ = c.Close() }()
			if got, want := c.RemoteAddr().String(), cc.LocalAddr().String(); got != want {
				t.Errorf("RemoteAddr = %s, want the TCP peer %s", got, want)
			}
			ap, ok := c.ProxyAddr()
			if tc.proxy == "" && ok || tc.proxy != "" && (!ok || ap != netip.MustParseAddrPort(tc.proxy)) {
				t.Errorf("ProxyAddr = %v %v, want %q", ap, ok, tc.proxy)
			}
			if _, ok := c.Raw(); ok != tc.raw {
				t.Errorf("Raw ok = %v, want %v", ok, tc.raw)
			}
			// Whatever followed the header, in the same write or
			// later, arrives intact.
			_, hlen, _ := Parse([]byte(tc.send))
			want := tc.send[hlen:] + tc.after
			if _, err := io.WriteString(cc, tc.after); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Minute))
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
				t.Errorf("read %q, %v; want %q", got, err, want)
			}
		})
	}
}

// TestListenerV1SplitHeader: a version 1 header that arrives in pieces is
// waited for (the peek sees part of it) and then read exactly.
func TestListenerV1SplitHeader(t *testing.T) {
	l, ch := listen(t, Options{})
	cc := dial(t, l, "PROXY TCP4 203.0.113.7 127.0.0.1 5")
	time.Sleep(50 * time.Millisecond) // a second segment, most likely
	if _, err := io.WriteString(cc, "1234 8000\r\nGET /"); err != nil {
		t.Fatal(err)
	}
	c := accept(t, ch)
	defer func() { _ = c.Close() }()
	if ap, ok := c.ProxyAddr(); !ok || ap != netip.MustParseAddrPort("203.0.113.7:51234") {
		t.Errorf("ProxyAddr = %v %v", ap, ok)
	}
	if _, ok := c.Raw(); !ok {
		t.Error("bytes past the header were read")
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "GET /" {
		t.Errorf("read %q, %v", got, err)
	}
}

func TestListenerRefusesBrokenHeaders(t *testing.T) {
	l, ch := listen(t, Options{})
	for _, send := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"PROXY TCP4 1.2.3.4 1.2.3.5 99999 2\r\n",
		string(v2(0x21, 0x12, make([]byte, 12))),
	} {
		closedByPeer(t, dial(t, l, send))
	}
	// A good one after them still gets through, and is the only one.
	dial(t, l, "PROXY UNKNOWN\r\n")
	c := accept(t, ch)
	if _, ok := c.ProxyAddr(); ok {
		t.Fatalf("accepted %v, want the UNKNOWN one", c.Header())
	}
	select {
	case c := <-ch:
		t.Fatalf("a broken connection was accepted: %+v", c.(*Conn).Header())
	default:
	}
}

func TestListenerSilentClientDoesNotBlock(t *testing.T) {
	l, ch := listen(t, Options{})
	silent := dial(t, l, "")
	partial := dial(t, l, "PROXY TCP4 1.2.")
	dial(t, l, "PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n")
	if ap, _ := accept(t, ch).ProxyAddr(); ap.Addr() != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("accepted %v, want the complete header's connection", ap)
	}
	// The partial header completes later.
	if _, err := io.WriteString(partial, "3.4 127.0.0.1 1 2\r\n"); err != nil {
		t.Fatal(err)
	}
	if ap, _ := accept(t, ch).ProxyAddr(); ap.Addr() != netip.MustParseAddr("1.2.3.4") {
		t.Fatalf("accepted %v, want the completed header's connection", ap)
	}
	// Closing the listener closes the silent one.
	_ = l.Close()
	closedByPeer(t, silent)
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

func TestListenerHeaderTimeout(t *testing.T) {
	l, _ := listen(t, Options{HeaderTimeout: 100 * time.Millisecond})
	closedByPeer(t, dial(t, l, "PROXY "))
}
