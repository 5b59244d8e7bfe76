// Package proxyproto reads the PROXY protocol (versions 1 and 2, as
// specified by HAProxy's proxy-protocol.txt) that load balancers such as
// HAProxy or an AWS NLB put in front of a TCP connection to pass on the
// client's address: a header parser and a net.Listener that consumes the
// header of every accepted connection.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// Limits from the specification.
const (
	// MaxV1Len is the longest version 1 header, CRLF included.
	MaxV1Len = 107
	// v2HeaderLen is the fixed part of a version 2 header.
	v2HeaderLen = 16
	// MaxV2Len is the longest version 2 header: the fixed part and a
	// 16-bit length.
	MaxV2Len = v2HeaderLen + 0xffff
	// minLen is the shortest header of either version
	// ("PROXY UNKNOWN\r\n").
	minLen = 15
)

// v2Sig opens every version 2 header.
var v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

var v1Prefix = []byte("PROXY ")

// ErrShort is returned by Parse when the bytes so far are a valid start of
// a header that is not complete yet.
var ErrShort = errors.New("proxy protocol: header incomplete")

// ErrNotProxy says the connection does not start with a PROXY protocol
// header at all.
var ErrNotProxy = errors.New("proxy protocol: no PROXY header (the peer must send one first: is it a load balancer configured for the PROXY protocol?)")

// Header is a parsed PROXY protocol header.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Local is set for headers that carry no client address: a version 2
	// LOCAL command (health checks from the proxy itself), "PROXY
	// UNKNOWN", or an unspecified or Unix-socket family. The receiver then
	// uses the connection's own endpoints.
	Local bool
	// Source and Dest are the client's address and the address it
	// connected to (zero when Local).
	Source, Dest netip.AddrPort
}

// Parse parses the PROXY protocol header at the start of b and returns it
// with its length in bytes. Bytes after the header are not looked at. When
// b is a valid but incomplete start of a header Parse returns ErrShort and
// the least number of bytes a complete header needs; ErrNotProxy when b
// cannot start one; another error for a malformed header.
func Parse(b []byte) (Header, int, error) {
	n := min(len(b), len(v2Sig))
	if bytes.Equal(b[:n], v2Sig[:n]) {
		if len(b) < v2HeaderLen {
			return Header{}, v2HeaderLen, ErrShort
		}
		return parseV2(b)
	}
	n = min(len(b), len(v1Prefix))
	if bytes.Equal(b[:n], v1Prefix[:n]) {
		return parseV1(b)
	}
	return Header{}, 0, ErrNotProxy
}

func parseV1(b []byte) (Header, int, error) {
	end := bytes.IndexByte(b[:min(len(b), MaxV1Len)], '\n')
	if end < 0 {
		if len(b) >= MaxV1Len {
			return Header{}, 0, fmt.Errorf("proxy protocol v1: no CRLF within %d bytes", MaxV1Len)
		}
		return Header{}, max(len(b)+1, minLen), ErrShort
	}
	if end == 0 || b[end-1] != '\r' {
		return Header{}, 0, errors.New("proxy protocol v1: line does not end with CRLF")
	}
	line := b[len(v1Prefix) : end-1]
	h := Header{Version: 1}
	fields := bytes.Split(line, []byte{' '})
	switch string(fields[0]) {
	case "UNKNOWN":
		// The rest of the line is to be ignored.
		h.Local = true
		return h, end + 1, nil
	case "TCP4", "TCP6":
	default:
		return Header{}, 0, fmt.Errorf("proxy protocol v1: unknown protocol %q (want TCP4, TCP6 or UNKNOWN)", fields[0])
	}
	if len(fields) != 5 {
		return Header{}, 0, fmt.Errorf("proxy protocol v1: %d fields after PROXY, want 5 (protocol, addresses and ports, single spaces)", len(fields))
	}
	v4 := string(fields[0]) == "TCP4"
	src, err := v1Addr(fields[1], v4)
	if err != nil {
		return Header{}, 0, err
	}
	dst, err := v1Addr(fields[2], v4)
	if err != nil {
		return Header{}, 0, err
	}
	sport, err := v1Port(fields[3])
	if err != nil {
		return Header{}, 0, err
	}
	dport, err := v1Port(fields[4])
	if err != nil {
		return Header{}, 0, err
	}
	h.Source = netip.AddrPortFrom(src, sport)
	h.Dest = netip.AddrPortFrom(dst, dport)
	return h, end + 1, nil
}

