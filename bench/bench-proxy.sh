#!/usr/bin/env bash
# bench-proxy: wrk against kiln's gateway, nginx, haproxy and caddy, each
# proxying the same loopback upstream (an nginx worker serving a 1 KiB file),
# all with keep-alive on both sides, same connections and duration; then kiln
# again with key-auth + rate-limiting. Prints one table with RPS, p50, p99 and
# the ratio to nginx. Needs: wrk nginx haproxy caddy openssl (Debian
# packages) and kiln's gateway binary (KILN=path, default bin/kiln-gateway
# built by `make gateway`; a full kiln binary works too).
#
# Then a side-by-side part: kiln and nginx (and kiln with plugins and
# nginx) loaded at the same moment, each by its own wrk with half the
# connections, PAIRED rounds of DURATION: both meet the same machine
# speed, which on a shared virtual machine drifts by up to 2x within
# minutes, so their per-round ratio is far steadier than one of two runs
# made one after the other. Competing for the same CPUs, RPS there also
# reflects how much CPU each side wins from the kernel's scheduler, so the
# part prints each side's CPU time per request too.
#
# Last, NEWCONN rounds (default 1; 0 skips) of the same load with a new
# connection per request (Connection: close): accepting and closing
# connections, which keep-alive hides, for nginx, haproxy and kiln.
#
# Then, at fixed request rates (RATES, default "200 2000 10000" requests
# a second; empty skips) sent by bench/fixedrate over 16 keep-alive
# connections: each proxy's CPU time per second and per request, the
# cost of a gateway that is not saturated, where most run most of the time
# (waking up, timers and idle polling count there, not at saturation).
#
# Then TLS (TLS rounds, default 1; 0 skips): nginx, haproxy and kiln
# terminating TLS 1.3 with the same ECDSA P-256 certificate, keep-alive
# (wrk over https, same load as above), then a new TLS connection (full
# handshake) per request.
#
# Then HTTP/2 (H2 rounds, default 1; 0 skips): h2load (STREAMS requests in
# flight on each of H2_CONNS connections) against nginx and kiln over h2c
# with prior knowledge (nginx: a "listen ... http2" server of its own), and
# over TLS with h2 chosen by ALPN (the TLS part's proxies, whose listeners
# offer h2).
#
# And the memory each proxy spends per idle keep-alive client connection:
# IDLE connections (default 8000; 0 skips) opened by bench/idleconns, one
# request each, then held open; the growth of the proxy's resident memory
# (all its processes), measured on the fresh processes before any load.
#
# Knobs: DURATION (10s) CONNS (64) THREADS (2) WARMUP (3s) ROUNDS (3) PAIRED (3) NEWCONN (1) TLS (1)
# H2 (1) H2_CONNS (32) STREAMS (10)
# RATES ("200 2000 10000") RATE_DURATION (5s) FIXEDRATE (bin/fixedrate)
# IDLE (8000) IDLECONNS (bin/idleconns)
# (three interleaved rounds by default: one round on a shared virtual
# machine, whose speed drifts between minutes, can land 15% off either way)
# KILN_BASE=path adds rows for a second kiln binary (e.g. a build of the
# previous commit), measured in the same rounds, for before/after ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

KILN=${KILN:-bin/kiln-gateway}
KILN_BASE=${KILN_BASE:-}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-3s}
ROUNDS=${ROUNDS:-3}
PAIRED=${PAIRED:-3}
NEWCONN=${NEWCONN:-1}
TLS=${TLS:-1}
H2=${H2:-1}
H2_CONNS=${H2_CONNS:-32}
STREAMS=${STREAMS:-10}
RATES=${RATES-200 2000 10000}
RATE_DURATION=${RATE_DURATION:-5s}
FIXEDRATE=${FIXEDRATE:-bin/fixedrate}
IDLE=${IDLE:-8000}
IDLECONNS=${IDLECONNS:-bin/idleconns}

for bin in wrk nginx haproxy caddy curl openssl; do
  command -v "$bin" >/dev/null || { echo "bench-proxy: $bin is not installed (apt-get install wrk nginx-light haproxy caddy curl openssl)" >&2; exit 1; }
