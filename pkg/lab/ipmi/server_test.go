package ipmi

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/lab/redfish"
	"github.com/kiln-dev/kiln/pkg/lab/redfish/redfishtest"
)

// console is a minimal RMCP+ remote console calling Server.handle directly,
// for protocol cases ipmitool cannot be made to produce.
type console struct {
	t       testing.TB
	s       *Server
	now     time.Time
	st      *suite
	id      uint32
	bmcID   uint32
	rm, rc  [16]byte
	guid    []byte
	role    byte
	user    string
	k1, k2  []byte
	seq     uint32
	rqSeq   byte
	lastOut []byte
}

func newConsole(t testing.TB, s *Server, suiteID byte) *console {
	c := &console{t: t, s: s, now: time.Now(), id: 0x11223344, role: privAdmin, user: testUser}
	for i := range suites {
		if suites[i].id == suiteID {
			c.st = &suites[i]
		}
	}
	copy(c.rm[:], "remote-console-r")
	return c
}

func (c *console) send(pkt []byte) []byte {
	c.lastOut = c.s.handle(c.now, pkt)
	return c.lastOut
}

// payload extracts an unauthenticated v2 reply's payload.
func (c *console) payload(pkt []byte, wantType byte) []byte {
	c.t.Helper()
	p, err := parsePacket(pkt, func(uint32) int { return 0 })
	if err != nil || !p.v2 || p.payloadType != wantType {
		c.t.Fatalf("reply %x: %v (want payload type %#x)", pkt, err, wantType)
	}
	return p.payload
}

func (c *console) open() {
	c.t.Helper()
	req := []byte{7, privAdmin, 0, 0}
	req = binary.LittleEndian.AppendUint32(req, c.id)
	for i, a := range []byte{c.st.auth, c.st.integrity, c.st.conf} {
		req = append(req, byte(i), 0, 0, 8, a, 0, 0, 0)
	}
	rsp := c.payload(c.send(encodeV2(payloadOpenReq, 0, 0, req, nil)), payloadOpenResp)
	if len(rsp) != 36 || rsp[1] != rakpOK {
		c.t.Fatalf("open session response %x", rsp)
	}
	c.bmcID = binary.LittleEndian.Uint32(rsp[8:12])
}

// rakp1 sends RAKP 1 and returns RAKP 2's status.
func (c *console) rakp1() byte {
	c.t.Helper()
	req := []byte{8, 0, 0, 0}
	req = binary.LittleEndian.AppendUint32(req, c.bmcID)
	req = append(req, c.rm[:]...)
	req = append(req, c.role, 0, 0, byte(len(c.user)))
	req = append(req, c.user...)
	rsp := c.payload(c.send(encodeV2(payloadRAKP1, 0, 0, req, nil)), payloadRAKP2)
	if rsp[1] != rakpOK {
		return rsp[1]
	}
	copy(c.rc[:], rsp[8:24])
	c.guid = rsp[24:40]
	var ids [8]byte
	binary.LittleEndian.PutUint32(ids[0:4], c.id)
	binary.LittleEndian.PutUint32(ids[4:8], c.bmcID)
	want := c.st.mac([]byte(testPassword), ids[:], c.rm[:], c.rc[:], c.guid, []byte{c.role, byte(len(c.user))}, []byte(c.user))
	if !bytes.Equal(rsp[40:], want) {
		c.t.Fatal("RAKP 2 key exchange code does not verify with the right password")
	}
	return rakpOK
}

// rakp3 sends RAKP 3 computed with password and returns RAKP 4's status.
func (c *console) rakp3(password string) byte {
	c.t.Helper()
	var sidm [4]byte
	binary.LittleEndian.PutUint32(sidm[:], c.id)
	tail := []byte{c.role, byte(len(c.user))}
	req := []byte{9, 0, 0, 0}
	req = binary.LittleEndian.AppendUint32(req, c.bmcID)
	req = append(req, c.st.mac([]byte(password), c.rc[:], sidm[:], tail, []byte(c.user))...)
	rsp := c.payload(c.send(encodeV2(payloadRAKP3, 0, 0, req, nil)), payloadRAKP4)
	if rsp[1] != rakpOK {
		return rsp[1]
	}
	sik := c.st.mac([]byte(password), c.rm[:], c.rc[:], tail, []byte(c.user))
	c.k1, c.k2 = c.st.keys(sik)
	var sidc [4]byte
	binary.LittleEndian.PutUint32(sidc[:], c.bmcID)
	if !bytes.Equal(rsp[8:], c.st.mac(sik, c.rm[:], sidc[:], c.guid)[:c.st.icvLen]) {
		c.t.Fatal("RAKP 4 integrity check value does not verify")
	}
	return rakpOK
}

