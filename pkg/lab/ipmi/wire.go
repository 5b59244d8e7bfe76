package ipmi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// RMCP (DMTF ASF) framing.
const (
	rmcpVersion   = 0x06
	rmcpNoAck     = 0xff
	rmcpClassASF  = 0x06
	rmcpClassIPMI = 0x07
	rmcpHeaderLen = 4

	asfIANA     = 4542 // 0x000011BE
	asfPing     = 0x80
	asfPongType = 0x40
	asfHeaderLn = 8
)

// Session header authentication types.
const (
	authNone     = 0x00
	authRMCPPlus = 0x06
)

// RMCP+ payload types (IPMI v2.0 table 13-16).
const (
	payloadIPMI     = 0x00
	payloadOpenReq  = 0x10
	payloadOpenResp = 0x11
	payloadRAKP1    = 0x12
	payloadRAKP2    = 0x13
	payloadRAKP3    = 0x14
	payloadRAKP4    = 0x15

	payloadEncrypted     = 0x80
	payloadAuthenticated = 0x40
	payloadTypeMask      = 0x3f
)

// maxPacket bounds what the server reads and parses.
const maxPacket = 1024

var errShort = errors.New("packet too short")

// packet is one parsed RMCP datagram.
type packet struct {
	// class is the RMCP message class (ASF or IPMI); seq its sequence byte.
	class, seq byte
	// asf is the ASF message (class ASF only), after the RMCP header.
	asf []byte

	// v2 is set for an RMCP+ (IPMI v2.0) session header, clear for v1.5.
	v2 bool
	// authType is the v1.5 authentication type.
	authType byte
	// payloadType is the v2.0 payload type byte including the encrypted
	// and authenticated bits.
	payloadType byte
	sessionID   uint32
	sessionSeq  uint32
	// payload is the v2.0 payload (still encrypted) or the v1.5 IPMI message.
	payload []byte
	// signed is the part of a v2.0 packet the integrity code covers (from
	// the authentication type through the next header); authCode the code.
	signed, authCode []byte
}

// parsePacket splits a datagram into its headers. integrityLen is the length
// of the authentication code of an authenticated v2.0 packet, which depends
// on the session; lookup returns it for a session ID (0 when unknown).
func parsePacket(b []byte, integrityLen func(sessionID uint32) int) (packet, error) {
	var p packet
	if len(b) < rmcpHeaderLen+1 {
		return p, errShort
	}
	if b[0] != rmcpVersion {
		return p, fmt.Errorf("RMCP version %#x is not 1.0 (0x06)", b[0])
	}
	p.seq, p.class = b[2], b[3]&0x1f
	body := b[rmcpHeaderLen:]
	switch p.class {
	case rmcpClassASF:
		p.asf = body
		return p, nil
	case rmcpClassIPMI:
	default:
		return p, fmt.Errorf("RMCP class %#x is neither ASF nor IPMI", p.class)
	}
	p.authType = body[0]
	if p.authType != authRMCPPlus {
		// IPMI v1.5 session header: auth type, sequence, session ID,
		// [16-byte auth code], message length, message.
		if len(body) < 10 {
			return p, errShort
		}
		p.sessionSeq = binary.LittleEndian.Uint32(body[1:5])
		p.sessionID = binary.LittleEndian.Uint32(body[5:9])
		rest := body[9:]
		if p.authType != authNone {
			if len(rest) < 16 {
				return p, errShort
			}
			p.authCode, rest = rest[:16], rest[16:]
		}
		if len(rest) < 1 || int(rest[0]) > len(rest)-1 {
			return p, errShort
		}
		p.payload = rest[1 : 1+int(rest[0])]
		return p, nil
	}
	p.v2 = true
	if len(body) < 12 {
		return p, errShort
	}
	p.payloadType = body[1]
	p.sessionID = binary.LittleEndian.Uint32(body[2:6])
	p.sessionSeq = binary.LittleEndian.Uint32(body[6:10])
	n := int(binary.LittleEndian.Uint16(body[10:12]))
	if n > len(body)-12 {
		return p, fmt.Errorf("payload length %d exceeds the packet", n)
	}
	p.payload = body[12 : 12+n]
	if p.payloadType&payloadAuthenticated == 0 {
		return p, nil
	}
	il := integrityLen(p.sessionID)
	if il == 0 {
		return p, fmt.Errorf("authenticated packet for unknown session %#x", p.sessionID)
	}
	trailer := body[12+n:]
	// integrity pad (0–3 bytes), pad length, next header, auth code.
	if len(trailer) < 2+il {
		return p, errShort
	}
	padLen := int(trailer[len(trailer)-il-2])
	if padLen > 3 || padLen != len(trailer)-il-2 {
		return p, fmt.Errorf("bad integrity pad length %d", padLen)
	}
	p.signed = body[:len(body)-il]
	p.authCode = body[len(body)-il:]
	return p, nil
}

