#!/usr/bin/env bash
# bench-netboot: kiln's netboot stack vs dnsmasq on the same machine, same run.
#  - DHCP: perfdhcp (Debian kea-admin) DORA exchanges/s, N reserved clients,
#    each server answering from a reservation list (Hardware.csv / dhcp-host).
#  - TFTP: throughput downloading a 1 MiB file with curl (blksize 1468),
#    kiln and dnsmasq running side by side and measured in alternation.
# Server and client live in two network namespaces joined by a veth pair
# (names prefixed kn3b, removed on exit). Needs root. Prints a ratio table.
set -euo pipefail

KILN_BIN=${KILN_BIN:-bin/kiln}
CLIENTS=${CLIENTS:-1000}      # distinct perfdhcp clients (MACs) = reservations
PERIOD=${PERIOD:-5}           # seconds per perfdhcp run
TFTP_RUNS=${TFTP_RUNS:-50}    # 1 MiB downloads per curl process
ROUNDS=${ROUNDS:-3}           # alternating rounds per server

for tool in ip perfdhcp dnsmasq curl; do
  command -v "$tool" >/dev/null || { echo "bench-netboot: $tool not found (apt install iproute2 kea-admin dnsmasq curl)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench-netboot: needs root (network namespaces)" >&2; exit 1; }
[ -x "$KILN_BIN" ] || { echo "bench-netboot: $KILN_BIN not built (make bench-netboot builds it)" >&2; exit 1; }

SNS=kn3bs$$; CNS=kn3bc$$; SIF=kn3bs0; CIF=kn3bc0
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$SNS" 2>/dev/null || true
  ip netns del "$CNS" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

ip netns add "$SNS"; ip netns add "$CNS"
ip link add "$SIF" netns "$SNS" type veth peer name "$CIF" netns "$CNS"
ip -n "$SNS" addr add 10.80.0.1/16 dev "$SIF"; ip -n "$CNS" addr add 10.80.0.2/16 dev "$CIF"
for ns in "$SNS" "$CNS"; do ip -n "$ns" link set lo up; done
ip -n "$SNS" link set "$SIF" up; ip -n "$CNS" link set "$CIF" up

# perfdhcp client r (0 <= r < CLIENTS) uses MAC base + r in the last two bytes.
mkdir -p "$WORK/tftp"
{
  echo "hostname,bmc_ip,bmc_username,bmc_password,mac,ip_address,netmask,gateway,nameservers,labels,disk"
  for ((r = 0; r < CLIENTS; r++)); do
    printf 'bench%d,,,,52:54:00:80:%02x:%02x,10.80.%d.%d,255.255.0.0,10.80.0.1,10.80.0.1,,/dev/sda\n' \
      "$r" $((r >> 8)) $((r & 255)) $((16 + (r >> 8))) $((r & 255))
  done
} > "$WORK/Hardware.csv"
tail -n +2 "$WORK/Hardware.csv" | awk -F, '{print $5","$6}' > "$WORK/dhcp-hosts"
head -c 1048576 /dev/urandom > "$WORK/tftp/ipxe.efi"
head -c 65536 /dev/urandom > "$WORK/tftp/undionly.kpxe"

wait_port() { # proto port
  for _ in $(seq 1 100); do
    if ip netns exec "$SNS" ss -H -l -n "-$1" "sport = :$2" | grep -q .; then return 0; fi
    sleep 0.1
  done
  echo "bench-netboot: server did not open $1 port $2" >&2; exit 1
}

PIDS=()
start_kiln() { # kiln TFTP listens on 1069 so dnsmasq's TFTP can run beside it
  ip netns exec "$SNS" "$KILN_BIN" serve netboot --hardware-csv "$WORK/Hardware.csv" --bind-ip 10.80.0.1 \
    --dhcp-mode reservation --ipxe-dir "$WORK/tftp" --lease-time 1h --tftp-port 1069 > "$WORK/kiln.log" 2>&1 &
  PIDS+=($!)
  wait_port u 67; wait_port u 1069
}

start_dnsmasq() { # $1 = dhcp: also serve DHCP from the same reservations
  local dhcp=()
  if [ "${1:-}" = dhcp ]; then
    dhcp=(--dhcp-range=10.80.0.0,static,255.255.0.0,1h --dhcp-hostsfile="$WORK/dhcp-hosts" --quiet-dhcp
      --leasefile-ro --dhcp-option=3,10.80.0.1 --dhcp-option=6,10.80.0.1)
  fi
  ip netns exec "$SNS" dnsmasq --no-daemon --port=0 --interface="$SIF" --bind-interfaces --no-ping "${dhcp[@]}" \
    --enable-tftp --tftp-root="$WORK/tftp" --log-facility="$WORK/dnsmasq.log" > "$WORK/dnsmasq.out" 2>&1 &
  PIDS+=($!)
  wait_port u 69
  if [ "${1:-}" = dhcp ]; then wait_port u 67; fi
}

