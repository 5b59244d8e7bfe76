package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/proxy/gateway"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
	"github.com/kiln-dev/kiln/pkg/proxy/store/sqlstore"
)

// newGatewayCommand groups the API gateway commands.
func newGatewayCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run kiln's Kong-compatible API gateway",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newGatewayRunCommand(streams))
	return cmd
}

type gatewayRunOptions struct {
	proxyListen, adminListen, statusListen string
	database, sqlitePath, declarative      string
	pgHost, pgUser, pgPassword, pgDatabase string
	pgSSL                                  string
	pgPort                                 int
	pgPoll                                 time.Duration
	accessLog                              string
	gcPercent                              int
}

func newGatewayRunCommand(streams Streams) *cobra.Command {
	o := &gatewayRunOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Serve the proxy, Admin API and status listeners in the foreground",
		Long: `Runs a gateway node. Flags are named after Kong's configuration properties
(proxy_listen, admin_listen, status_listen, database, declarative_config, pg_*)
and can also be set as KILN_* environment variables (KILN_PROXY_LISTEN,
KILN_PG_HOST, ...). Configuration changes made through the Admin API (or by
another node sharing the PostgreSQL database) reach the proxy without a
restart.`,
		Example: `  kiln gateway run                                  # SQLite in ./kiln-gateway.db
  kiln gateway run --database off --declarative-config kong.yaml
  KILN_PG_HOST=db KILN_PG_PASSWORD=... kiln gateway run --database postgres`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGateway(cmd.Context(), streams, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.proxyListen, "proxy-listen", "0.0.0.0:8000, 0.0.0.0:8443 http2 ssl", "proxy listeners, Kong syntax: addr:port [ssl] [http2], comma-separated")
	f.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:8001", "Admin API listeners, or off")
	f.StringVar(&o.statusListen, "status-listen", "127.0.0.1:8007", "status listener (/status, /status/ready, /metrics), or off")
	f.StringVar(&o.database, "database", "sqlite", "configuration store: sqlite (embedded), postgres, or off (DB-less, in memory)")
	f.StringVar(&o.sqlitePath, "sqlite-path", "kiln-gateway.db", "SQLite database file for --database sqlite")
	f.StringVar(&o.declarative, "declarative-config", "", "DB-less: a _format_version 3.0 YAML/JSON file to load at start (needs --database off)")
	f.StringVar(&o.pgHost, "pg-host", "127.0.0.1", "PostgreSQL host (or socket directory)")
	f.IntVar(&o.pgPort, "pg-port", 5432, "PostgreSQL port")
	f.StringVar(&o.pgUser, "pg-user", "kong", "PostgreSQL user")
	f.StringVar(&o.pgPassword, "pg-password", "", "PostgreSQL password")
	f.StringVar(&o.pgDatabase, "pg-database", "kong", "PostgreSQL database")
	f.StringVar(&o.pgSSL, "pg-ssl", "off", "PostgreSQL TLS: off or on")
	f.DurationVar(&o.pgPoll, "pg-poll", 2*time.Second, "how often to check PostgreSQL for changes made by other nodes")
	f.StringVar(&o.accessLog, "proxy-access-log", "stdout", "access log: stdout, stderr, off, or a file path")
	f.IntVar(&o.gcPercent, "gc-percent", 400, "Go GC target percentage (GOGC); higher trades memory for proxy throughput")
	return cmd
}

func (o *gatewayRunOptions) pgDSN() string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(o.pgUser, o.pgPassword), Path: "/" + o.pgDatabase}
	q := url.Values{}
	if strings.HasPrefix(o.pgHost, "/") {
		q.Set("host", o.pgHost)
		u.Host = fmt.Sprintf("localhost:%d", o.pgPort)
	} else {
		u.Host = fmt.Sprintf("%s:%d", o.pgHost, o.pgPort)
	}
	if o.pgSSL == "on" {
		q.Set("sslmode", "require")
	} else {
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func runGateway(ctx context.Context, streams Streams, o *gatewayRunOptions) error {
	switch o.database {
	case "off", "sqlite", "postgres":
	default:
		return usageError("--database %q is not supported; use sqlite, postgres or off", o.database)
	}
	if o.declarative != "" && o.database != "off" {
		return usageError("--declarative-config needs --database off (got --database %s)", o.database)
	}
	if os.Getenv("GOGC") == "" && o.gcPercent > 0 {
		debug.SetGCPercent(o.gcPercent)
	}
	var accessLog io.Writer
	switch o.accessLog {
	case "off", "":
	case "stdout", "/dev/stdout":
		accessLog = streams.Out
	case "stderr", "/dev/stderr":
		accessLog = streams.Err
	default:
		f, err := os.OpenFile(o.accessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return withExitCode(ExitInvalidInput, fmt.Errorf("open --proxy-access-log %s: %w", o.accessLog, err))
		}
		defer f.Close()
		accessLog = f
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	st, err := openStore(ctx, o)
	if err != nil {
		progressLine(streams.Err, "open "+o.database+" store", "", time.Since(start), err)
		return withExitCode(ExitInvalidInput, err)
	}
	progressLine(streams.Err, "open "+st.Database()+" store", "", time.Since(start), nil)
	opts := gateway.Options{
		ProxyListen: o.proxyListen, AdminListen: o.adminListen, StatusListen: o.statusListen,
		Store: st, AccessLog: accessLog, Log: slog.Default(), DeclarativeConfig: o.declarative,
		Ready: func(proxy, admin, status []string) {
			fmt.Fprintf(streams.Err, "✓ gateway ready (%s): proxy %s, admin %s, status %s\n", time.Since(start).Round(time.Millisecond),
				listOrOff(proxy), listOrOff(admin), listOrOff(status))
		},
	}
	if err := gateway.Run(ctx, opts); err != nil {
		return withExitCode(ExitInvalidInput, err)
	}
	return nil
}

func listOrOff(l []string) string {
	if len(l) == 0 {
		return "off"
	}
	return strings.Join(l, ",")
}

func openStore(ctx context.Context, o *gatewayRunOptions) (store.Store, error) {
	switch o.database {
	case "off":
		return store.NewMemory(), nil
	case "sqlite":
		return sqlstore.OpenSQLite(ctx, o.sqlitePath)
	default:
		return sqlstore.OpenPostgres(ctx, o.pgDSN(), o.pgPoll)
	}
}
