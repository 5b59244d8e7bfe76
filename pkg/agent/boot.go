package agent

import (
	"context"
	"io"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// Boot prepares the in-memory OS when the agent runs as PID 1: it mounts the
// kernel file systems, reads the kernel command line, loads the modules the
// image lists in /etc/kiln/modules and those named by kiln_modules, and
// brings up the interface whose MAC is hw_addr with DHCP. Problems are
// logged and boot continues as far as it can; the returned Config comes from
// the kernel command line.
func Boot(ctx context.Context, log *slog.Logger) (Config, error) {
	if err := MountKernelFS(); err != nil {
		log.Warn("mounting kernel file systems", "err", err)
	}
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return Config{}, err
	}
	cfg, err := ParseCmdline(string(raw))
	if err != nil {
		return cfg, err
	}
	if err := LoadModuleList(ModuleList, log); err != nil {
		log.Warn("loading "+ModuleList, "err", err)
	}
	if err := LoadModules(cfg.Modules, log); err != nil {
		log.Warn("loading kiln_modules", "err", err)
	}
	if cfg.HWAddr != "" {
		_ = os.MkdirAll("/etc", 0o755)
		if _, err := BringUpDHCP(ctx, cfg.HWAddr, "/etc/resolv.conf", log); err != nil {
			return cfg, err
		}
	} else {
		log.Warn("no hw_addr on the kernel command line; not configuring the network")
	}
	return cfg, nil
}

// NewLogger returns the agent's logger: text to console, and each record
// also to syslog when syslogHost is set. The returned function closes the
// syslog socket.
func NewLogger(console io.Writer, syslogHost string, level slog.Level) (*slog.Logger, func(), error) {
	w, closeFn := console, func() {}
	if syslogHost != "" {
		s, err := DialSyslog(syslogHost, "kiln-agent")
		if err != nil {
			return slog.New(slog.NewTextHandler(console, &slog.HandlerOptions{Level: level})), closeFn, err
		}
		w, closeFn = io.MultiWriter(console, s), func() { _ = s.Close() }
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), closeFn, nil
}

// SystemReboot is the real reboot(2), for Runtime.Reboot.
func SystemReboot(cmd int) error { return unix.Reboot(cmd) }
