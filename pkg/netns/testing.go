package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"
)

// UniqueName returns prefix followed by random hex, MaxNameLen characters
// at most, so parallel tests and parallel helpers never collide.
func UniqueName(prefix string) string {
	n := MaxNameLen - len(prefix)
	if n > 8 {
		n = 8
	}
	if n < 2 {
		n = 2
	}
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)[:n]
}

// ForTest creates a namespace named prefix+random for the test and deletes it
// when the test ends, whether it passes or fails. It skips the test when
// namespaces are not available (not root, no iproute2).
func ForTest(t testing.TB, prefix string) *Namespace {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns, err := Create(ctx, UniqueName(prefix))
	if err != nil {
		t.Fatalf("create network namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ns.Delete(ctx); err != nil {
			t.Errorf("delete network namespace %s: %v", ns.Name, err)
		}
	})
	return ns
}

// Pair is two namespaces joined by a veth pair, each end addressed: the
// usual server/client set-up for DHCP, TFTP and HTTP tests.
type Pair struct {
	Server, Client         *Namespace
	ServerLink, ClientLink string
}

// PairForTest creates two namespaces joined by a veth pair; serverCIDR is
// assigned to the server end, clientCIDR to the client end unless empty (a
// DHCP client starts without an address). Everything is removed at test end.
func PairForTest(t testing.TB, prefix, serverCIDR, clientCIDR string) *Pair {
	t.Helper()
	p := &Pair{Server: ForTest(t, prefix), Client: ForTest(t, prefix)}
	p.ServerLink, p.ClientLink = prefix+"s0", prefix+"c0"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := AddVeth(ctx, p.ServerLink, p.Server, p.ClientLink, p.Client); err != nil {
		t.Fatalf("create veth pair: %v", err)
	}
	if err := AddAddr(ctx, p.Server, p.ServerLink, serverCIDR); err != nil {
		t.Fatal(err)
	}
	if clientCIDR != "" {
		if err := AddAddr(ctx, p.Client, p.ClientLink, clientCIDR); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// String describes the pair for test logs.
func (p *Pair) String() string {
	return fmt.Sprintf("%s(%s) <-> %s(%s)", p.Server.Name, p.ServerLink, p.Client.Name, p.ClientLink)
}