done
[ "$H2" -eq 0 ] || command -v h2load >/dev/null || { echo "bench-proxy: h2load is not installed (apt-get install nghttp2-client) or set H2=0" >&2; exit 1; }
[ -x "$KILN" ] || { echo "bench-proxy: $KILN not found; run make gateway or set KILN=" >&2; exit 1; }
# The TLS part reaches the proxies as https://localhost (the certificate's name, sent as SNI).
[ "$TLS" -eq 0 ] || getent ahostsv4 localhost | grep -q '^127\.0\.0\.1 ' || { echo "bench-proxy: localhost does not resolve to 127.0.0.1 here; fix /etc/hosts or set TLS=0" >&2; exit 1; }
[ -z "$KILN_BASE" ] || [ -x "$KILN_BASE" ] || { echo "bench-proxy: KILN_BASE=$KILN_BASE is not executable" >&2; exit 1; }
[ -z "$RATES" ] || [ -x "$FIXEDRATE" ] || { echo "bench-proxy: $FIXEDRATE not found; run make bench-proxy, set FIXEDRATE= or RATES= to skip the fixed-rate part" >&2; exit 1; }
[ "$IDLE" -eq 0 ] || [ -x "$IDLECONNS" ] || { echo "bench-proxy: $IDLECONNS not found; run make bench-proxy, set IDLECONNS= or IDLE=0 to skip the idle-connection part" >&2; exit 1; }
[ "$IDLE" -le 8000 ] || { echo "bench-proxy: IDLE=$IDLE is more than the proxies are configured for (nginx 10240 connections per worker, haproxy 9000; a process may open $(ulimit -n) files); use at most 8000" >&2; exit 1; }

TMP=$(mktemp -d /tmp/kiln-bench-proxy.XXXXXX)
chmod 755 "$TMP" # nginx workers run unprivileged and must read the upstream file
# shellcheck source=bench/lib.sh
. bench/lib.sh

wait_http() { # url [header]
  for _ in $(seq 1 100); do
    if curl -kfsS -o /dev/null ${2:+-H "$2"} "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench-proxy: $1 did not come up" >&2; return 1
}

UP=$(free_port)
mkdir -p "$TMP/up/www"
head -c 1024 /dev/zero | tr '\0' 'k' > "$TMP/up/www/1k"
run_nginx "$TMP/up" 1 4096 "  server { listen 127.0.0.1:$UP; root $TMP/up/www; location / { default_type text/plain; } }"
wait_http "http://127.0.0.1:$UP/1k"

# The TLS part's certificate: ECDSA P-256 for localhost, self-signed.
if [ "$TLS" -gt 0 ]; then
  mkdir -p "$TMP/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$TMP/tls/key.pem" -out "$TMP/tls/cert.pem" 2>/dev/null
  cat "$TMP/tls/cert.pem" "$TMP/tls/key.pem" > "$TMP/tls/both.pem"
  chmod 644 "$TMP/tls/"*.pem
fi

# start_nginx port [kong|tls]: nginx as a plain reverse proxy; with "kong"
# it also adds the request and response headers a Kong node (and kiln)
# adds, so that row does the same header work as kiln (a reference row;
# the ratios stay against plain nginx); with "tls" it terminates TLS (and
# offers h2); with "h2c" it speaks HTTP/2 with prior knowledge only.
start_nginx() {
  local port=$1 kong=${2:-} d="$TMP/nginx-$1" extra="" listen="127.0.0.1:$1"
  if [ "$kong" = tls ]; then
    listen="$listen ssl http2; ssl_certificate $TMP/tls/cert.pem; ssl_certificate_key $TMP/tls/key.pem"
  elif [ "$kong" = h2c ]; then
    listen="$listen http2"
  elif [ -n "$kong" ]; then
    extra='proxy_set_header Host $host; proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host; proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Forwarded-Path $uri;
      add_header Via "1.1 kong/3.9.0"; add_header X-Kong-Upstream-Latency $upstream_response_time;
      add_header X-Kong-Proxy-Latency 0; add_header X-Kong-Request-Id $request_id;'
  fi
  run_nginx "$d" auto 10240 "  upstream up { server 127.0.0.1:$UP; keepalive 512; }
  server {
    listen $listen;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; $extra }
  }"
}

