package netns

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"kn3a", true},
		{"kn3-123456789ab", true},
		{"kn3-123456789abc", false},
		{"", false},
		{"a/b", false},
		{"a b", false},
	}
	for _, tc := range tests {
		if err := CheckName(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestUniqueName(t *testing.T) {
	a, b := UniqueName("kn3"), UniqueName("kn3")
	if a == b || !strings.HasPrefix(a, "kn3") || len(a) > MaxNameLen {
		t.Fatalf("UniqueName gave %q and %q", a, b)
	}
}

// TestPairTraffic proves a veth pair between two namespaces carries traffic:
// a TCP listener opened with Do in the server namespace is reached by a
// command run in the client namespace.
func TestPairTraffic(t *testing.T) {
	p := PairForTest(t, "kn3t", "10.203.0.1/24", "10.203.0.2/24")
	var ln net.Listener
	if err := p.Server.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", "10.203.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("hello from " + p.Server.Name))
		_ = c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	port := ln.Addr().(*net.TCPAddr).Port
	var got []byte
	err := p.Client.Do(func() error {
		c, err := net.DialTimeout("tcp4", net.JoinHostPort("10.203.0.1", strconv.Itoa(port)), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		got = buf[:n]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "hello from "+p.Server.Name {
		t.Fatalf("got %q", got)
	}
	// The server address is not reachable from the current namespace.
	if _, err := net.DialTimeout("tcp4", ln.Addr().String(), 300*time.Millisecond); err == nil {
		t.Fatal("listener inside the namespace is reachable from outside it")
	}
	out, err := p.Client.Output(ctx, "ip", "-o", "addr", "show", "dev", p.ClientLink)
	if err != nil || !strings.Contains(string(out), "10.203.0.2/24") {
		t.Fatalf("ip addr in client netns: %s %v", out, err)
	}
}

func TestBridgeAndTap(t *testing.T) {
	ns := ForTest(t, "kn3t")
	ctx := context.Background()
	if err := AddBridge(ctx, ns, "kn3br0"); err != nil {
		t.Fatal(err)
	}
	if err := AddTap(ctx, ns, "kn3tap0", "kn3br0"); err != nil {
		t.Fatal(err)
	}
	out, err := ns.Output(ctx, "ip", "-o", "link", "show", "kn3tap0")
	if err != nil || !strings.Contains(string(out), "master kn3br0") {
		t.Fatalf("tap not on bridge: %s %v", out, err)
	}
	if err := DeleteLink(ctx, ns, "kn3tap0"); err != nil {
		t.Fatal(err)
	}
	if err := DeleteLink(ctx, ns, "kn3tap0"); err != nil {
		t.Fatalf("deleting a missing link: %v", err)
	}
}