func (c *console) login() {
	c.t.Helper()
	c.open()
	if st := c.rakp1(); st != rakpOK {
		c.t.Fatalf("RAKP 2 status %#x", st)
	}
	if st := c.rakp3(testPassword); st != rakpOK {
		c.t.Fatalf("RAKP 4 status %#x", st)
	}
}

// request builds a session request with sequence number seq.
func (c *console) request(seq uint32, netFn, cmd byte, data ...byte) []byte {
	c.rqSeq++
	msg := []byte{0x20, netFn << 2}
	msg = append(msg, checksum(msg))
	msg = append(msg, 0x81, c.rqSeq<<2, cmd)
	msg = append(msg, data...)
	msg = append(msg, checksum(msg[3:]))
	enc, err := encrypt(c.k2, msg)
	if err != nil {
		c.t.Fatal(err)
	}
	return encodeV2(payloadIPMI|payloadAuthenticated|payloadEncrypted, c.bmcID, seq, enc,
		func(b []byte) []byte { return c.st.mac(c.k1, b)[:c.st.icvLen] })
}

// call sends a request and returns the completion code and data; ok is
// false when the BMC did not answer.
func (c *console) call(netFn, cmd byte, data ...byte) (cc byte, out []byte, ok bool) {
	c.t.Helper()
	c.seq++
	return c.decode(c.send(c.request(c.seq, netFn, cmd, data...)))
}

func (c *console) decode(pkt []byte) (byte, []byte, bool) {
	c.t.Helper()
	if pkt == nil {
		return 0, nil, false
	}
	p, err := parsePacket(pkt, func(uint32) int { return c.st.icvLen })
	if err != nil || p.sessionID != c.id {
		c.t.Fatalf("reply %x: %v", pkt, err)
	}
	if !bytes.Equal(c.st.mac(c.k1, p.signed)[:c.st.icvLen], p.authCode) {
		c.t.Fatal("reply integrity code does not verify")
	}
	plain, err := decrypt(c.k2, p.payload)
	if err != nil {
		c.t.Fatal(err)
	}
	if len(plain) < 8 || checksum(plain[:3]) != 0 || checksum(plain[3:]) != 0 {
		c.t.Fatalf("bad reply message %x", plain)
	}
	return plain[6], plain[7 : len(plain)-1], true
}

func newTestServer(t testing.TB) (*Server, *redfishtest.System) {
	t.Helper()
	sys := redfishtest.New()
	s, err := New(Config{Name: "m1", Username: testUser, Password: testPassword, System: sys, SessionTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cancel(); s.ops.Wait() })
	return s, sys
}

func TestHandshake(t *testing.T) {
	for _, id := range []byte{3, 17} {
		s, sys := newTestServer(t)
		c := newConsole(t, s, id)
		c.login()
		if cc, out, _ := c.call(netFnApp, cmdGetDeviceID); cc != ccOK || len(out) != 11 || out[4] != 0x02 {
			t.Errorf("suite %d: get device ID: cc %#x %x", id, cc, out)
		}
		if cc, _, _ := c.call(netFnChassis, cmdChassisControl, 1); cc != ccInsufficientPriv {
			t.Errorf("suite %d: chassis control at user privilege: cc %#x, want %#x", id, cc, ccInsufficientPriv)
		}
		if cc, out, _ := c.call(netFnApp, cmdSetSessionPriv, privAdmin); cc != ccOK || len(out) != 1 || out[0] != privAdmin {
			t.Fatalf("suite %d: set privilege: cc %#x %x", id, cc, out)
		}
		if cc, _, _ := c.call(netFnChassis, cmdChassisControl, 1); cc != ccOK {
			t.Fatalf("suite %d: chassis control: cc %#x", id, cc)
		}
		if cc, out, _ := c.call(netFnChassis, cmdGetChassisStatus); cc != ccOK || len(out) < 3 || out[0]&1 != 1 {
			t.Fatalf("suite %d: chassis status: cc %#x %x", id, cc, out)
		}
		if r := sys.Resets(); len(r) != 1 || r[0] != redfish.ResetOn {
			t.Fatalf("suite %d: resets %v", id, r)
		}
		var sid [4]byte
		binary.LittleEndian.PutUint32(sid[:], c.bmcID)
		if cc, _, _ := c.call(netFnApp, cmdCloseSession, sid[:]...); cc != ccOK {
			t.Fatalf("suite %d: close session: cc %#x", id, cc)
		}
		if _, _, ok := c.call(netFnChassis, cmdGetChassisStatus); ok {
			t.Fatalf("suite %d: a closed session still answers", id)
		}
	}
}

