#!/usr/bin/env bash
# bench-grpc: gRPC through kiln against nginx's grpc_pass, both in front of
# the same gRPC upstream (bench/grpcecho, grpc-go) on loopback. h2load sends
# unary calls (kiln.test.Echo/Say, a 6-byte message) over CONNS (32) HTTP/2
# connections with STREAMS (10) calls in flight on each, for DURATION
# seconds (10) after a warm-up; ROUNDS (3) interleave the targets. The
# upstream called directly is a reference row. Prints, per target, calls a
# second, mean latency and the proxy's CPU time per call, with ratios to
# nginx (per-round median).
#
# nginx: worker_processes auto, an upstream block with keepalive 64,
# grpc_pass, keepalive_requests raised on both sides (nginx's default of
# 1,000 calls per connection fails the calls in flight when it closes one);
# kiln: kiln-gateway with a grpc service and route, DB-less. Access logs
# off for both.
set -euo pipefail
cd "$(dirname "$0")/.."

KILN=${KILN:-bin/kiln-gateway}
GRPCECHO=${GRPCECHO:-bin/grpcecho}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
STREAMS=${STREAMS:-10}
ROUNDS=${ROUNDS:-3}

for bin in h2load nginx; do
  command -v "$bin" >/dev/null || { echo "bench-grpc: $bin is not installed (apt-get install nghttp2-client nginx-light)" >&2; exit 1; }
done
for bin in "$KILN" "$GRPCECHO"; do
  [ -x "$bin" ] || { echo "bench-grpc: $bin not found; run make bench-grpc (or set KILN=, GRPCECHO=)" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/kiln-bench-grpc.XXXXXX)
# shellcheck source=bench/lib.sh
. bench/lib.sh

# wait_grpc port: until a call to the port succeeds.
wait_grpc() {
  for _ in $(seq 1 100); do
    if h2load -n1 -c1 -d "$TMP/call.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
      "http://127.0.0.1:$1/kiln.test.Echo/Say" 2>/dev/null | grep -q '1 succeeded'; then return 0; fi
    sleep 0.1
  done
  echo "bench-grpc: 127.0.0.1:$1 did not answer a gRPC call" >&2; return 1
}

# The call: a gRPC message (not compressed, 6 bytes): StringValue "kiln".
printf '\x00\x00\x00\x00\x06\x0a\x04kiln' > "$TMP/call.bin"

UP=$(free_port)
"$GRPCECHO" "127.0.0.1:$UP" & PIDS+=($!)
wait_grpc "$UP"
declare -A PORT PID
NAMES=(direct)
PORT[direct]=$UP PID[direct]=${PIDS[-1]}

NG=$(free_port)
run_nginx "$TMP/nginx" auto 4096 "  upstream echo { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NG http2; location / { grpc_pass grpc://echo; } }"
wait_grpc "$NG"
NAMES+=(nginx); PORT[nginx]=$NG PID[nginx]=${PIDS[-1]}

KP=$(free_port)
mkdir -p "$TMP/kiln"
cat > "$TMP/kiln/kong.yaml" <<EOF
_format_version: "3.0"
services:
- name: echo
  protocol: grpc
  host: 127.0.0.1
  port: $UP
  routes:
  - name: echo
    protocols: [grpc]
    paths: [/kiln.test.Echo/]
EOF
"$KILN" run --database off --declarative-config "$TMP/kiln/kong.yaml" --proxy-listen "127.0.0.1:$KP" \
  --admin-listen off --status-listen off --proxy-access-log off > "$TMP/kiln/log" 2>&1 & PIDS+=($!)
wait_grpc "$KP"
NAMES+=(kiln); PORT[kiln]=$KP PID[kiln]=${PIDS[-1]}

# run name: one measured h2load run of a unary call.
run() {
  h2load_run "$1" "http://127.0.0.1:${PORT[$1]}/kiln.test.Echo/Say" "${PID[$1]}" \
    -c "$CONNS" -m "$STREAMS" -d "$TMP/call.bin" -H 'content-type: application/grpc' -H 'te: trailers'
}

echo "bench-grpc: $(nproc) CPUs, h2load -c$CONNS -m$STREAMS for ${DURATION}s, $ROUNDS rounds; $(nginx -v 2>&1)"
RES="$TMP/results"
for r in $(seq 1 "$ROUNDS"); do
  for name in "${NAMES[@]}"; do
    line=$(run "$name")
    echo "round $r: $line"
    echo "$r $line" >> "$RES"
  done
done

echo
h2load_table "$RES" nginx "${NAMES[@]}" | sed 's/requests/calls/g; s/request |/call |/'
echo "(direct: the upstream called without a proxy; its CPU column is the upstream's own)"
