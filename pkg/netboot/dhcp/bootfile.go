package dhcp

import (
	"fmt"
	"net"
)

// BootFiles names the iPXE binary served to each architecture family.
type BootFiles struct {
	BIOS   string // default undionly.kpxe
	EFIx64 string // default ipxe.efi
	EFIArm string // default snp-arm64.efi
}

// DefaultBootFiles are the Debian ipxe package names (arm64 as Tinkerbell names it).
var DefaultBootFiles = BootFiles{BIOS: "undionly.kpxe", EFIx64: "ipxe.efi", EFIArm: "snp-arm64.efi"}

// For returns the binary for a family, "" when there is none.
func (b BootFiles) For(f Family) string {
	switch f {
	case FamilyBIOS:
		return b.BIOS
	case FamilyEFIx64:
		return b.EFIx64
	case FamilyEFIArm:
		return b.EFIArm
	}
	return ""
}

// URLs builds the HTTP addresses kiln hands out.
type URLs struct {
	// HTTPBase is kiln's HTTP listener as clients reach it, e.g. http://10.0.0.1:7080.
	HTTPBase string
}

// Script is the per-machine iPXE script URL.
func (u URLs) Script(mac net.HardwareAddr) string {
	return fmt.Sprintf("%s/ipxe/%s/auto.ipxe", u.HTTPBase, mac)
}

// Binary is the HTTP URL of an iPXE binary, with the MAC as a directory so
// the HTTP log names the machine.
func (u URLs) Binary(mac net.HardwareAddr, file string) string {
	return fmt.Sprintf("%s/ipxe/binary/%s/%s", u.HTTPBase, mac, file)
}

// Boot is the netboot part of a reply.
type Boot struct {
	File        string // the `file` header field (option 67 equivalent)
	ClassID     string // option 60 to send back ("PXEClient" / "HTTPClient"), "" for none
	PXEVendor   bool   // send option 43 with PXE discovery control = 8 (boot the file, no discovery)
	IPXE        bool   // the client runs iPXE: send 175.176 (no-pxedhcp)
	Description string // for logs: why this file
}

// Decide chooses the boot file for a netboot client. ok is false when the
// client gets no boot information (with the reason in b.Description).
//
// Order: a client already running iPXE gets its script URL (so iPXE ROMs
// never loop back into iPXE); a UEFI HTTP-boot client gets an http:// URL
// to the binary for its architecture; a PXE ROM gets the bare binary name
// to fetch over TFTP from next-server.
func Decide(c Client, files BootFiles, urls URLs) (b Boot, ok bool) {
	switch {
	case !c.Netboot:
		return Boot{Description: "not a netboot client: " + c.NotNetbootReason}, false
	case c.IPXE:
		return Boot{File: urls.Script(c.MAC), ClassID: string(ClientPXE), IPXE: true, Description: "iPXE client: script"}, true
	}
	name := files.For(c.Family)
	if name == "" {
		if c.Family == FamilyUnknown {
			return Boot{Description: fmt.Sprintf("client architecture %d (option 93) has no iPXE binary", c.Arch)}, false
		}
		return Boot{Description: fmt.Sprintf("no iPXE binary configured for %s", c.Family)}, false
	}
	if c.ClientType == ClientHTTP {
		return Boot{File: urls.Binary(c.MAC, name), ClassID: string(ClientHTTP), Description: "UEFI HTTP boot: " + name}, true
	}
	return Boot{File: name, ClassID: string(ClientPXE), PXEVendor: true, Description: fmt.Sprintf("PXE %s: %s over TFTP", c.Family, name)}, true
}
