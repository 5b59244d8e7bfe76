package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// v2 builds a version 2 header: verCmd, famProto, then the body.
func v2(verCmd, famProto byte, body ...[]byte) []byte {
	b := append([]byte{}, v2Sig...)
	b = append(b, verCmd, famProto, 0, 0)
	for _, p := range body {
		b = append(b, p...)
	}
	binary.BigEndian.PutUint16(b[14:16], uint16(len(b)-v2HeaderLen))
	return b
}

func ports(s, d uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, s), d)
}

func tlv(typ byte, v string) []byte {
	return append(binary.BigEndian.AppendUint16([]byte{typ}, uint16(len(v))), v...)
}

func TestParse(t *testing.T) {
	src4, dst4 := []byte{203, 0, 113, 7}, []byte{10, 0, 0, 1}
	src6 := netip.MustParseAddr("2001:db8::7").As16()
	dst6 := netip.MustParseAddr("2001:db8::1").As16()
	inet := v2(0x21, 0x11, src4, dst4, ports(51234, 443))
	for _, tc := range []struct {
		name string
		in   []byte
		want Header // compared when err is ""
		n    int    // header length (or the length needed for ErrShort)
		err  string // "": valid; "short": ErrShort; "not": ErrNotProxy; else an error substring
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n"),
			Header{Version: 1, Source: netip.MustParseAddrPort("203.0.113.7:51234"), Dest: netip.MustParseAddrPort("10.0.0.1:443")}, 43, ""},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 0 65535\r\n"),
			Header{Version: 1, Source: netip.MustParseAddrPort("[2001:db8::7]:0"), Dest: netip.MustParseAddrPort("[2001:db8::1]:65535")}, 44, ""},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Local: true}, 15, ""},
		{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nx"), Header{Version: 1, Local: true}, 59, ""},
		{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			Header{Version: 1, Source: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
				Dest: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}, 104, ""},
		{"v1 truncated", []byte("PROXY TCP4 203.0.113.7 10.0"), Header{}, 28, "short"},
		{"v1 prefix only", []byte("PRO"), Header{}, 15, "short"},
		{"v1 no CRLF in 107 bytes", []byte("PROXY UNKNOWN " + strings.Repeat("x", 100)), Header{}, 0, "no CRLF"},
		{"v1 LF without CR", []byte("PROXY UNKNOWN\n"), Header{}, 0, "CRLF"},
		{"v1 bad protocol", []byte("PROXY UDP4 1.2.3.4 1.2.3.5 1 2\r\n"), Header{}, 0, "unknown protocol"},
		{"v1 family mismatch", []byte("PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n"), Header{}, 0, "does not match"},
		{"v1 TCP6 with IPv4", []byte("PROXY TCP6 1.2.3.4 1.2.3.5 1 2\r\n"), Header{}, 0, "does not match"},
		{"v1 bad address", []byte("PROXY TCP4 1.2.3 1.2.3.5 1 2\r\n"), Header{}, 0, "not an IP"},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n"), Header{}, 0, "not an IP"},
		{"v1 port too big", []byte("PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n"), Header{}, 0, "out of range"},
		{"v1 port not a number", []byte("PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n"), Header{}, 0, "bad port"},
		{"v1 port leading zero", []byte("PROXY TCP4 1.2.3.4 1.2.3.5 080 2\r\n"), Header{}, 0, "bad port"},
		{"v1 missing port", []byte("PROXY TCP4 1.2.3.4 1.2.3.5 80\r\n"), Header{}, 0, "fields"},
		{"v1 double space", []byte("PROXY TCP4  1.2.3.4 1.2.3.5 80 2\r\n"), Header{}, 0, "fields"},
		{"v1 lowercase", []byte("proxy TCP4 1.2.3.4 1.2.3.5 80 2\r\n"), Header{}, 0, "not"},
		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Header{}, 0, "not"},
		{"TLS client hello", []byte{0x16, 0x03, 0x01, 0x00, 0xa5}, Header{}, 0, "not"},
		{"empty", nil, Header{}, 16, "short"},

		{"v2 TCP4", append(append([]byte{}, inet...), "GET"...),
			Header{Version: 2, Source: netip.MustParseAddrPort("203.0.113.7:51234"), Dest: netip.MustParseAddrPort("10.0.0.1:443")}, 28, ""},
		{"v2 TCP6", v2(0x21, 0x21, src6[:], dst6[:], ports(1, 2)),
			Header{Version: 2, Source: netip.MustParseAddrPort("[2001:db8::7]:1"), Dest: netip.MustParseAddrPort("[2001:db8::1]:2")}, 52, ""},
		{"v2 TLVs skipped", v2(0x21, 0x11, src4, dst4, ports(1, 2), tlv(0x05, "vpce-0123"), tlv(0x04, ""), tlv(0x20, "\x01\x00\x00\x00\x00")),
			Header{Version: 2, Source: netip.MustParseAddrPort("203.0.113.7:1"), Dest: netip.MustParseAddrPort("10.0.0.1:2")}, 28 + 12 + 3 + 8, ""},
		{"v2 LOCAL", v2(0x20, 0x00), Header{Version: 2, Local: true}, 16, ""},
		{"v2 LOCAL with addresses", v2(0x20, 0x11, src4, dst4, ports(1, 2)), Header{Version: 2, Local: true}, 28, ""},
		{"v2 UNSPEC", v2(0x21, 0x00), Header{Version: 2, Local: true}, 16, ""},
		{"v2 unix", v2(0x21, 0x31, make([]byte, 216)), Header{Version: 2, Local: true}, 232, ""},
		{"v2 signature only", v2Sig[:7], Header{}, 16, "short"},
		{"v2 truncated body", inet[:20], Header{}, 28, "short"},
		{"v2 version 1", v2(0x11, 0x11, src4, dst4, ports(1, 2)), Header{}, 0, "version"},
		{"v2 version 3", v2(0x31, 0x11, src4, dst4, ports(1, 2)), Header{}, 0, "version"},
		{"v2 bad command", v2(0x22, 0x11, src4, dst4, ports(1, 2)), Header{}, 0, "command"},
		{"v2 bad family", v2(0x21, 0x41, src4, dst4, ports(1, 2)), Header{}, 0, "family"},
		{"v2 bad transport", v2(0x21, 0x13, src4, dst4, ports(1, 2)), Header{}, 0, "family"},
		{"v2 INET unspec transport", v2(0x21, 0x10, src4, dst4, ports(1, 2)), Header{}, 0, "family"},
		{"v2 UDP", v2(0x21, 0x12, src4, dst4, ports(1, 2)), Header{}, 0, "datagram"},
		{"v2 INET short address block", v2(0x21, 0x11, src4, dst4), Header{}, 0, "address bytes"},
		{"v2 INET6 short address block", v2(0x21, 0x21, src6[:], dst6[:]), Header{}, 0, "address bytes"},
		{"v2 truncated TLV", v2(0x21, 0x11, src4, dst4, ports(1, 2), []byte{0x05, 0x00}), Header{}, 0, "truncated TLV"},
		{"v2 TLV overrun", v2(0x21, 0x11, src4, dst4, ports(1, 2), []byte{0x05, 0x00, 0x09, 'a'}), Header{}, 0, "overruns"},
		{"v2 bad signature", append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 0), Header{}, 0, "not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := Parse(tc.in)
			switch tc.err {
			case "":
				if err != nil || h != tc.want || n != tc.n {
					t.Fatalf("Parse = %+v, %d, %v; want %+v, %d", h, n, err, tc.want, tc.n)
				}
			case "short":
				if !errors.Is(err, ErrShort) || n != tc.n {
					t.Fatalf("Parse = %d, %v; want ErrShort needing %d", n, err, tc.n)
				}
			case "not":
				if !errors.Is(err, ErrNotProxy) {
					t.Fatalf("Parse = %+v, %v; want ErrNotProxy", h, err)
				}
			default:
				if err == nil || errors.Is(err, ErrShort) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse = %+v, %v; want an error with %q", h, err, tc.err)
				}
			}
		})
	}
}

