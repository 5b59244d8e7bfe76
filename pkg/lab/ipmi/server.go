// Package ipmi serves a virtual IPMI v2.0 BMC for one machine over RMCP+
// (UDP, port 623 by default): the subset that `ipmitool -I lanplus` and
// bmclib's ipmitool provider use. It authenticates with RAKP (cipher suites
// 3 and 17: HMAC-SHA1 or HMAC-SHA256, AES-CBC-128 confidentiality), keeps
// sessions with sequence numbers and an idle timeout, and answers Get Device
// ID, Get Chassis Status, Chassis Control and Set/Get System Boot Options by
// driving the same redfish.System the lab's Redfish BMC drives (a QEMU VM in
// the lab).
package ipmi

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/pkg/lab/redfish"
)

// RAKP and Open Session status codes (IPMI v2.0 table 13-15).
const (
	rakpOK                   = 0x00
	rakpNoResources          = 0x01
	rakpInvalidSessionID     = 0x02
	rakpInvalidAuthAlg       = 0x04
	rakpInvalidIntegrityAlg  = 0x05
	rakpInvalidRole          = 0x09
	rakpInvalidNameLength    = 0x0c
	rakpUnauthorizedName     = 0x0d
	rakpInvalidIntegrityCode = 0x0f
	rakpInvalidConfAlg       = 0x10
	rakpNoCipherSuiteMatch   = 0x11
)

// Privilege levels.
const (
	privCallback = 1
	privUser     = 2
	privOperator = 3
	privAdmin    = 4
)

// DefaultSessionTimeout is how long an idle session lives when
// Config.SessionTimeout is zero (IPMI suggests 60 s).
const DefaultSessionTimeout = 60 * time.Second

// maxSessions bounds the sessions (pending and active) kept at once.
const maxSessions = 16

// maxInFlight bounds the datagrams handled at once. Requests are handled
// concurrently so that one waiting on the machine (e.g. a power state read
// while QEMU starts) does not hold up the others or their retransmissions.
const maxInFlight = 8

// MaxPasswordLen is IPMI v2.0's user password limit in bytes.
const MaxPasswordLen = 20

// Config describes one virtual IPMI BMC.
type Config struct {
	// Name is the machine's name, used in logs.
	Name     string
	Username string
	// Password (at most 20 bytes, IPMI's limit) is compared in constant
	// time and never logged.
	Password string
	System   redfish.System
	// GUID is the managed system's GUID used in RAKP; random when zero.
	GUID [16]byte
	// SessionTimeout ends idle sessions; zero means DefaultSessionTimeout.
	SessionTimeout time.Duration
	// ControlWait is how long a Chassis Control request waits for the
	// power operation before answering (it completes in the background
	// afterwards, as on a real BMC); zero means 3 s, below ipmitool's
	// retransmit interval.
	ControlWait time.Duration
	Log         *slog.Logger
}

// Server is a running virtual IPMI BMC.
type Server struct {
	cfg  Config
	log  *slog.Logger
	conn net.PacketConn
	// life bounds background power operations; cancel ends them.
	life   context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// ops tracks background power operations, handlers the datagrams
	// being answered.
	ops, handlers sync.WaitGroup

	mu       sync.Mutex
	sessions map[uint32]*session
	boot     bootParams
}

// bootParams are the System Boot Options parameters kept by the BMC itself
// (the boot flags, parameter 5, live in the System).
type bootParams struct {
	setInProgress byte
	validClearing byte
	infoAck       [2]byte
}

type session struct {
	bmcID, consoleID uint32
	suite            *suite
	// role is RAKP 1's requested role byte (privilege and lookup bit).
	role, maxPriv, priv byte
	name                []byte
	rm, rc              [16]byte
	sik, k1, k2         []byte
	active              bool
	inSeq, outSeq       uint32
	lastSeen            time.Time
}