// rmcpHeader returns the 4-byte RMCP header of a reply.
func rmcpHeader(class byte) []byte { return []byte{rmcpVersion, 0, rmcpNoAck, class} }

// encodeV15 frames an unauthenticated IPMI v1.5 reply (pre-session).
func encodeV15(msg []byte) []byte {
	b := rmcpHeader(rmcpClassIPMI)
	b = append(b, authNone, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(msg)))
	return append(b, msg...)
}

// encodeV2 frames an RMCP+ packet with an already encrypted payload. sign,
// when non-nil, computes the integrity code over the signed part.
func encodeV2(payloadType byte, sessionID, seq uint32, payload []byte, sign func([]byte) []byte) []byte {
	b := rmcpHeader(rmcpClassIPMI)
	b = append(b, authRMCPPlus, payloadType)
	b = binary.LittleEndian.AppendUint32(b, sessionID)
	b = binary.LittleEndian.AppendUint32(b, seq)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, payload...)
	if sign == nil {
		return b
	}
	// Pad so that auth type … next header is a multiple of 4 bytes.
	signedLen := len(b) - rmcpHeaderLen + 2
	pad := (4 - signedLen%4) % 4
	for range pad {
		b = append(b, 0xff)
	}
	b = append(b, byte(pad), rmcpClassIPMI)
	return append(b, sign(b[rmcpHeaderLen:])...)
}

// message is an IPMI LAN request (IPMI v2.0 section 13.8).
type message struct {
	rsAddr, netFn, rsLUN, rqAddr, rqSeq, rqLUN, cmd byte
	data                                            []byte
}

func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

func parseMessage(b []byte) (message, error) {
	var m message
	if len(b) < 7 {
		return m, errShort
	}
	if checksum(b[:3]) != 0 || checksum(b[3:]) != 0 {
		return m, errors.New("bad IPMI message checksum")
	}
	m.rsAddr, m.netFn, m.rsLUN = b[0], b[1]>>2, b[1]&3
	m.rqAddr, m.rqSeq, m.rqLUN = b[3], b[4]>>2, b[4]&3
	m.cmd = b[5]
	m.data = b[6 : len(b)-1]
	return m, nil
}

// reply encodes the response to m with completion code cc and data.
func (m message) reply(cc byte, data []byte) []byte {
	b := make([]byte, 0, 8+len(data))
	b = append(b, m.rqAddr, (m.netFn|1)<<2|m.rqLUN)
	b = append(b, checksum(b))
	b = append(b, m.rsAddr, m.rqSeq<<2|m.rsLUN, m.cmd, cc)
	b = append(b, data...)
	return append(b, checksum(b[3:]))
}

// asfPong answers an ASF presence ping (DSP0136 3.2.4.3); nil for other
// ASF messages.
func asfPong(seq byte, msg []byte) []byte {
	if len(msg) < asfHeaderLn || binary.BigEndian.Uint32(msg[0:4]) != asfIANA || msg[4] != asfPing {
		return nil
	}
	b := []byte{rmcpVersion, 0, seq, rmcpClassASF}
	b = binary.BigEndian.AppendUint32(b, asfIANA)
	b = append(b, asfPongType, msg[5], 0, 16)
	b = binary.BigEndian.AppendUint32(b, asfIANA)
	b = binary.BigEndian.AppendUint32(b, 0) // OEM-defined
	// Supported entities: IPMI, ASF 1.0; no interactions; 6 reserved bytes.
	return append(b, 0x81, 0, 0, 0, 0, 0, 0, 0)
}