stop_servers() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PIDS=()
}

# perf RATE: one perfdhcp run; prints "achieved-rate drop-percent".
perf() {
  local out
  out=$(ip netns exec "$CNS" perfdhcp -4 -B -l "$CIF" -r "$1" -p "$PERIOD" -R "$CLIENTS" -b mac=52:54:00:80:00:00 2>&1) || true
  echo "$out" >> "$WORK/perfdhcp.txt"
  echo "$out" | awk '/^Rate:/ {rate = $2} /^sent packets:/ {sent += $3} /^received packets:/ {recv += $3}
    END {if (sent == 0) sent = 1; printf "%s %.2f\n", rate + 0, 100 * (sent - recv) / sent}'
}

# dhcp_bench NAME: the best rate with under 1% lost packets over RATES, and
# the rate achieved when flooded at the top rate.
dhcp_bench() {
  local best=0 r rate loss
  for r in $RATES; do
    read -r rate loss < <(perf "$r")
    echo "  $1: offered $r/s -> $rate DORA/s, ${loss}% lost" >&2
    if awk -v l="$loss" 'BEGIN {exit !(l < 1)}'; then best=$rate; fi
  done
  echo "$best $rate"
}

# tftp_pair: ROUNDS rounds alternating kiln (port 1069) and dnsmasq (69);
# each round is one curl process downloading the 1 MiB file TFTP_RUNS times
# (so process start-up does not dominate). Prints total seconds of each.
tftp_pair() {
  local k=0 d=0 t0 t1 r srv url args
  for srv in kiln dnsmasq; do # correctness first: byte-identical downloads
    url=tftp://10.80.0.1/ipxe.efi; [ "$srv" = kiln ] && url=tftp://10.80.0.1:1069/ipxe.efi
    ip netns exec "$CNS" curl -sS --tftp-blksize 1468 -o "$WORK/got" "$url"
    cmp -s "$WORK/got" "$WORK/tftp/ipxe.efi" || { echo "bench-netboot: TFTP download from $srv differs" >&2; exit 1; }
  done
  for ((r = 0; r < ROUNDS; r++)); do
    for srv in kiln dnsmasq; do
      url=tftp://10.80.0.1/ipxe.efi; [ "$srv" = kiln ] && url=tftp://10.80.0.1:1069/ipxe.efi
      args=(); for ((i = 0; i < TFTP_RUNS; i++)); do args+=(-o /dev/null "$url"); done
      t0=$(date +%s.%N)
      ip netns exec "$CNS" curl -sS --tftp-blksize 1468 "${args[@]}"
      t1=$(date +%s.%N)
      if [ "$srv" = kiln ]; then k=$(awk -v a="$k" -v b="$t0" -v c="$t1" 'BEGIN {print a + c - b}')
      else d=$(awk -v a="$d" -v b="$t0" -v c="$t1" 'BEGIN {print a + c - b}'); fi
    done
  done
  echo "$k $d"
}

RATES=${RATES:-500 1000 2000 4000 8000 16000}
echo "bench-netboot: $CLIENTS reserved clients; perfdhcp ${PERIOD}s at each of $RATES/s; TFTP ${ROUNDS}x${TFTP_RUNS} 1 MiB downloads each, interleaved"
start_kiln
start_dnsmasq
read -r kiln_tftp dq_tftp < <(tftp_pair)
read -r kiln_best kiln_flood < <(dhcp_bench kiln)
stop_servers
start_dnsmasq dhcp
read -r dq_best dq_flood < <(dhcp_bench dnsmasq)
stop_servers

div() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print 0; else print a / b}'; }
printf '\n%-42s %12s %12s %10s\n' "metric" "kiln" "dnsmasq" "kiln/dq"
printf '%-42s %12.1f %12.1f %10.2f\n' "DHCP DORA/s, best rate with <1% loss" "$kiln_best" "$dq_best" "$(div "$kiln_best" "$dq_best")"
printf '%-42s %12.1f %12.1f %10.2f\n' "DHCP DORA/s achieved when offered ${RATES##* }/s" "$kiln_flood" "$dq_flood" "$(div "$kiln_flood" "$dq_flood")"
printf '%-42s %12.2f %12.2f %10.2f\n' "TFTP 1 MiB throughput (MiB/s)" "$(div $((TFTP_RUNS * ROUNDS)) "$kiln_tftp")" "$(div $((TFTP_RUNS * ROUNDS)) "$dq_tftp")" "$(div "$dq_tftp" "$kiln_tftp")"