// New checks cfg and returns a server that is not yet serving.
func New(cfg Config) (*Server, error) {
	if cfg.System == nil {
		return nil, errors.New("ipmi: no System to control")
	}
	if cfg.Username == "" || cfg.Password == "" {
		return nil, fmt.Errorf("IPMI BMC of %s: a username and password are required", cfg.Name)
	}
	if len(cfg.Username) > 16 {
		return nil, fmt.Errorf("IPMI BMC of %s: username %q is longer than IPMI's 16 bytes", cfg.Name, cfg.Username)
	}
	if len(cfg.Password) > MaxPasswordLen {
		return nil, fmt.Errorf("IPMI BMC of %s: the password is longer than IPMI's %d bytes", cfg.Name, MaxPasswordLen)
	}
	if cfg.GUID == [16]byte{} {
		_, _ = rand.Read(cfg.GUID[:])
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.ControlWait <= 0 {
		cfg.ControlWait = 3 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	life, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, log: cfg.Log.With("bmc", cfg.Name, "protocol", "ipmi"), life: life, cancel: cancel,
		done: make(chan struct{}), sessions: map[uint32]*session{}}, nil
}

// Serve starts a BMC for cfg on conn (e.g. a UDP socket on port 623) and
// returns at once; Close stops it.
func Serve(conn net.PacketConn, cfg Config) (*Server, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	s.conn = conn
	go s.loop()
	return s, nil
}

// Addr is the address the server answers on.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Close stops serving, closes the socket and waits for power operations
// still in flight to observe the cancellation.
func (s *Server) Close() error {
	s.cancel()
	err := s.conn.Close()
	<-s.done
	s.handlers.Wait()
	s.ops.Wait()
	return err
}

func (s *Server) loop() {
	defer close(s.done)
	sem := make(chan struct{}, maxInFlight)
	for {
		buf := make([]byte, maxPacket)
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			if s.life.Err() == nil && !errors.Is(err, net.ErrClosed) {
				s.log.Error("IPMI BMC stopped reading", "err", err)
			}
			return
		}
		sem <- struct{}{}
		s.handlers.Add(1)
		go func() {
			defer func() { <-sem; s.handlers.Done() }()
			if out := s.handle(time.Now(), buf[:n]); out != nil {
				if _, err := s.conn.WriteTo(out, from); err != nil {
					s.log.Debug("IPMI reply not sent", "to", from, "err", err)
				}
			}
		}()
	}
}

// handle answers one datagram; nil means no answer (malformed, unknown
// session, failed integrity check: real BMCs stay silent too).
func (s *Server) handle(now time.Time, pkt []byte) []byte {
	s.mu.Lock()
	s.expireLocked(now)
	s.mu.Unlock()
	p, err := parsePacket(pkt, s.integrityLen)
	if err != nil {
		s.log.Debug("IPMI packet dropped", "err", err)
		return nil
	}
	if p.class == rmcpClassASF {
		return asfPong(p.seq, p.asf)
	}
	if !p.v2 {
		// Pre-session IPMI v1.5 (Get Channel Authentication Capabilities).
		if p.authType != authNone || p.sessionID != 0 {
			s.log.Debug("IPMI v1.5 sessions are not supported; dropped")
			return nil
		}
		msg, err := parseMessage(p.payload)
		if err != nil {
			return nil
		}
		cc, data := s.preSession(msg)
		return encodeV15(msg.reply(cc, data))
	}
	switch p.payloadType & payloadTypeMask {
	case payloadOpenReq:
		return s.openSession(now, p.payload)
	case payloadRAKP1:
		return s.rakp1(now, p.payload)
	case payloadRAKP3:
		return s.rakp3(now, p.payload)
	case payloadIPMI:
		if p.sessionID == 0 {
			if p.payloadType != payloadIPMI {
				return nil
			}
			msg, err := parseMessage(p.payload)
			if err != nil {
				return nil
			}
			cc, data := s.preSession(msg)
			return encodeV2(payloadIPMI, 0, 0, msg.reply(cc, data), nil)
		}
		return s.inSession(now, p)
	}
	s.log.Debug("IPMI payload type not supported; dropped", "type", p.payloadType)
	return nil
}

func (s *Server) integrityLen(id uint32) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.sessions[id]; ss != nil && ss.active {
		return ss.suite.icvLen
	}
	return 0
}

func (s *Server) expireLocked(now time.Time) {
	for id, ss := range s.sessions {
		if now.Sub(ss.lastSeen) > s.cfg.SessionTimeout {
			s.log.Debug("IPMI session timed out", "session", id)
			delete(s.sessions, id)
		}
	}
}