func v1Addr(f []byte, v4 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(string(f))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("proxy protocol v1: %q is not an IP address", f)
	}
	if a.Is4() != v4 {
		fam := "TCP6"
		if v4 {
			fam = "TCP4"
		}
		return netip.Addr{}, fmt.Errorf("proxy protocol v1: address %q does not match protocol %s", f, fam)
	}
	return a, nil
}

func v1Port(f []byte) (uint16, error) {
	if len(f) == 0 || len(f) > 5 || (len(f) > 1 && f[0] == '0') {
		return 0, fmt.Errorf("proxy protocol v1: bad port %q", f)
	}
	for _, c := range f {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("proxy protocol v1: bad port %q", f)
		}
	}
	p, err := strconv.ParseUint(string(f), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("proxy protocol v1: port %q out of range (0-65535)", f)
	}
	return uint16(p), nil
}

// Version 2 address blocks: family (high nibble) and transport (low).
const (
	famUnspec = 0x0
	famInet   = 0x1
	famInet6  = 0x2
	famUnix   = 0x3

	protoUnspec = 0x0
	protoStream = 0x1
	protoDgram  = 0x2
)

func parseV2(b []byte) (Header, int, error) {
	verCmd, famProto := b[12], b[13]
	total := v2HeaderLen + int(binary.BigEndian.Uint16(b[14:16]))
	if verCmd>>4 != 2 {
		return Header{}, 0, fmt.Errorf("proxy protocol v2: version %d, want 2", verCmd>>4)
	}
	cmd := verCmd & 0xf
	if cmd > 1 {
		return Header{}, 0, fmt.Errorf("proxy protocol v2: unknown command %#x", cmd)
	}
	fam, proto := famProto>>4, famProto&0xf
	if fam > famUnix || proto > protoDgram || (fam == famUnspec) != (proto == protoUnspec) {
		return Header{}, 0, fmt.Errorf("proxy protocol v2: unknown address family/protocol %#02x", famProto)
	}
	if len(b) < total {
		return Header{}, total, ErrShort
	}
	body := b[v2HeaderLen:total]
	var alen int
	switch fam {
	case famInet:
		alen = 12
	case famInet6:
		alen = 36
	case famUnix:
		alen = 216
	}
	if len(body) < alen {
		return Header{}, 0, fmt.Errorf("proxy protocol v2: %d address bytes, family %#x needs %d", len(body), fam, alen)
	}
	if err := checkTLVs(body[alen:]); err != nil {
		return Header{}, 0, err
	}
	h := Header{Version: 2}
	if cmd == 0 {
		// LOCAL: the address block, if any, is to be ignored.
		h.Local = true
		return h, total, nil
	}
	if proto == protoDgram {
		return Header{}, 0, errors.New("proxy protocol v2: header describes a datagram (UDP) connection on a stream listener")
	}
	switch fam {
	case famInet:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	case famInet6:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
	default:
		// Unspecified or Unix-socket: no IP address to pass on.
		h.Local = true
	}
	return h, total, nil
}

// checkTLVs checks that the bytes after the address block are a sequence
// of complete type-length-value records. Their contents are not used.
func checkTLVs(b []byte) error {
	for len(b) > 0 {
		if len(b) < 3 {
			return fmt.Errorf("proxy protocol v2: truncated TLV (%d bytes left)", len(b))
		}
		n := 3 + int(binary.BigEndian.Uint16(b[1:3]))
		if n > len(b) {
			return fmt.Errorf("proxy protocol v2: TLV type %#02x of %d bytes overruns the header (%d left)", b[0], n, len(b))
		}
		b = b[n:]
	}
	return nil
}
