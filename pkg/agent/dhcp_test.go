package agent_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/kiln-dev/kiln/pkg/agent"
	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/netboot/dhcp"
	"github.com/kiln-dev/kiln/pkg/netns"
)

// TestBringUpDHCP runs the PID 1 network bring-up against kiln's own DHCP
// server across a veth pair between two network namespaces: the interface is
// found by its MAC, gets the reserved address and default route, and the
// name servers land in the given resolv.conf (not the host's).
func TestBringUpDHCP(t *testing.T) {
	p := netns.PairForTest(t, "kn4d", "10.77.4.1/24", "")
	const clientMAC = "02:00:00:4b:00:01"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Client.IP(ctx, "link", "set", p.ClientLink, "address", clientMAC); err != nil {
		t.Fatal(err)
	}
	// Take the link down so the agent has to bring it up itself.
	if err := p.Client.IP(ctx, "link", "set", p.ClientLink, "down"); err != nil {
		t.Fatal(err)
	}
	inv := &hardware.Inventory{Machines: []hardware.Machine{{
		Hostname: "kn4-dhcp", MAC: clientMAC, IPAddress: "10.77.4.20", Netmask: "255.255.255.0",
		Gateway: "10.77.4.1", Nameservers: []string{"10.77.4.53"}, Disk: "/dev/vda",
	}}}
	srv, err := dhcp.New(dhcp.Config{Mode: dhcp.ModeReservation, ServerIP: net.ParseIP("10.77.4.1"), Machines: inv, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var conn net.PacketConn
	if err := p.Server.Do(func() error {
		var err error
		conn, err = dhcp.Listen(p.ServerLink, dhcpv4.ServerPort)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, conn) }()
	defer func() { cancel(); <-served }()

	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	var ip net.IP
	if err := p.Client.Do(func() error {
		if _, err := agent.InterfaceByMAC("02:00:00:4b:00:99"); err == nil || !strings.Contains(err.Error(), "no interface has MAC") {
			t.Errorf("unknown MAC: %v", err)
		}
		var err error
		ip, err = agent.BringUpDHCP(ctx, strings.ToUpper(clientMAC), resolv, slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !ip.Equal(net.ParseIP("10.77.4.20")) {
		t.Fatalf("leased %v, want the reserved 10.77.4.20", ip)
	}
	addr, err := p.Client.Output(ctx, "ip", "-4", "-o", "addr", "show", "dev", p.ClientLink)
	if err != nil || !strings.Contains(string(addr), "10.77.4.20/24") {
		t.Errorf("client address: %s %v", addr, err)
	}
	route, err := p.Client.Output(ctx, "ip", "-4", "route", "show", "default")
	if err != nil || !strings.Contains(string(route), "via 10.77.4.1") {
		t.Errorf("default route: %q %v", route, err)
	}
	if b, err := os.ReadFile(resolv); err != nil || string(b) != "nameserver 10.77.4.53\n" {
		t.Errorf("resolv.conf = %q, %v", b, err)
	}
}
