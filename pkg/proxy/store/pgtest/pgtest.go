// Package pgtest starts a throw-away PostgreSQL server (Debian's
// postgresql package) for tests: a fresh data directory in a temp dir,
// listening only on a unix socket there, run as the postgres user through
// runuser when the tests run as root.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// ErrUnavailable means PostgreSQL is not installed on this machine.
var ErrUnavailable = errors.New("postgresql server binaries not found under /usr/lib/postgresql (apt-get install postgresql)")

// Required reports whether tests must fail rather than skip without
// PostgreSQL (KILN_REQUIRE_PG=1, set by CI).
func Required() bool { return os.Getenv("KILN_REQUIRE_PG") == "1" }

// Server is a running PostgreSQL instance.
type Server struct {
	dir  string
	bin  string
	cmd  *exec.Cmd
	done chan error
}

func binDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(matches) == 0 {
		return "", ErrUnavailable
	}
	sort.Strings(matches)
	return filepath.Dir(matches[len(matches)-1]), nil
}

// asPostgres wraps a command to run as the postgres user when we are root.
func asPostgres(ctx context.Context, name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.CommandContext(ctx, name, args...)
}

// Start initialises and starts a server; call Stop when done.
func Start(ctx context.Context) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kiln-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("look up the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := asPostgres(ctx, filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	s.cmd = asPostgres(context.Background(), filepath.Join(bin, "postgres"), "-D", data, "-k", dir, "-p", "5432",
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200")
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait(); _ = logf.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		db, err := sql.Open("pgx", s.DSN("postgres"))
		if err == nil {
			err = db.PingContext(ctx)
			_ = db.Close()
		}
		if err == nil {
			return s, nil
		}
		select {
		case werr := <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("postgres exited: %v: %s", werr, log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("postgres did not accept connections within 30s: %w", err)
		}
	}
}

// DSN is the connection string for database db.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=%s sslmode=disable", s.dir, db)
}

// SocketDir is the directory holding the server's unix socket.
func (s *Server) SocketDir() string { return s.dir }

// CreateDB creates an empty database and returns its DSN.
func (s *Server) CreateDB(ctx context.Context, name string) (string, error) {
	db, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE DATABASE "`+strings.ReplaceAll(name, `"`, ``)+`"`); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.DSN(name), nil
}

// Stop shuts the server down fast and removes its files.
func (s *Server) Stop() {
	stop := asPostgres(context.Background(), filepath.Join(s.bin, "pg_ctl"), "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop")
	_ = stop.Run()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = os.RemoveAll(s.dir)
}

// StartT starts a server for one test and stops it when the test ends. The
// test is skipped when PostgreSQL is not installed, unless Required.
func StartT(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := Start(ctx)
	if err != nil {
		if Required() {
			t.Fatalf("postgres required (KILN_REQUIRE_PG=1): %v", err)
		}
		t.Skipf("postgres not available: %v", err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// Main is a TestMain body: it starts a server, hands it to use (nil when
// PostgreSQL is not installed and not Required), runs the tests and stops
// the server. It returns the exit code for os.Exit.
func Main(m interface{ Run() int }, use func(*Server)) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	srv, err := Start(ctx)
	cancel()
	if err != nil {
		if Required() {
			fmt.Fprintln(os.Stderr, "postgres required (KILN_REQUIRE_PG=1):", err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "postgres tests skipped:", err)
		srv = nil
	}
	use(srv)
	code := m.Run()
	if srv != nil {
		srv.Stop()
	}
	return code
}
