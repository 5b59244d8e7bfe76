package dhcp

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// ClientType is what option 60 (vendor class identifier) says the client is.
type ClientType string

// Client types recognised in option 60.
const (
	ClientNone ClientType = ""           // an ordinary DHCP client
	ClientPXE  ClientType = "PXEClient"  // a PXE ROM or an iPXE binary
	ClientHTTP ClientType = "HTTPClient" // UEFI HTTP boot
)

// Family groups client architectures (option 93) by the iPXE binary they need.
type Family string

// Architecture families.
const (
	FamilyUnknown Family = ""
	FamilyBIOS    Family = "bios"       // x86 legacy BIOS: undionly.kpxe
	FamilyEFIx64  Family = "efi-x86_64" // x86 UEFI: ipxe.efi
	FamilyEFIArm  Family = "efi-arm64"  // ARM UEFI: snp-arm64.efi
)

// archUnknown marks a missing or unrecognised option 93.
const archUnknown = 0xffff

// archFamily is the option 93 → binary family table (RFC 4578 and the IANA
// processor architecture registry).
var archFamily = map[uint16]Family{
	0: FamilyBIOS, 1: FamilyBIOS, 2: FamilyBIOS, 3: FamilyBIOS, 4: FamilyBIOS, 5: FamilyBIOS,
	20: FamilyBIOS, // PC/AT BIOS with HTTP
	6:  FamilyEFIx64, 7: FamilyEFIx64, 8: FamilyEFIx64, 9: FamilyEFIx64,
	15: FamilyEFIx64, 16: FamilyEFIx64, // x86/x64 UEFI HTTP
	10: FamilyEFIArm, 11: FamilyEFIArm, 18: FamilyEFIArm, 19: FamilyEFIArm,
}

// User classes (option 77) that mean "this client is already running iPXE".
var ipxeUserClasses = map[string]bool{"iPXE": true, "Tinkerbell": true, "kiln": true}

// Client is what kiln learnt about a DHCP client from its request.
type Client struct {
	MAC        net.HardwareAddr
	Type       dhcpv4.MessageType
	ClientType ClientType
	Arch       uint16 // option 93, archUnknown when absent
	Family     Family
	UserClass  string // option 77 as sent (raw or first RFC 3004 entry)
	IPXE       bool   // the client runs iPXE (option 77 iPXE/Tinkerbell/kiln or option 175 present)
	// Netboot is true for a well-formed PXE/HTTP boot request (option 60
	// PXEClient/HTTPClient and options 93 and 94, option 97 absent or
	// 17 bytes with a leading zero) or any iPXE request.
	Netboot bool
	// Why the client is not a netboot client (empty when Netboot).
	NotNetbootReason string
}

// Classify reads options 60, 77, 93, 94, 97 and 175 of req.
func Classify(req *dhcpv4.DHCPv4) Client {
	c := Client{MAC: req.ClientHWAddr, Type: req.MessageType(), Arch: archUnknown}
	vc := req.ClassIdentifier()
	switch {
	case strings.HasPrefix(vc, string(ClientHTTP)):
		c.ClientType = ClientHTTP
	case strings.HasPrefix(vc, string(ClientPXE)):
		c.ClientType = ClientPXE
	}
	if raw := req.Options.Get(dhcpv4.OptionClientSystemArchitectureType); len(raw) >= 2 {
		c.Arch = binary.BigEndian.Uint16(raw[:2])
		c.Family = archFamily[c.Arch]
	}
	c.UserClass = userClass(req.Options.Get(dhcpv4.OptionUserClassInformation))
	_, has175 := req.Options[175]
	c.IPXE = ipxeUserClasses[c.UserClass] || has175

	switch {
	case c.Type != dhcpv4.MessageTypeDiscover && c.Type != dhcpv4.MessageTypeRequest:
		c.NotNetbootReason = fmt.Sprintf("message type %s", c.Type)
	case c.IPXE:
		c.Netboot = true
	case c.ClientType == ClientNone:
		c.NotNetbootReason = "no PXEClient/HTTPClient vendor class (option 60)"
	case req.Options.Get(dhcpv4.OptionClientSystemArchitectureType) == nil:
		c.NotNetbootReason = "no client architecture (option 93)"
	case req.Options.Get(dhcpv4.OptionClientNetworkInterfaceIdentifier) == nil:
		c.NotNetbootReason = "no network interface identifier (option 94)"
	default:
		if g, ok := req.Options[uint8(dhcpv4.OptionClientMachineIdentifier)]; ok && (len(g) != 17 || g[0] != 0) {
			c.NotNetbootReason = "malformed client machine identifier (option 97)"
			break
		}
		c.Netboot = true
	}
	return c
}

// userClass returns option 77 as a string: iPXE sends the raw bytes "iPXE",
// RFC 3004 clients send length-prefixed entries (the first one is used).
func userClass(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if int(b[0]) == len(b)-1 && b[0] > 0 && isPrintable(b[1:]) {
		return string(b[1:])
	}
	return string(b)
}

func isPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
