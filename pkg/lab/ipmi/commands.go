package ipmi

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/kiln-dev/kiln/pkg/lab/redfish"
)

// Network functions and commands (IPMI v2.0 appendix G).
const (
	netFnChassis = 0x00
	netFnApp     = 0x06

	cmdGetChassisStatus  = 0x01
	cmdChassisControl    = 0x02
	cmdSetBootOptions    = 0x08
	cmdGetBootOptions    = 0x09
	cmdGetDeviceID       = 0x01
	cmdGetSystemGUID     = 0x37
	cmdGetAuthCaps       = 0x38
	cmdSetSessionPriv    = 0x3b
	cmdCloseSession      = 0x3c
	cmdGetCipherSuites   = 0x54
	bootParamInProgress  = 0
	bootParamValidClear  = 3
	bootParamInfoAck     = 4
	bootParamFlags       = 5
	bootFlagsValid       = 0x80
	bootFlagsPersistent  = 0x40
	bootFlagsEFI         = 0x20
	bootDevicePXE        = 0x1 << 2
	bootDeviceDisk       = 0x2 << 2
	bootDeviceDiskSafe   = 0x3 << 2
	bootDeviceSelectMask = 0xf << 2
)

// Completion codes.
const (
	ccOK                = 0x00
	ccInvalidCommand    = 0xc1
	ccRequestTooShort   = 0xc7
	ccInvalidData       = 0xcc
	ccCannotExecute     = 0xd5
	ccInsufficientPriv  = 0xd4
	ccUnspecified       = 0xff
	ccParamUnsupported  = 0x80
	ccPrivUnavailable   = 0x81
	ccInvalidSessionID  = 0x87
	ccCommandNotAllowed = 0xd6
)

// channel is the LAN channel number the BMC reports.
const channel = 0x01

// preSession answers the commands allowed before a session exists.
func (s *Server) preSession(m message) (byte, []byte) {
	if m.netFn != netFnApp {
		return ccCommandNotAllowed, nil
	}
	switch m.cmd {
	case cmdGetAuthCaps:
		if len(m.data) < 2 {
			return ccRequestTooShort, nil
		}
		// Channel; IPMI v2.0 extended data available (bit 7), no v1.5 auth
		// types; non-null usernames only; RMCP+ supported; no OEM data.
		return ccOK, []byte{channel, 0x80, 0x04, 0x02, 0, 0, 0, 0}
	case cmdGetCipherSuites:
		if len(m.data) < 3 {
			return ccRequestTooShort, nil
		}
		if m.data[1] != payloadIPMI {
			return ccInvalidData, nil
		}
		recs := cipherSuiteRecords()
		from := int(m.data[2]&0x3f) * 16
		out := []byte{channel}
		if from < len(recs) {
			out = append(out, recs[from:min(from+16, len(recs))]...)
		}
		return ccOK, out
	case cmdGetSystemGUID:
		return ccOK, append([]byte(nil), s.cfg.GUID[:]...)
	}
	return ccCommandNotAllowed, nil
}

// command answers an IPMI request inside an active session.
func (s *Server) command(ss *session, m message) (byte, []byte) {
	need := func(p byte) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return ss.priv >= p
	}
	switch {
	case m.netFn == netFnApp:
		switch m.cmd {
		case cmdGetAuthCaps, cmdGetCipherSuites, cmdGetSystemGUID:
			return s.preSession(m)
		case cmdGetDeviceID:
			// Device ID, revision, firmware 1.00 (available), IPMI 2.0,
			// chassis device; manufacturer 0 (none), product 0.
			return ccOK, []byte{0x20, 0x01, 0x01, 0x00, 0x02, 0x80, 0, 0, 0, 0, 0}
		case cmdSetSessionPriv:
			return s.setPrivilege(ss, m.data)
		case cmdCloseSession:
			return s.closeSession(ss, m.data)
		}
	case m.netFn == netFnChassis:
		switch m.cmd {
		case cmdGetChassisStatus:
			if !need(privUser) {
				return ccInsufficientPriv, nil
			}
			return s.chassisStatus()
		case cmdChassisControl:
			if !need(privOperator) {
				return ccInsufficientPriv, nil
			}
			return s.chassisControl(m.data)
		case cmdGetBootOptions:
			if !need(privUser) {
				return ccInsufficientPriv, nil
			}
			return s.getBootOption(m.data)
		case cmdSetBootOptions:
			if !need(privOperator) {
				return ccInsufficientPriv, nil
			}
			return s.setBootOption(m.data)
		}
	}
	s.log.Debug("IPMI command not supported", "netfn", m.netFn, "cmd", m.cmd)
	return ccInvalidCommand, nil
}