# start_haproxy port [tls]
start_haproxy() {
  local port=$1 d="$TMP/haproxy-$1" bind="127.0.0.1:$1"
  [ "${2:-}" != tls ] || bind="$bind ssl crt $TMP/tls/both.pem"
  mkdir -p "$d"
  cat > "$d/haproxy.cfg" <<EOF
global
  nbthread 2
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend f
  bind $bind
  default_backend b
backend b
  server s1 127.0.0.1:$UP
EOF
  haproxy -f "$d/haproxy.cfg" -db & PIDS+=($!)
}

start_caddy() {
  local port=$1 d="$TMP/caddy"
  mkdir -p "$d"
  cat > "$d/Caddyfile" <<EOF
{
  admin off
  auto_https off
}
http://127.0.0.1:$port {
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:$UP
}
EOF
  XDG_DATA_HOME="$d" XDG_CONFIG_HOME="$d" HOME="$d" caddy run --config "$d/Caddyfile" --adapter caddyfile >"$d/log" 2>&1 & PIDS+=($!)
}

# start_kiln port [plugins [binary [tls]]]: kiln gateway, DB-less,
# configured by a declarative file (the same way an operator would); with
# tls it terminates TLS with the certificate (for SNI localhost) and offers
# h2. Its cleartext listener takes h2c with prior knowledge as it is.
start_kiln() {
  local port=$1 plugins=${2:-} bin=${3:-$KILN} tls=${4:-} d="$TMP/kiln-$1" listen="127.0.0.1:$1" run=(gateway run)
  # kiln-gateway serves with "run", a full kiln binary with "gateway run".
  if "$bin" run --help >/dev/null 2>&1; then run=(run); fi
  mkdir -p "$d"
  {
    echo '_format_version: "3.0"'
    echo 'services:'
    echo "- name: bench"
    echo "  url: http://127.0.0.1:$UP"
    echo '  routes:'
    echo '  - name: all'
    echo '    paths: ["/"]'
    if [ -n "$plugins" ]; then
      echo 'consumers:'
      echo '- username: bench'
      echo '  keyauth_credentials:'
      echo '  - key: bench-key'
      echo 'plugins:'
      echo '- name: key-auth'
      echo '- name: rate-limiting'
      echo '  config: {second: 1000000000, hour: 1000000000000, policy: local, limit_by: consumer}'
    fi
    if [ -n "$tls" ]; then
      listen="$listen http2 ssl"
      echo 'certificates:'
      echo '- cert: |'; sed 's/^/    /' "$TMP/tls/cert.pem"
      echo '  key: |'; sed 's/^/    /' "$TMP/tls/key.pem"
      echo '  snis: [{name: localhost}]'
    fi
  } > "$d/kong.yaml"
  "$bin" "${run[@]}" --database off --declarative-config "$d/kong.yaml" \
    --proxy-listen "$listen" --admin-listen off --status-listen off --proxy-access-log off \
    >"$d/log" 2>&1 & PIDS+=($!)
}

# rss_kb pid: resident memory (KiB) of pid and its child processes.
rss_kb() { proc_sum "$1" status '/^VmRSS:/ {print $2}'; }

declare -A PORT PID HDR URL
NAMES=() TLS_NAMES=()
add() { NAMES+=("$1"); PORT[$1]=$2; PID[$1]=${PIDS[-1]}; HDR[$1]=${3:-}; URL[$1]="http://127.0.0.1:$2/1k"; }
add_tls() { TLS_NAMES+=("$1"); PORT[$1]=$2; PID[$1]=${PIDS[-1]}; HDR[$1]=; URL[$1]="https://localhost:$2/1k"; }

