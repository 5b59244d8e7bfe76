package gatewaycmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/pkg/cliout"
	"github.com/kiln-dev/kiln/pkg/exitcode"
	"github.com/kiln-dev/kiln/pkg/proxy/cluster"
	"github.com/kiln-dev/kiln/pkg/proxy/gateway"
	"github.com/kiln-dev/kiln/pkg/proxy/headerconf"
	"github.com/kiln-dev/kiln/pkg/proxy/loglevel"
	"github.com/kiln-dev/kiln/pkg/proxy/proxyproto"
	"github.com/kiln-dev/kiln/pkg/proxy/server"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
	"github.com/kiln-dev/kiln/pkg/proxy/store/sqlstore"
)

type gatewayRunOptions struct {
	proxyListen, adminListen, statusListen string
	database, sqlitePath, declarative      string
	pgHost, pgUser, pgPassword, pgDatabase string
	pgSSL                                  string
	pgPort                                 int
	pgPoll                                 time.Duration
	accessLog                              string
	gcPercent                              int
	eventLoops                             int
	proxyProtocolTimeout                   time.Duration

	role, prefix                           string
	clusterListen, clusterControlPlane     string
	clusterCert, clusterCertKey            string
	clusterMTLS, clusterCA, clusterSrvName string
	clusterLabels                          string
	dbUpdateFrequency                      time.Duration
	purgeDelay                             int

	trustedIPs, realIPHeader string
	realIPRecursive          onOff
	headers, headersUpstream string
	// logLevel starts at -v's level; the Admin API can change it.
	logLevel *loglevel.Level
}

