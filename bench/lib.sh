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