# wrk_args name: wrk's options for name (its header script, if any).
wrk_args() {
  local name=$1 port=${PORT[$1]} hdr=${HDR[$1]}
  if [ -n "$hdr" ]; then
    printf 'wrk.headers["%s"] = "%s"\n' "${hdr%%:*}" "$(echo "${hdr#*:}" | sed 's/^ *//')" > "$TMP/hdr-$port.lua"
    echo "-s $TMP/hdr-$port.lua"
  fi
}

# run name [file [wrk options]]: warm up, measure once; appends to file
# ($TMP/results).
run() {
  local name=$1 file=${2:-$TMP/results} out
  local args=(-t"$THREADS" -c"$CONNS" --latency $(wrk_args "$name") "${@:3}")
  wrk "${args[@]}" -d"$WARMUP" "${URL[$name]}" >/dev/null
  local t0 t1
  t0=$(cpu_ticks "${PID[$name]}")
  out=$(wrk "${args[@]}" -d"$DURATION" "${URL[$name]}")
  t1=$(cpu_ticks "${PID[$name]}")
  local rps p50 p99 non2xx reqs sockerr
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  sockerr=$(awk '/Socket errors/ {e = 1} END {print e ? "yes" : "no"}' <<<"$out")
  echo "$name $rps $p50 $p99 ${non2xx:-0} $(( (t1 - t0) * 1000000 / $(getconf CLK_TCK) )) $reqs ${ROUND:-1} $sockerr" >> "$file"
}

P=$(free_port); start_nginx "$P"; add nginx "$P"
P=$(free_port); start_nginx "$P" kong; add "nginx+kong-headers" "$P"
P=$(free_port); start_haproxy "$P"; add haproxy "$P"
P=$(free_port); start_caddy "$P"; add caddy "$P"
P=$(free_port); start_kiln "$P"; add kiln "$P"
P=$(free_port); start_kiln "$P" plugins; add "kiln+key-auth+rate-limiting" "$P" "apikey: bench-key"
if [ -n "$KILN_BASE" ]; then
  P=$(free_port); start_kiln "$P" "" "$KILN_BASE"; add "kiln-base" "$P"
  P=$(free_port); start_kiln "$P" plugins "$KILN_BASE"; add "kiln-base+key-auth+rate-lim" "$P" "apikey: bench-key"
fi
if [ "$TLS" -gt 0 ]; then
  P=$(free_port); start_nginx "$P" tls; add_tls nginx-tls "$P"
  P=$(free_port); start_haproxy "$P" tls; add_tls haproxy-tls "$P"
  P=$(free_port); start_kiln "$P" "" "$KILN" tls; add_tls kiln-tls "$P"
  [ -z "$KILN_BASE" ] || { P=$(free_port); start_kiln "$P" "" "$KILN_BASE" tls; add_tls kiln-base-tls "$P"; }
fi
if [ "$H2" -gt 0 ]; then
  P=$(free_port); start_nginx "$P" h2c; H2_NGINX_PORT=$P H2_NGINX_PID=${PIDS[-1]}
fi
for n in "${NAMES[@]}" "${TLS_NAMES[@]}"; do
  if ! wait_http "${URL[$n]}" "${HDR[$n]}"; then
    log="$TMP/kiln-${PORT[$n]}/log"
    [ ! -f "$log" ] || { echo "bench-proxy: $n's log:" >&2; tail -5 "$log" >&2; }
    exit 1
  fi
done

# idle_mem name: name's resident memory before and while IDLE client
# connections that made one request each stay open; appends to $TMP/idle.
idle_mem() {
  local name=$1 before after c out="$TMP/idle-$1.out"
  before=$(rss_kb "${PID[$name]}")
  : >"$out" # exists before the first grep below
  "$IDLECONNS" -url "${URL[$name]}" ${HDR[$name]:+-H "${HDR[$name]}"} -c "$IDLE" >"$out" 2>&1 & c=$!
  for _ in $(seq 1 600); do
    if grep -q '^ready' "$out" || ! kill -0 "$c" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if ! grep -q '^ready' "$out"; then
    kill "$c" 2>/dev/null || true; wait "$c" 2>/dev/null || true
    echo "bench-proxy: holding $IDLE idle connections to $name failed: $(cat "$out")" >&2
    exit 1
  fi
  sleep 1 # kiln sheds a connection idle for 100 ms
  after=$(rss_kb "${PID[$name]}")
  kill "$c"; wait "$c" 2>/dev/null || true
  echo "$name $before $after" >> "$TMP/idle"
}
if [ "$IDLE" -gt 0 ]; then
  : > "$TMP/idle"
  for n in nginx haproxy caddy kiln ${KILN_BASE:+kiln-base} "${TLS_NAMES[@]}"; do idle_mem "$n"; done
fi
# table file base: the per-proxy table of run's results in file, with
# ratios to the base proxy's run of the same round.
table() {
  awk -v base_name="$2" "$AWK_FUNCS"'
{ n[$1]++; rps[$1]+=$2; p50[$1]+=ms($3); p99[$1]+=ms($4); bad[$1]+=$5; cpu[$1]+=$6; req[$1]+=$7; if (!($1 in seen)) { seen[$1]=1; order[++k]=$1 }
  r_rps[$1, $8] = $2; r_cpu[$1, $8] = $6 / $7; if ($8 > rounds) rounds = $8; if ($9 == "yes") sockerr[$1] = 1 }
END {
  base = rps[base_name]/n[base_name]; b99 = p99[base_name]/n[base_name]; bcpu = cpu[base_name]/req[base_name]
  printf "%-28s %9s %8s %8s %13s %13s %11s %13s %8s %25s %14s\n", "proxy", "RPS", "p50 ms", "p99 ms", "RPS/" base_name, "p99/" base_name, "CPU us/req", "CPU/" base_name, "non-2xx", "RPS/" base_name " per round", "socket errors"
  for (i=1; i<=k; i++) { x=order[i]; c = cpu[x]/req[x]
    # Each round compares x with the base run of the same round, which
    # cancels most of the machine-speed drift between rounds.
    m = 0; lo = 1e9; hi = 0
    for (r = 1; r <= rounds; r++) if (((x, r) in r_rps) && r_rps[base_name, r] > 0) { v = r_rps[x, r] / r_rps[base_name, r]; q[++m] = v; if (v < lo) lo = v; if (v > hi) hi = v }
    spread = m > 1 ? sprintf("med %.2f (%.2f-%.2f)", median(q, m), lo, hi) : "-"
    printf "%-28s %9.0f %8.2f %8.2f %13.2f %13.2f %11.1f %13.2f %8d %25s %14s\n", x, rps[x]/n[x], p50[x]/n[x], p99[x]/n[x], (rps[x]/n[x])/base, (p99[x]/n[x])/b99, c, c/bcpu, bad[x], spread, sockerr[x] ? "yes" : "no" }
}' "$1"
}

# in_turn round name...: the names in the order of that round, which
# starts one name later than the round before: no proxy always runs right
# after the same one (caddy's busy Go runtime, say) or at the same point
# of a round.
in_turn() {
  local r=$1; shift
  local names=("$@") i
  for ((i = 0; i < ${#names[@]}; i++)); do echo "${names[$(( (i + r - 1) % ${#names[@]} ))]}"; done
}

# Rounds interleave the proxies so that load from other processes on the
# machine spreads over all of them alike.
for ROUND in $(seq 1 "$ROUNDS"); do
  for n in $(in_turn "$ROUND" "${NAMES[@]}"); do run "$n"; done
done

echo
echo "bench-proxy: wrk -t$THREADS -c$CONNS -d$DURATION (x$ROUNDS), 1 KiB responses, keep-alive, upstream nginx (1 worker) on loopback"
echo "machine: $(nproc) CPUs, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), load before run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(CPU µs/req: proxy process user+system CPU time per request — robust when other load shares the machine)"
table "$TMP/results" nginx

# paired a b: a and b under load at the same moment; appends to $TMP/paired
# b's and a's RPS, p99 and CPU µs per request.
paired() {
  local a=$1 b=$2 half=$(( CONNS / 2 )) r w ta tb
  for r in $(seq 1 "$PAIRED"); do
    ta=$(cpu_ticks "${PID[$a]}"); tb=$(cpu_ticks "${PID[$b]}")
    wrk -t1 -c"$half" --latency $(wrk_args "$a") -d"$DURATION" "http://127.0.0.1:${PORT[$a]}/1k" > "$TMP/pair-a" & w=$!
    wrk -t1 -c"$half" --latency $(wrk_args "$b") -d"$DURATION" "http://127.0.0.1:${PORT[$b]}/1k" > "$TMP/pair-b"
    wait "$w"
    ta=$(( $(cpu_ticks "${PID[$a]}") - ta )); tb=$(( $(cpu_ticks "${PID[$b]}") - tb ))
    echo "$b $a" \
      "$(awk '/^Requests\/sec/ {print $2}' "$TMP/pair-b") $(awk '/^Requests\/sec/ {print $2}' "$TMP/pair-a")" \
      "$(awk '$1=="99%" {print $2}' "$TMP/pair-b") $(awk '$1=="99%" {print $2}' "$TMP/pair-a")" \
      "$(awk -v t="$tb" -v hz="$(getconf CLK_TCK)" '/requests in/ {printf "%.1f", t * 1000000 / hz / $1}' "$TMP/pair-b")" \
      "$(awk -v t="$ta" -v hz="$(getconf CLK_TCK)" '/requests in/ {printf "%.1f", t * 1000000 / hz / $1}' "$TMP/pair-a")" >> "$TMP/paired"
  done
}
if [ "$PAIRED" -gt 0 ]; then
  paired nginx kiln
  paired nginx "kiln+key-auth+rate-limiting"
  [ -z "$KILN_BASE" ] || paired kiln-base kiln
  echo
  echo "side by side: both loaded at the same moment, wrk -t1 -c$(( CONNS / 2 )) -d$DURATION each, $PAIRED rounds"
  awk "$AWK_FUNCS"'
{ k = $1 " / " $2; if (!(k in n)) order[++m] = k; i = ++n[k]; ratio[k, i] = $3 / $4; p99r[k, i] = ms($5) / ms($6); cpur[k, i] = $7 / $8
  list[k] = list[k] sprintf(" %.2f", $3 / $4) }
END {
  printf "%-44s %13s %15s %15s   %s\n", "pair", "RPS ratio med", "p99 ratio med", "CPU/req ratio", "RPS ratio per round"
  for (j = 1; j <= m; j++) { k = order[j]; delete a; delete b; delete c
    for (i = 1; i <= n[k]; i++) { a[i] = ratio[k, i]; b[i] = p99r[k, i]; c[i] = cpur[k, i] }
    printf "%-44s %13.2f %15.2f %15.2f  %s\n", k, median(a, n[k]), median(b, n[k]), median(c, n[k]), list[k] }
}' "$TMP/paired"
  echo "(RPS under equal competition for the CPUs: it also reflects how much CPU each side wins, hence the CPU per request ratio)"
fi

if [ "$NEWCONN" -gt 0 ]; then
  : > "$TMP/newconn"
  for ROUND in $(seq 1 "$NEWCONN"); do
    for n in $(in_turn "$ROUND" nginx haproxy kiln); do run "$n" "$TMP/newconn" -H 'Connection: close'; done
  done
  echo
  echo "new connection per request (Connection: close): wrk -t$THREADS -c$CONNS -d$DURATION (x$NEWCONN)"
  table "$TMP/newconn" nginx
fi

if [ "$TLS" -gt 0 ]; then
  : > "$TMP/tls-results"; : > "$TMP/tls-newconn"
  for ROUND in $(seq 1 "$TLS"); do
    for n in $(in_turn "$ROUND" "${TLS_NAMES[@]}"); do run "$n" "$TMP/tls-results"; done
  done
  for n in "${TLS_NAMES[@]}"; do ROUND=1 run "$n" "$TMP/tls-newconn" -H 'Connection: close'; done
  echo
  echo "TLS 1.3 termination (ECDSA P-256 certificate, SNI localhost), keep-alive: wrk -t$THREADS -c$CONNS -d$DURATION over https (x$TLS)"
  table "$TMP/tls-results" nginx-tls
  echo
  echo "TLS with a new connection (a full handshake) per request (Connection: close): wrk -t$THREADS -c$CONNS -d$DURATION"
  table "$TMP/tls-newconn" nginx-tls
fi

if [ "$H2" -gt 0 ]; then
  # h2c targets: name url pid; then TLS ones (h2 by ALPN).
  h2c=("nginx http://127.0.0.1:$H2_NGINX_PORT/1k $H2_NGINX_PID" "kiln ${URL[kiln]} ${PID[kiln]}")
  [ -z "$KILN_BASE" ] || h2c+=("kiln-base ${URL[kiln-base]} ${PID[kiln-base]}")
  h2tls=()
  if [ "$TLS" -gt 0 ]; then
    for n in nginx-tls kiln-tls ${KILN_BASE:+kiln-base-tls}; do h2tls+=("$n ${URL[$n]} ${PID[$n]}"); done
  fi
  : > "$TMP/h2c"; : > "$TMP/h2tls"
  for ROUND in $(seq 1 "$H2"); do
    for t in "${h2c[@]}"; do echo "$ROUND $(h2load_run $t -c "$H2_CONNS" -m "$STREAMS")" >> "$TMP/h2c"; done
    for t in "${h2tls[@]}"; do echo "$ROUND $(h2load_run $t -c "$H2_CONNS" -m "$STREAMS")" >> "$TMP/h2tls"; done
  done
  echo
  echo "HTTP/2, h2c with prior knowledge: h2load -c$H2_CONNS -m$STREAMS -D ${DURATION%s} (x$H2; nginx: a listen ... http2 server)"
  h2load_table "$TMP/h2c" nginx $(for t in "${h2c[@]}"; do echo "${t%% *}"; done)
  if [ "${#h2tls[@]}" -gt 0 ]; then
    echo
    echo "HTTP/2 over TLS 1.3 (h2 by ALPN): h2load -c$H2_CONNS -m$STREAMS -D ${DURATION%s} (x$H2)"
    h2load_table "$TMP/h2tls" nginx-tls $(for t in "${h2tls[@]}"; do echo "${t%% *}"; done)
  fi
fi

if [ -n "$RATES" ]; then
  : > "$TMP/rates"
  for rate in $RATES; do
    for n in nginx haproxy kiln "kiln+key-auth+rate-limiting" ${KILN_BASE:+kiln-base}; do
      t0=$(cpu_ticks "${PID[$n]}")
      out=$("$FIXEDRATE" -url "http://127.0.0.1:${PORT[$n]}/1k" ${HDR[$n]:+-H "${HDR[$n]}"} -c 16 -rate "$rate" -d "$RATE_DURATION")
      t1=$(cpu_ticks "${PID[$n]}")
      echo "$rate $n $(( (t1 - t0) * 1000000 / $(getconf CLK_TCK) )) $out" >> "$TMP/rates"
    done
  done
  echo
  echo "fixed request rates: bench/fixedrate, 16 keep-alive connections, $RATE_DURATION per rate (latency from each request's scheduled send)"
  awk '
{ for (i = 4; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  k++; rate[k] = $1; name[k] = $2; sent[k] = f["rate"]; p50[k] = f["p50_ms"]; p99[k] = f["p99_ms"]; bad[k] = f["errors"] + f["non2xx"]
  cpu[k] = $3 / (f["requests"] / f["rate"]) / 1000; per[k] = $3 / f["requests"]
  if ($2 == "nginx") base[$1] = per[k] }
END {
  printf "%8s %-28s %9s %10s %11s %10s %8s %8s %7s\n", "rate/s", "proxy", "sent/s", "CPU ms/s", "CPU us/req", "CPU/nginx", "p50 ms", "p99 ms", "errors"
  for (i = 1; i <= k; i++)
    printf "%8s %-28s %9.0f %10.1f %11.1f %10s %8.2f %8.2f %7d\n", rate[i], name[i], sent[i], cpu[i], per[i], (base[rate[i]] > 0 ? sprintf("%.2f", per[i] / base[rate[i]]) : "-"), p50[i], p99[i], bad[i]
}' "$TMP/rates"
fi

if [ "$IDLE" -gt 0 ]; then
  echo
  echo "idle keep-alive connections: $IDLE held open after one request each, by bench/idleconns (growth of the proxy's resident memory, all its processes, fresh before any load; -tls rows: over TLS, ratio to nginx-tls)"
  awk -v n="$IDLE" '
{ k++; name[k] = $1; before[k] = $2; after[k] = $3; per[k] = ($3 - $2) / n; if ($1 == "nginx") base = per[k]; if ($1 == "nginx-tls") tbase = per[k] }
END {
  printf "%-28s %15s %14s %17s %12s\n", "proxy", "RSS before MiB", "RSS after MiB", "KiB per idle conn", "per conn/nginx"
  for (i = 1; i <= k; i++)
    { b = name[i] ~ /-tls$/ ? tbase : base
      printf "%-28s %15.1f %14.1f %17.2f %12s\n", name[i], before[i] / 1024, after[i] / 1024, per[i], (b > 0 ? sprintf("%.1f", per[i] / b) : "-") }
}' "$TMP/idle"
fi