func newRunCommand(streams Streams) *cobra.Command {
	o := &gatewayRunOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Serve the proxy, Admin API and status listeners in the foreground",
		Long: `Runs a gateway node. Flags are named after Kong's configuration properties
(proxy_listen, admin_listen, status_listen, database, declarative_config, pg_*)
and can also be set as KILN_* environment variables (KILN_PROXY_LISTEN,
KILN_PG_HOST, ...). Configuration changes made through the Admin API (or by
another node sharing the PostgreSQL database) reach the proxy without a
restart.

Hybrid mode (Kong's sync v1 protocol): a control plane (--role control_plane,
with a database) serves --cluster-listen over mutual TLS and pushes its
configuration to data planes (--role data_plane --database off
--cluster-control-plane host:port), which keep serving their last
configuration, persisted under --prefix, while the control plane is away.
Both hold the certificate made by 'kiln gateway gen-cert'.

Behind a load balancer, --trusted-ips lists the peers whose X-Forwarded-*
headers are passed upstream as sent and whose --real-ip-header gives the
client address seen by ip-restriction, rate-limiting and the logs (Kong's
trusted_ips, real_ip_header, real_ip_recursive). By default no peer is
trusted. Behind a TCP load balancer that sends the PROXY protocol (HAProxy
send-proxy, an AWS NLB with proxy protocol v2), add the proxy_protocol flag
to --proxy-listen and use --real-ip-header proxy_protocol.`,
		Example: `  kiln gateway run                                  # SQLite in ./kiln-gateway.db
  kiln gateway run --database off --declarative-config kong.yaml
  KILN_PG_HOST=db KILN_PG_PASSWORD=... kiln gateway run --database postgres
  kiln gateway run --role control_plane --cluster-cert cluster.crt --cluster-cert-key cluster.key
  kiln gateway run --role data_plane --database off --cluster-control-plane cp:8005 \
    --cluster-cert cluster.crt --cluster-cert-key cluster.key --admin-listen off
  kiln gateway run --trusted-ips 10.0.0.0/8 --real-ip-header X-Forwarded-For --real-ip-recursive
  kiln gateway run --proxy-listen "0.0.0.0:8000 proxy_protocol" --trusted-ips 10.0.0.0/8 --real-ip-header proxy_protocol`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			verbosity, _ := cmd.Flags().GetInt("verbosity")
			o.logLevel = loglevel.New(cliout.Level(verbosity))
			return runGateway(cmd.Context(), streams, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.proxyListen, "proxy-listen", "0.0.0.0:8000, 0.0.0.0:8443 http2 ssl", "proxy listeners, Kong syntax: addr:port [ssl] [http2] [proxy_protocol], comma-separated")
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
	f.IntVar(&o.eventLoops, "event-loops", 0, "event loops serving each cleartext proxy listener, as nginx's worker processes: 0 one per CPU (GOMAXPROCS), -1 none (a goroutine per connection)")
	f.DurationVar(&o.proxyProtocolTimeout, "proxy-protocol-timeout", proxyproto.DefaultHeaderTimeout, "how long a connection to a proxy_protocol listener has to send its PROXY header before it is closed")
	f.IntVar(&o.gcPercent, "gc-percent", 400, "Go GC target percentage (GOGC); higher trades memory for proxy throughput")
	f.StringVar(&o.role, "role", gateway.RoleTraditional, "node role: traditional, control_plane (hybrid mode, needs a database) or data_plane (needs --database off)")
	f.StringVar(&o.prefix, "prefix", "kiln-gateway", "data plane: directory keeping the last configuration from the control plane and the node id")
	f.StringVar(&o.clusterListen, "cluster-listen", "0.0.0.0:8005", "control plane: listener data planes connect to")
	f.StringVar(&o.clusterControlPlane, "cluster-control-plane", "127.0.0.1:8005", "data plane: the control plane's cluster listener, host:port")
	f.StringVar(&o.clusterCert, "cluster-cert", "", "hybrid mode: cluster certificate (PEM) shared by control and data planes")
	f.StringVar(&o.clusterCertKey, "cluster-cert-key", "", "hybrid mode: private key of --cluster-cert")
	f.StringVar(&o.clusterMTLS, "cluster-mtls", cluster.ModeShared, "hybrid mode authentication: shared (same certificate on every node) or pki (certificates from --cluster-ca-cert)")
	f.StringVar(&o.clusterCA, "cluster-ca-cert", "", "pki mode: CA certificate (PEM) that issued the cluster certificates")
	f.StringVar(&o.clusterSrvName, "cluster-server-name", "", "pki mode, data plane: name the control plane's certificate must carry (default: the host of --cluster-control-plane)")
	f.StringVar(&o.clusterLabels, "cluster-dp-labels", "", "data plane: labels reported to the control plane, key:value,...")
	f.DurationVar(&o.dbUpdateFrequency, "db-update-frequency", cluster.DefaultUpdateFrequency, "control plane: minimum time between two configuration pushes to data planes")
	f.IntVar(&o.purgeDelay, "cluster-data-plane-purge-delay", int(cluster.DefaultPurgeDelay/time.Second), "control plane: seconds a data plane's row is kept after its last ping (at least 60)")
	f.StringVar(&o.trustedIPs, "trusted-ips", "", "peers (IPs and CIDR blocks, comma-separated; 0.0.0.0/0,::/0 for all) whose X-Forwarded-* headers and --real-ip-header are believed")
	f.StringVar(&o.realIPHeader, "real-ip-header", server.RealIPHeaderDefault, "where a trusted peer gives the client address: a header (X-Real-IP, X-Forwarded-For...) or proxy_protocol (the PROXY header on proxy_protocol listeners)")
	f.Var(&o.realIPRecursive, "real-ip-recursive", "with --real-ip-header X-Forwarded-For: take the last address not in --trusted-ips rather than the last one (on/off)")
	f.Lookup("real-ip-recursive").NoOptDefVal = "on"
	f.StringVar(&o.headers, "headers", headerconf.DefaultHeaders, "headers kiln adds to client responses, Kong's headers: off, or a comma-separated list of Server, Via, X-Kong-Proxy-Latency, X-Kong-Response-Latency, X-Kong-Admin-Latency, X-Kong-Upstream-Latency, X-Kong-Upstream-Status, X-Kong-Request-Id, server_tokens (Server and Via), latency_tokens (the four latencies)")
	f.StringVar(&o.headersUpstream, "headers-upstream", headerconf.DefaultHeadersUpstream, "headers kiln adds to upstream requests, Kong's headers_upstream: X-Kong-Request-Id or off")
	return cmd
}