func TestLoginRefused(t *testing.T) {
	t.Run("wrong password gets RAKP 4 invalid integrity check value", func(t *testing.T) {
		s, _ := newTestServer(t)
		c := newConsole(t, s, 3)
		c.open()
		c.rakp1()
		if st := c.rakp3("guessed"); st != rakpInvalidIntegrityCode {
			t.Fatalf("RAKP 4 status %#x, want %#x", st, rakpInvalidIntegrityCode)
		}
		if len(s.sessions) != 0 {
			t.Fatal("the refused session was kept")
		}
	})
	t.Run("unknown user gets RAKP 2 unauthorized name", func(t *testing.T) {
		s, _ := newTestServer(t)
		c := newConsole(t, s, 17)
		c.user = "root"
		c.open()
		if st := c.rakp1(); st != rakpUnauthorizedName {
			t.Fatalf("RAKP 2 status %#x, want %#x", st, rakpUnauthorizedName)
		}
	})
	t.Run("unsupported cipher suite", func(t *testing.T) {
		s, _ := newTestServer(t)
		c := newConsole(t, s, 3)
		req := []byte{1, privAdmin, 0, 0, 1, 0, 0, 0}
		for i, a := range []byte{authHMACSHA1, integrityNone, confNone} {
			req = append(req, byte(i), 0, 0, 8, a, 0, 0, 0)
		}
		rsp := c.payload(c.send(encodeV2(payloadOpenReq, 0, 0, req, nil)), payloadOpenResp)
		if rsp[1] != rakpInvalidIntegrityAlg {
			t.Fatalf("open session status %#x, want %#x", rsp[1], rakpInvalidIntegrityAlg)
		}
	})
}

// TestRetransmittedHandshake: a console that retransmits RAKP 1 or RAKP 3
// (its first answer was late) still gets a consistent session.
func TestRetransmittedHandshake(t *testing.T) {
	s, _ := newTestServer(t)
	c := newConsole(t, s, 17)
	c.open()
	c.rakp1()
	rc := c.rc
	if st := c.rakp1(); st != rakpOK || c.rc != rc {
		t.Fatalf("retransmitted RAKP 1: status %#x, random number changed %v", st, c.rc != rc)
	}
	for i := range 2 {
		if st := c.rakp3(testPassword); st != rakpOK {
			t.Fatalf("RAKP 3 #%d: status %#x", i+1, st)
		}
	}
	if cc, _, ok := c.call(netFnChassis, cmdGetChassisStatus); !ok || cc != ccOK {
		t.Fatalf("after the handshake: answered %v, cc %#x", ok, cc)
	}
	// A RAKP 3 with a wrong code for the live session is ignored, not an error that ends it.
	c.send(encodeV2(payloadRAKP3, 0, 0, binary.LittleEndian.AppendUint32([]byte{9, 0, 0, 0}, c.bmcID), nil))
	if _, _, ok := c.call(netFnChassis, cmdGetChassisStatus); !ok {
		t.Fatal("a forged RAKP 3 ended the session")
	}
}

func TestSessionChecks(t *testing.T) {
	s, _ := newTestServer(t)
	c := newConsole(t, s, 3)
	c.login()
	if _, _, ok := c.call(netFnChassis, cmdGetChassisStatus); !ok {
		t.Fatal("no answer")
	}
	// A tampered packet (one payload byte flipped) is dropped.
	c.seq++
	pkt := c.request(c.seq, netFnChassis, cmdGetChassisStatus)
	pkt[20] ^= 1
	if c.send(pkt) != nil {
		t.Fatal("a packet with a bad integrity code was answered")
	}
	// Sequence numbers far behind or far ahead are dropped; a retransmission is answered.
	for _, tc := range []struct {
		seq    uint32
		answer bool
	}{{0, false}, {c.seq + 1000, false}, {c.seq, true}, {c.seq + 1, true}} {
		if got := c.send(c.request(tc.seq, netFnChassis, cmdGetChassisStatus)) != nil; got != tc.answer {
			t.Errorf("sequence %d answered=%v, want %v", tc.seq, got, tc.answer)
		}
	}
	c.seq++
	// Idle sessions expire.
	c.now = c.now.Add(2 * time.Minute)
	if _, _, ok := c.call(netFnChassis, cmdGetChassisStatus); ok {
		t.Fatal("an expired session answered")
	}
}