// openSession answers an RMCP+ Open Session Request (IPMI v2.0 13.17).
func (s *Server) openSession(now time.Time, req []byte) []byte {
	if len(req) < 32 {
		return nil
	}
	tag, priv := req[0], req[1]&0x0f
	consoleID := binary.LittleEndian.Uint32(req[4:8])
	fail := func(status byte) []byte {
		b := []byte{tag, status, 0, 0}
		b = binary.LittleEndian.AppendUint32(b, consoleID)
		return encodeV2(payloadOpenResp, 0, 0, b, nil)
	}
	// Three 8-byte algorithm payloads: type, reserved, reserved, length, algorithm, 3 reserved.
	var algs [3]byte
	for i := range 3 {
		a := req[8+8*i : 16+8*i]
		if a[0] != byte(i) || a[3] != 8 {
			return fail(rakpNoCipherSuiteMatch)
		}
		algs[i] = a[4] & 0x3f
	}
	st, status := matchSuite(algs[0], algs[1], algs[2])
	if st == nil {
		s.log.Debug("IPMI open session: no matching cipher suite", "auth", algs[0], "integrity", algs[1], "confidentiality", algs[2])
		return fail(status)
	}
	if priv > privAdmin {
		return fail(rakpInvalidRole)
	}
	if priv == 0 {
		priv = privAdmin
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) >= maxSessions && !s.evictPendingLocked() {
		return fail(rakpNoResources)
	}
	ss := &session{consoleID: consoleID, suite: st, maxPriv: priv, lastSeen: now}
	for ss.bmcID == 0 || s.sessions[ss.bmcID] != nil {
		var b [4]byte
		_, _ = rand.Read(b[:])
		ss.bmcID = binary.LittleEndian.Uint32(b[:])
	}
	s.sessions[ss.bmcID] = ss
	b := []byte{tag, rakpOK, priv, 0}
	b = binary.LittleEndian.AppendUint32(b, consoleID)
	b = binary.LittleEndian.AppendUint32(b, ss.bmcID)
	for i, a := range []byte{st.auth, st.integrity, st.conf} {
		b = append(b, byte(i), 0, 0, 8, a, 0, 0, 0)
	}
	s.log.Debug("IPMI session opened", "session", ss.bmcID, "cipher_suite", st.id)
	return encodeV2(payloadOpenResp, 0, 0, b, nil)
}

// evictPendingLocked drops the oldest session that never completed RAKP.
func (s *Server) evictPendingLocked() bool {
	var oldest *session
	for _, ss := range s.sessions {
		if !ss.active && (oldest == nil || ss.lastSeen.Before(oldest.lastSeen)) {
			oldest = ss
		}
	}
	if oldest == nil {
		return false
	}
	delete(s.sessions, oldest.bmcID)
	return true
}

// rakp1 answers RAKP Message 1 with RAKP Message 2 (IPMI v2.0 13.20, 13.21).
func (s *Server) rakp1(now time.Time, req []byte) []byte {
	if len(req) < 28 {
		return nil
	}
	tag := req[0]
	bmcID := binary.LittleEndian.Uint32(req[4:8])
	role, nameLen := req[24], int(req[27])
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[bmcID]
	if ss == nil || ss.active {
		return encodeV2(payloadRAKP2, 0, 0, []byte{tag, rakpInvalidSessionID, 0, 0, 0, 0, 0, 0}, nil)
	}
	fail := func(status byte) []byte {
		delete(s.sessions, bmcID)
		b := []byte{tag, status, 0, 0}
		b = binary.LittleEndian.AppendUint32(b, ss.consoleID)
		return encodeV2(payloadRAKP2, 0, 0, b, nil)
	}
	if nameLen > 16 || len(req) < 28+nameLen {
		return fail(rakpInvalidNameLength)
	}
	name := req[28 : 28+nameLen]
	priv := role & 0x0f
	if priv > privAdmin || role&0xe0 != 0 {
		return fail(rakpInvalidRole)
	}
	if subtle.ConstantTimeCompare(name, []byte(s.cfg.Username)) != 1 {
		s.log.Info("IPMI login refused: unknown user", "user", string(name))
		return fail(rakpUnauthorizedName)
	}
	if priv == 0 {
		priv = privAdmin
	}
	ss.maxPriv = min(ss.maxPriv, priv)
	// A retransmitted RAKP 1 (same console random number) gets the same
	// RAKP 2, so a late first answer still matches the session.
	if ss.name == nil || !bytes.Equal(ss.rm[:], req[8:24]) || ss.role != role {
		copy(ss.rm[:], req[8:24])
		_, _ = rand.Read(ss.rc[:])
	}
	ss.role = role
	ss.name = append([]byte(nil), name...)
	ss.lastSeen = now
	// Key exchange authentication code: HMAC_Kuid(SIDm, SIDc, Rm, Rc,
	// GUIDc, ROLEm, ULENGTHm, UNAMEm).
	var ids [8]byte
	binary.LittleEndian.PutUint32(ids[0:4], ss.consoleID)
	binary.LittleEndian.PutUint32(ids[4:8], ss.bmcID)
	code := ss.suite.mac([]byte(s.cfg.Password), ids[:], ss.rm[:], ss.rc[:], s.cfg.GUID[:], []byte{role, byte(nameLen)}, name)
	b := []byte{tag, rakpOK, 0, 0}
	b = binary.LittleEndian.AppendUint32(b, ss.consoleID)
	b = append(b, ss.rc[:]...)
	b = append(b, s.cfg.GUID[:]...)
	b = append(b, code...)
	return encodeV2(payloadRAKP2, 0, 0, b, nil)
}