func (s *Server) setPrivilege(ss *session, data []byte) (byte, []byte) {
	if len(data) < 1 {
		return ccRequestTooShort, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := data[0] & 0x0f
	switch {
	case want == 0:
	case want < privCallback || want > privAdmin:
		return ccInvalidData, nil
	case want > ss.maxPriv:
		return ccPrivUnavailable, nil
	default:
		ss.priv = want
	}
	return ccOK, []byte{ss.priv}
}

func (s *Server) closeSession(ss *session, data []byte) (byte, []byte) {
	if len(data) < 4 {
		return ccRequestTooShort, nil
	}
	id := binary.LittleEndian.Uint32(data[:4])
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.sessions[id]
	if target == nil || (target != ss && ss.priv < privAdmin) {
		return ccInvalidSessionID, nil
	}
	delete(s.sessions, id)
	s.log.Debug("IPMI session closed", "session", id)
	return ccOK, nil
}

func (s *Server) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.life, 10*time.Second)
}

func (s *Server) chassisStatus() (byte, []byte) {
	ctx, cancel := s.opContext()
	defer cancel()
	st, err := s.cfg.System.PowerState(ctx)
	if err != nil {
		s.log.Warn("IPMI: reading the power state failed", "err", err)
		return ccUnspecified, nil
	}
	var power byte
	if st == redfish.PowerOn {
		power = 0x01
	}
	// Power state (restore policy "stays off"), last power event, misc
	// chassis state, front panel control (none).
	return ccOK, []byte{power, 0, 0, 0}
}

// chassisControl performs a Chassis Control request. It answers once the
// operation is done or after ControlWait, whichever is first; a slower
// operation finishes in the background and its outcome is logged.
func (s *Server) chassisControl(data []byte) (byte, []byte) {
	if len(data) < 1 {
		return ccRequestTooShort, nil
	}
	var t redfish.ResetType
	switch data[0] & 0x0f {
	case 0:
		t = redfish.ResetForceOff
	case 1:
		t = redfish.ResetOn
	case 2:
		t = redfish.ResetPowerCycle
	case 3:
		t = redfish.ResetForceRestart
	case 4:
		t = redfish.ResetNmi
	case 5:
		t = redfish.ResetGracefulShutdown
	default:
		return ccInvalidData, nil
	}
	done := make(chan error, 1)
	s.ops.Add(1)
	go func() {
		defer s.ops.Done()
		ctx, cancel := context.WithTimeout(s.life, 2*time.Minute)
		defer cancel()
		err := s.cfg.System.Reset(ctx, t)
		if err != nil {
			s.log.Warn("IPMI chassis control failed", "action", t, "err", err)
		} else {
			s.log.Info("IPMI chassis control done", "action", t)
		}
		done <- err
	}()
	wait := time.NewTimer(s.cfg.ControlWait)
	defer wait.Stop()
	select {
	case err := <-done:
		if err != nil {
			return ccCannotExecute, nil
		}
	case <-wait.C:
		s.log.Debug("IPMI chassis control still running; answering now", "action", t)
	case <-s.life.Done():
		return ccUnspecified, nil
	}
	return ccOK, nil
}