func TestBootOptions(t *testing.T) {
	s, sys := newTestServer(t)
	c := newConsole(t, s, 17)
	c.login()
	c.call(netFnApp, cmdSetSessionPriv, privAdmin)
	for _, tc := range []struct {
		name  string
		flags []byte
		want  redfish.BootOverride
		cc    byte
	}{
		{"pxe once efi", []byte{0xa0, 0x04, 0, 0, 0}, redfish.BootOverride{Target: redfish.TargetPxe, Enabled: redfish.EnabledOnce, Mode: redfish.ModeUEFI}, ccOK},
		{"disk persistent legacy", []byte{0xc0, 0x08, 0, 0, 0}, redfish.BootOverride{Target: redfish.TargetHdd, Enabled: redfish.EnabledContinuous, Mode: redfish.ModeLegacy}, ccOK},
		{"not valid clears", []byte{0x00, 0x04, 0, 0, 0}, redfish.BootOverride{Target: redfish.TargetPxe, Enabled: redfish.EnabledDisabled, Mode: redfish.ModeLegacy}, ccOK},
		{"cdrom refused", []byte{0x80, 0x14, 0, 0, 0}, redfish.BootOverride{Target: redfish.TargetPxe, Enabled: redfish.EnabledDisabled, Mode: redfish.ModeLegacy}, ccInvalidData},
	} {
		if cc, _, _ := c.call(netFnChassis, cmdSetBootOptions, append([]byte{bootParamFlags}, tc.flags...)...); cc != tc.cc {
			t.Errorf("%s: cc %#x, want %#x", tc.name, cc, tc.cc)
		}
		if got, _ := sys.BootOverride(context.Background()); got != tc.want {
			t.Errorf("%s: override %+v, want %+v", tc.name, got, tc.want)
		}
		if tc.cc != ccOK {
			continue
		}
		cc, out, _ := c.call(netFnChassis, cmdGetBootOptions, bootParamFlags, 0, 0)
		if cc != ccOK || len(out) != 7 || !bytes.Equal(out[2:4], tc.flags[:2]) && tc.want.Enabled != redfish.EnabledDisabled {
			t.Errorf("%s: get boot flags: cc %#x %x", tc.name, cc, out)
		}
	}
	if cc, _, _ := c.call(netFnChassis, cmdGetBootOptions, 0x60, 0, 0); cc != ccParamUnsupported {
		t.Errorf("unknown parameter: cc %#x", cc)
	}
}

func TestPresession(t *testing.T) {
	s, _ := newTestServer(t)
	c := newConsole(t, s, 3)
	// Get Channel Authentication Capabilities in IPMI v1.5 framing, as ipmitool sends it.
	msg := []byte{0x20, netFnApp << 2}
	msg = append(msg, checksum(msg))
	msg = append(msg, 0x81, 0, cmdGetAuthCaps, 0x8e, privAdmin)
	msg = append(msg, checksum(msg[3:]))
	out := c.send(encodeV15(msg))
	if len(out) < 14+8 || out[14+6] != ccOK || out[14+8]&0x80 == 0 {
		t.Fatalf("auth capabilities reply %x", out)
	}
	// ASF presence ping.
	ping := []byte{rmcpVersion, 0, 0xff, rmcpClassASF, 0, 0, 0x11, 0xbe, asfPing, 5, 0, 0}
	if pong := c.send(ping); len(pong) != 28 || pong[8] != asfPongType || pong[9] != 5 {
		t.Fatalf("pong %x", pong)
	}
}

// FuzzHandle feeds arbitrary datagrams to the BMC, pre-session and inside
// an established session: it must never panic, and whatever it answers must
// be a well-formed RMCP packet.
func FuzzHandle(f *testing.F) {
	s, _ := newTestServer(f)
	c := newConsole(f, s, 3)
	c.login()
	c.call(netFnApp, cmdSetSessionPriv, privAdmin)
	f.Add(c.request(c.seq+1, netFnChassis, cmdGetChassisStatus))
	f.Add(c.request(c.seq+2, netFnChassis, cmdSetBootOptions, bootParamFlags, 0xa0, 0x04, 0, 0, 0))
	f.Add(c.request(c.seq+3, netFnChassis, cmdGetBootOptions, bootParamFlags, 0, 0))
	f.Add([]byte{rmcpVersion, 0, 0xff, rmcpClassASF, 0, 0, 0x11, 0xbe, asfPing, 5, 0, 0})
	req := []byte{7, privAdmin, 0, 0, 1, 2, 3, 4}
	for i, a := range []byte{1, 1, 1} {
		req = append(req, byte(i), 0, 0, 8, a, 0, 0, 0)
	}
	f.Add(encodeV2(payloadOpenReq, 0, 0, req, nil))
	f.Add(encodeV2(payloadRAKP1, 0, 0, make([]byte, 33), nil))
	f.Add(encodeV2(payloadRAKP3, 0, 0, make([]byte, 28), nil))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		out := s.handle(c.now, pkt)
		if out != nil && (len(out) < rmcpHeaderLen || out[0] != rmcpVersion) {
			t.Fatalf("malformed reply %x", out)
		}
	})
}