// FuzzParse checks Parse on arbitrary input: it never panics, a header
// it accepts lies within the input and parses alike on its own, and
// ErrShort asks for more bytes than were given.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET",
		"PROXY TCP6 2001:db8::7 2001:db8::1 0 65535\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n",
		"GET / HTTP/1.1\r\n",
		string(v2(0x21, 0x11, []byte{1, 2, 3, 4, 5, 6, 7, 8}, ports(1, 2), tlv(1, "h2"))),
		string(v2(0x20, 0x00)),
		string(v2(0x21, 0x21, make([]byte, 36))),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		switch {
		case err == nil:
			if n <= 0 || n > len(b) {
				t.Fatalf("header length %d for %d bytes", n, len(b))
			}
			h2, n2, err2 := Parse(b[:n])
			if err2 != nil || h2 != h || n2 != n {
				t.Fatalf("header alone: %+v %d %v, want %+v %d", h2, n2, err2, h, n)
			}
			if h.Version == 1 && n > MaxV1Len || !h.Local && !h.Source.IsValid() {
				t.Fatalf("bad header %+v (%d bytes)", h, n)
			}
			if h.Version == 1 && !bytes.HasSuffix(b[:n], []byte("\r\n")) {
				t.Fatalf("v1 header %q does not end with CRLF", b[:n])
			}
		case errors.Is(err, ErrShort):
			if n <= len(b) || n > MaxV2Len {
				t.Fatalf("ErrShort needs %d bytes with %d given", n, len(b))
			}
		}
	})
}