// onOff is a boolean flag that also takes Kong's on/off.
type onOff bool

func (b *onOff) String() string {
	if *b {
		return "on"
	}
	return "off"
}

func (b *onOff) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "true", "1", "yes":
		*b = true
	case "off", "false", "0", "no", "":
		*b = false
	default:
		return fmt.Errorf("%q: use on or off", s)
	}
	return nil
}

func (b *onOff) Type() string { return "on|off" }

// realIP checks --trusted-ips and --real-ip-header.
func (o *gatewayRunOptions) realIP() ([]netip.Prefix, error) {
	if strings.EqualFold(strings.TrimSpace(o.realIPHeader), server.RealIPHeaderProxyProtocol) {
		// As Kong: the address comes from the PROXY header of a
		// proxy_protocol listener, so one must exist.
		specs, err := server.ParseListen(o.proxyListen)
		if err != nil {
			return nil, exitcode.Usagef("--proxy-listen: %v", err)
		}
		if !slices.ContainsFunc(specs, func(s server.ListenSpec) bool { return s.ProxyProtocol }) {
			return nil, exitcode.Usagef("--real-ip-header proxy_protocol needs at least one --proxy-listen entry with the proxy_protocol flag (e.g. \"0.0.0.0:8000 proxy_protocol\")")
		}
	}
	if strings.TrimSpace(o.realIPHeader) == "" {
		return nil, exitcode.Usagef("--real-ip-header must name a header (Kong's default is X-Real-IP)")
	}
	trusted, err := server.ParseTrustedIPs(strings.Split(o.trustedIPs, ","))
	if err != nil {
		return nil, exitcode.Usagef("--trusted-ips: %v", err)
	}
	return trusted, nil
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
		return exitcode.Usagef("--database %q is not supported; use sqlite, postgres or off", o.database)
	}
	if o.declarative != "" && o.database != "off" {
		return exitcode.Usagef("--declarative-config needs --database off (got --database %s)", o.database)
	}
	clusterOpts, err := o.cluster()
	if err != nil {
		return err
	}
	trusted, err := o.realIP()
	if err != nil {
		return err
	}
	if o.eventLoops < -1 {
		return exitcode.Usagef("--event-loops %d is not valid; use 0 (one per CPU), -1 (none) or a positive number", o.eventLoops)
	}
	// As in Kong, an empty setting adds none of the headers.
	for _, v := range []*string{&o.headers, &o.headersUpstream} {
		if strings.TrimSpace(*v) == "" {
			*v = "off"
		}
	}
	if _, err := headerconf.ParseHeaders(o.headers); err != nil {
		return exitcode.Usagef("--headers: %v", err)
	}
	if _, err := headerconf.ParseHeadersUpstream(o.headersUpstream); err != nil {
		return exitcode.Usagef("--headers-upstream: %v", err)
	}
	if o.proxyProtocolTimeout <= 0 {
		return exitcode.Usagef("--proxy-protocol-timeout %s is not valid; use a positive duration such as 5s", o.proxyProtocolTimeout)
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
			return exitcode.With(exitcode.InvalidInput, fmt.Errorf("open --proxy-access-log %s: %w", o.accessLog, err))
		}
		defer f.Close()
		accessLog = f
	}
	if o.logLevel == nil {
		o.logLevel = loglevel.New(slog.LevelWarn)
	}
	defer o.logLevel.Close()
	log := slog.New(slog.NewTextHandler(streams.Err, &slog.HandlerOptions{Level: o.logLevel}))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	st, err := openStore(ctx, o)
	if err != nil {
		cliout.Progress(streams.Err, "open "+o.database+" store", "", time.Since(start), err)
		return exitcode.With(exitcode.InvalidInput, err)
	}
	cliout.Progress(streams.Err, "open "+st.Database()+" store", "", time.Since(start), nil)
	opts := gateway.Options{
		ProxyListen: o.proxyListen, AdminListen: o.adminListen, StatusListen: o.statusListen,
		Store: st, AccessLog: accessLog, Log: log, LogLevel: o.logLevel, LogLevelPoll: o.pgPoll, DeclarativeConfig: o.declarative,
		Ready: func(proxy, admin, status []string) {
			fmt.Fprintf(streams.Err, "✓ gateway ready (%s): proxy %s, admin %s, status %s\n", time.Since(start).Round(time.Millisecond),
				listOrOff(proxy), listOrOff(admin), listOrOff(status))
		},
		Role: o.role, Cluster: clusterOpts,
		TrustedIPs: trusted, RealIPHeader: strings.TrimSpace(o.realIPHeader), RealIPRecursive: bool(o.realIPRecursive),
		EventLoops: o.eventLoops, ProxyProtocolTimeout: o.proxyProtocolTimeout,
		Headers: o.headers, HeadersUpstream: o.headersUpstream,
	}
	opts.Cluster.Ready = func(addr string) {
		fmt.Fprintf(streams.Err, "✓ control plane cluster listener %s (%s mTLS)\n", addr, o.clusterMTLS)
	}
	if err := gateway.Run(ctx, opts); err != nil {
		return exitcode.With(exitcode.InvalidInput, err)
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

// cluster checks the hybrid-mode flags against --role and --database (the
// combinations Kong refuses) and loads the cluster certificate.
func (o *gatewayRunOptions) cluster() (gateway.ClusterOptions, error) {
	var c gateway.ClusterOptions
	if err := gateway.CheckRole(o.role, o.database, o.clusterListen, o.clusterControlPlane); err != nil {
		return c, exitcode.With(exitcode.Usage, err)
	}
	if o.role == gateway.RoleTraditional || o.role == "" {
		return c, nil
	}
	switch o.clusterMTLS {
	case cluster.ModeShared, cluster.ModePKI:
	default:
		return c, exitcode.Usagef("--cluster-mtls %q is not supported; use shared or pki", o.clusterMTLS)
	}
	if o.clusterCert == "" || o.clusterCertKey == "" {
		return c, exitcode.Usagef("--role %s needs --cluster-cert and --cluster-cert-key (make a pair with: kiln gateway gen-cert)", o.role)
	}
	if o.clusterMTLS == cluster.ModePKI && o.clusterCA == "" {
		return c, exitcode.Usagef("--cluster-mtls pki needs --cluster-ca-cert")
	}
	if o.purgeDelay < 60 {
		return c, exitcode.Usagef("--cluster-data-plane-purge-delay %d: must be 60 (seconds) or greater", o.purgeDelay)
	}
	labels, err := parseLabels(o.clusterLabels)
	if err != nil {
		return c, err
	}
	t, err := cluster.LoadTLS(o.clusterMTLS, o.clusterCert, o.clusterCertKey, o.clusterCA, o.clusterSrvName)
	if err != nil {
		return c, exitcode.With(exitcode.InvalidInput, err)
	}
	c = gateway.ClusterOptions{TLS: t, Labels: labels, UpdateFrequency: o.dbUpdateFrequency,
		PurgeDelay: time.Duration(o.purgeDelay) * time.Second}
	if o.role == gateway.RoleControlPlane {
		c.Listen = o.clusterListen
	} else {
		c.ControlPlane, c.PersistDir = o.clusterControlPlane, o.prefix
	}
	return c, nil
}

// parseLabels reads --cluster-dp-labels "key:value,...".
func parseLabels(v string) (map[string]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		k, val, ok := strings.Cut(part, ":")
		if !ok || k == "" {
			return nil, exitcode.Usagef("--cluster-dp-labels: %q is not key:value", part)
		}
		out[k] = val
	}
	return out, nil
}