// rakp3 checks RAKP Message 3 and answers with RAKP Message 4, activating
// the session (IPMI v2.0 13.22, 13.23, 13.31, 13.32).
func (s *Server) rakp3(now time.Time, req []byte) []byte {
	if len(req) < 8 {
		return nil
	}
	tag, status := req[0], req[1]
	bmcID := binary.LittleEndian.Uint32(req[4:8])
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[bmcID]
	if ss == nil || ss.name == nil || (ss.active && status != rakpOK) {
		return encodeV2(payloadRAKP4, 0, 0, []byte{tag, rakpInvalidSessionID, 0, 0, 0, 0, 0, 0}, nil)
	}
	if status != rakpOK {
		// The console refused our RAKP 2, e.g. because its password differs.
		s.log.Info("IPMI login abandoned by the client (wrong password?)", "user", string(ss.name), "status", status)
		delete(s.sessions, bmcID)
		return nil
	}
	fail := func(status byte) []byte {
		delete(s.sessions, bmcID)
		b := []byte{tag, status, 0, 0}
		b = binary.LittleEndian.AppendUint32(b, ss.consoleID)
		return encodeV2(payloadRAKP4, 0, 0, b, nil)
	}
	var sidm [4]byte
	binary.LittleEndian.PutUint32(sidm[:], ss.consoleID)
	key := []byte(s.cfg.Password)
	tail := []byte{ss.role, byte(len(ss.name))}
	want := ss.suite.mac(key, ss.rc[:], sidm[:], tail, ss.name)
	if !hmac.Equal(req[8:], want) {
		if ss.active {
			return nil // a forged RAKP 3 for a live session: ignore it
		}
		s.log.Info("IPMI login refused: wrong password", "user", string(ss.name))
		return fail(rakpInvalidIntegrityCode)
	}
	if !ss.active {
		ss.sik = ss.suite.mac(key, ss.rm[:], ss.rc[:], tail, ss.name)
		ss.k1, ss.k2 = ss.suite.keys(ss.sik)
		ss.active, ss.priv, ss.lastSeen = true, min(privUser, ss.maxPriv), now
		s.log.Debug("IPMI session active", "session", ss.bmcID, "user", string(ss.name))
	}
	// (A retransmitted RAKP 3 of an active session gets RAKP 4 again.)
	var sidc [4]byte
	binary.LittleEndian.PutUint32(sidc[:], ss.bmcID)
	icv := ss.suite.mac(ss.sik, ss.rm[:], sidc[:], s.cfg.GUID[:])[:ss.suite.icvLen]
	b := []byte{tag, rakpOK, 0, 0}
	b = binary.LittleEndian.AppendUint32(b, ss.consoleID)
	return encodeV2(payloadRAKP4, 0, 0, append(b, icv...), nil)
}

// inSession checks, decrypts and answers an IPMI request of an active session.
func (s *Server) inSession(now time.Time, p packet) []byte {
	s.mu.Lock()
	ss := s.sessions[p.sessionID]
	active := ss != nil && ss.active
	s.mu.Unlock()
	if !active {
		return nil
	}
	// Cipher suites 3 and 17 require both integrity and confidentiality.
	if p.payloadType != payloadIPMI|payloadAuthenticated|payloadEncrypted || p.signed == nil {
		s.log.Debug("IPMI request without integrity or encryption dropped", "session", ss.bmcID)
		return nil
	}
	if !hmac.Equal(ss.suite.mac(ss.k1, p.signed)[:ss.suite.icvLen], p.authCode) {
		s.log.Debug("IPMI request with a bad integrity code dropped", "session", ss.bmcID)
		return nil
	}
	plain, err := decrypt(ss.k2, p.payload)
	if err != nil {
		s.log.Debug("IPMI request not decrypted", "session", ss.bmcID, "err", err)
		return nil
	}
	msg, err := parseMessage(plain)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	// Sequence numbers: reject zero, replays far behind and jumps far
	// ahead; retransmissions of recent numbers are answered again.
	diff := int64(int32(p.sessionSeq - ss.inSeq))
	if p.sessionSeq == 0 || diff <= -16 || diff > 32 {
		s.mu.Unlock()
		s.log.Debug("IPMI request outside the sequence window dropped", "session", ss.bmcID, "seq", p.sessionSeq)
		return nil
	}
	if diff > 0 {
		ss.inSeq = p.sessionSeq
	}
	ss.lastSeen = now
	s.mu.Unlock()

	cc, data := s.command(ss, msg)

	s.mu.Lock()
	ss.outSeq++
	if ss.outSeq == 0 {
		ss.outSeq = 1
	}
	seq := ss.outSeq
	s.mu.Unlock()
	enc, err := encrypt(ss.k2, msg.reply(cc, data))
	if err != nil {
		return nil
	}
	sign := func(b []byte) []byte { return ss.suite.mac(ss.k1, b)[:ss.suite.icvLen] }
	return encodeV2(payloadIPMI|payloadAuthenticated|payloadEncrypted, ss.consoleID, seq, enc, sign)
}
