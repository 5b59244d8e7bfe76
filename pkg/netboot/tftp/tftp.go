// Package tftp serves kiln's iPXE binaries over TFTP (read-only, with the
// blksize and tsize options, optionally in single-port mode). Request names
// are looked up in the in-memory binary set: "name" or "<mac>/name" only;
// absolute paths, "..", other directories and writes are refused.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/kiln-dev/kiln/pkg/netboot/binary"
)

// Observer is told about every completed transfer (mac is the optional
// "<mac>/" prefix of the request); nil is allowed.
type Observer interface {
	TFTPTransfer(peer net.IP, mac, file string, n int64)
}

// Config configures a Server.
type Config struct {
	Files *binary.Set
	// BlockSize is the largest block the server agrees to (blksize option);
	// default 1468 (fits a 1500-byte MTU), max 65456.
	BlockSize int
	// Timeout per packet; default 5s.
	Timeout time.Duration
	// SinglePort serves every transfer from the listening port (needed
	// behind NAT and some firewalls).
	SinglePort bool
	Observer   Observer
	Log        *slog.Logger
}

// Server is a read-only TFTP server.
type Server struct {
	cfg Config
	log *slog.Logger
	srv *tftp.Server
}

// New returns a server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Files == nil {
		return nil, errors.New("TFTP server needs the iPXE binaries")
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 1468
	}
	if cfg.BlockSize < 512 || cfg.BlockSize > 65456 {
		return nil, fmt.Errorf("TFTP block size %d must be between 512 and 65456", cfg.BlockSize)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Log.With("component", "tftp")}
	s.srv = tftp.NewServer(s.read, s.write)
	s.srv.SetBlockSize(cfg.BlockSize)
	s.srv.SetTimeout(cfg.Timeout)
	if cfg.SinglePort {
		s.srv.EnableSinglePort()
	}
	return s, nil
}

// Listen opens the TFTP socket on addr (e.g. "10.0.0.1:69").
func Listen(addr string) (net.PacketConn, error) {
	conn, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for TFTP on %s: %w", addr, err)
	}
	return conn, nil
}

// Serve answers requests on conn until ctx ends; outstanding transfers
// are allowed to finish.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	s.log.Info("TFTP server listening", "addr", conn.LocalAddr(), "single_port", s.cfg.SinglePort, "files", s.cfg.Files.Names())
	stop := context.AfterFunc(ctx, func() {
		s.srv.Shutdown()
		_ = conn.Close()
	})
	defer stop()
	err := s.srv.Serve(conn)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Resolve maps a requested file name to a binary name: "name" or
// "<mac>/name" (the MAC only labels logs). It returns the MAC prefix too.
func Resolve(requested string) (name, mac string, err error) {
	if requested == "" {
		return "", "", errors.New("empty file name")
	}
	if strings.ContainsAny(requested, "\\\x00") {
		return "", "", fmt.Errorf("file name %q contains a backslash or NUL", requested)
	}
	if strings.HasPrefix(requested, "/") {
		return "", "", fmt.Errorf("absolute path %q refused", requested)
	}
	parts := strings.Split(requested, "/")
	for _, p := range parts {
		if p == ".." || p == "." || p == "" {
			return "", "", fmt.Errorf("path %q refused: no '.', '..' or empty elements", requested)
		}
	}
	switch len(parts) {
	case 1:
		return parts[0], "", nil
	case 2:
		hw, err := net.ParseMAC(parts[0])
		if err != nil {
			return "", "", fmt.Errorf("path %q refused: only a MAC address may prefix the file name", requested)
		}
		return parts[1], hw.String(), nil
	}
	return "", "", fmt.Errorf("path %q refused: too many directories", requested)
}

func (s *Server) read(filename string, rf io.ReaderFrom) error {
	ot, _ := rf.(tftp.OutgoingTransfer)
	var peer string
	var peerIP net.IP
	if ot != nil {
		ra := ot.RemoteAddr()
		peer, peerIP = ra.String(), ra.IP
	}
	name, mac, err := Resolve(filename)
	if err != nil {
		s.log.Warn("TFTP read refused", "file", filename, "peer", peer, "err", err)
		return err
	}
	f, ok := s.cfg.Files.Get(name)
	if !ok {
		s.log.Warn("TFTP read of a file kiln does not serve", "file", filename, "peer", peer, "serves", s.cfg.Files.Names())
		return fmt.Errorf("file %q not found", name)
	}
	if ot != nil {
		ot.SetSize(int64(len(f.Data)))
	}
	start := time.Now()
	n, err := rf.ReadFrom(f.Reader())
	if err != nil {
		s.log.Warn("TFTP transfer failed", "file", name, "mac", mac, "peer", peer, "sent", n, "err", err)
		return err
	}
	s.log.Info("TFTP transfer complete", "file", name, "mac", mac, "peer", peer, "bytes", n, "duration", time.Since(start).Round(time.Millisecond))
	if s.cfg.Observer != nil {
		s.cfg.Observer.TFTPTransfer(peerIP, mac, name, n)
	}
	return nil
}

func (s *Server) write(filename string, _ io.WriterTo) error {
	s.log.Warn("TFTP write refused", "file", filename)
	return errors.New("kiln's TFTP server is read-only")
}