func (s *Server) getBootOption(data []byte) (byte, []byte) {
	if len(data) < 3 {
		return ccRequestTooShort, nil
	}
	param := data[0] & 0x7f
	out := []byte{0x01, param} // parameter version 1; valid, unlocked
	s.mu.Lock()
	bp := s.boot
	s.mu.Unlock()
	switch param {
	case bootParamInProgress:
		return ccOK, append(out, bp.setInProgress)
	case bootParamValidClear:
		return ccOK, append(out, bp.validClearing)
	case bootParamInfoAck:
		return ccOK, append(out, bp.infoAck[:]...)
	case bootParamFlags:
		ctx, cancel := s.opContext()
		defer cancel()
		o, err := s.cfg.System.BootOverride(ctx)
		if err != nil {
			s.log.Warn("IPMI: reading the boot override failed", "err", err)
			return ccUnspecified, nil
		}
		return ccOK, append(out, bootFlags(o)...)
	}
	return ccParamUnsupported, nil
}

func (s *Server) setBootOption(data []byte) (byte, []byte) {
	if len(data) < 2 {
		return ccRequestTooShort, nil
	}
	param, v := data[0]&0x7f, data[1:]
	s.mu.Lock()
	defer s.mu.Unlock()
	switch param {
	case bootParamInProgress:
		if v[0]&3 == 3 {
			return ccInvalidData, nil
		}
		s.boot.setInProgress = v[0] & 3
	case bootParamValidClear:
		s.boot.validClearing = v[0] & 0x1f
	case bootParamInfoAck:
		if len(v) < 2 {
			return ccRequestTooShort, nil
		}
		// Byte 1 is a write mask for byte 2.
		s.boot.infoAck[0] = v[0]
		s.boot.infoAck[1] = s.boot.infoAck[1]&^v[0] | v[1]&v[0]
	case bootParamFlags:
		o, err := parseBootFlags(v)
		if err != nil {
			return ccInvalidData, nil
		}
		ctx, cancel := s.opContext()
		defer cancel()
		if err := s.cfg.System.SetBootOverride(ctx, o); err != nil {
			s.log.Warn("IPMI: setting the boot override failed", "err", err)
			return ccUnspecified, nil
		}
		s.log.Info("IPMI boot override set", "target", o.Target, "enabled", o.Enabled, "mode", o.Mode)
	default:
		return ccParamUnsupported, nil
	}
	return ccOK, nil
}

type errBootDevice byte

func (e errBootDevice) Error() string { return "boot device selector not supported" }

// parseBootFlags maps boot flags (parameter 5) to a boot override: the
// valid bit enables it, the persistent bit makes it continuous, the EFI bit
// selects UEFI; the device selector must be none, PXE or a hard disk.
func parseBootFlags(v []byte) (redfish.BootOverride, error) {
	var f [5]byte
	copy(f[:], v)
	o := redfish.BootOverride{Target: redfish.TargetNone, Enabled: redfish.EnabledDisabled, Mode: redfish.ModeLegacy}
	if f[0]&bootFlagsEFI != 0 {
		o.Mode = redfish.ModeUEFI
	}
	switch dev := f[1] & bootDeviceSelectMask; dev {
	case 0:
		return o, nil
	case bootDevicePXE:
		o.Target = redfish.TargetPxe
	case bootDeviceDisk, bootDeviceDiskSafe:
		o.Target = redfish.TargetHdd
	default:
		return o, errBootDevice(dev)
	}
	if f[0]&bootFlagsValid == 0 {
		return o, nil
	}
	o.Enabled = redfish.EnabledOnce
	if f[0]&bootFlagsPersistent != 0 {
		o.Enabled = redfish.EnabledContinuous
	}
	return o, nil
}

// bootFlags encodes a boot override as parameter 5's five bytes.
func bootFlags(o redfish.BootOverride) []byte {
	f := make([]byte, 5)
	if o.Enabled != redfish.EnabledDisabled {
		f[0] |= bootFlagsValid
	}
	if o.Enabled == redfish.EnabledContinuous {
		f[0] |= bootFlagsPersistent
	}
	if o.Mode == redfish.ModeUEFI {
		f[0] |= bootFlagsEFI
	}
	switch o.Target {
	case redfish.TargetPxe:
		f[1] = bootDevicePXE
	case redfish.TargetHdd:
		f[1] = bootDeviceDisk
	}
	return f
}
