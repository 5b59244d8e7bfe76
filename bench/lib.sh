# Shared by the bench scripts (sourced): the processes they start (PIDS,
# killed and waited for on exit, when $TMP is removed), free loopback
# ports and CPU time from /proc. The script sets TMP first.

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# free_port prints a loopback TCP port nobody listens on.
free_port() {
  local p
  while :; do
    p=$(( 10000 + RANDOM % 20000 )) # below the ephemeral range (32768+)
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
}

# proc_sum pid file program: the sum over pid and its child processes
# (nginx workers) of what the awk program prints from /proc/<pid>/<file>.
proc_sum() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" 2>/dev/null); do
    if [ -r "/proc/$p/$2" ]; then
      total=$(( total + $(awk "$3" "/proc/$p/$2") ))
    fi
  done
  echo "$total"
}

# cpu_ticks pid: user+system clock ticks used by pid and its child
# processes, for CPU time per request.
cpu_ticks() { proc_sum "$1" stat '{print $14 + $15}'; }


# run_nginx dir workers connections http-body: writes dir/nginx.conf (pid,
# logs and temporary files under dir, no access log, keep-alive without a
# request limit) around the http block's body and starts nginx in the
# foreground, as one of PIDS.
run_nginx() {
  local d=$1
  mkdir -p "$d/logs" "$d/tmp"
  cat > "$d/nginx.conf" <<EOF
worker_processes $2;
pid $d/nginx.pid;
error_log $d/logs/error.log;
events { worker_connections $3; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
$4
}
EOF
  nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' & PIDS+=($!)
}

# AWK_FUNCS are awk functions the bench tables share, put before a
# program: ms(v), a latency as wrk and h2load print it ("812.00us",
# "1.20ms", "2.1s") in milliseconds; median(a, n), the median of
# a[1..n] (sorted in place).
AWK_FUNCS='
function ms(v) { if (v ~ /us$/) return substr(v,1,length(v)-2)/1000; if (v ~ /ms$/) return substr(v,1,length(v)-2)+0; if (v ~ /s$/) return substr(v,1,length(v)-1)*1000; return v+0 }
function median(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
  return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
'

# h2load_run name url pid [h2load arguments...]: one measured h2load run
# of DURATION seconds against url (after a 2 s warm-up), the CPU time of
# pid (and its child processes) read around it; prints "name requests/s
# mean-latency-ms cpu-us-per-request". Fails when a request failed.
h2load_run() {
  local name=$1 url=$2 pid=$3 out t0 t1
  shift 3
  h2load "$@" -D 2 "$url" >/dev/null
  t0=$(cpu_ticks "$pid")
  out=$(h2load "$@" -D "$DURATION" "$url")
  t1=$(cpu_ticks "$pid")
  awk -v name="$name" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" "$AWK_FUNCS"'
    # finished in 2.00s, 27617.00 req/s, 1.72MB/s
    /^finished in/ { rps = $4 + 0 }
    # requests: N total, N started, N done, N succeeded, N failed, ...
    /^requests:/ { done = $6 + 0; ok = $8 + 0 }
    # time for request: min max mean sd +/-sd
    /^time for request:/ { mean = ms($6) }
    END {
      if (ok == 0 || ok < done) { printf "%s: %d of %d requests succeeded\n", name, ok, done > "/dev/stderr"; exit 1 }
      printf "%s %.0f %.2f %.1f\n", name, rps, mean, ticks / hz * 1e6 / ok
    }' <<<"$out"
}

# h2load_table results base names...: a markdown table of the rounds in
# results (lines "round name requests/s latency cpu", from h2load_run)
# with each name's median and its ratios to base's run in the same round.
h2load_table() {
  local res=$1 base=$2 name
  shift 2
  echo "| target | requests/s (median) | mean latency ms | CPU µs per request | requests/s / $base | CPU / $base |"
  echo "|---|---|---|---|---|---|"
  for name in "$@"; do
    awk -v name="$name" -v base="$base" "$AWK_FUNCS"'
      $2 == base { nr[$1] = $3; nc[$1] = $5 }
      $2 == name { n++; rps[n] = $3; lat[n] = $4; cpu[n] = $5; round[n] = $1 }
      END {
        for (i = 1; i <= n; i++) { rr[i] = rps[i] / nr[round[i]]; cr[i] = cpu[i] / nc[round[i]] }
        cpuRatio = name == "direct" ? "-" : sprintf("%.2f", median(cr, n))
        printf "| %s | %.0f | %.2f | %.1f | %.2f | %s |\n", name, median(rps, n), median(lat, n), median(cpu, n), median(rr, n), cpuRatio
      }' "$res"
  done
}
