#!/usr/bin/env bash
# The issue's seed example, run with the real httpie client (Debian `httpie`)
# against `kiln gateway run` and a loopback echo upstream:
#   http :8001/services name=httpservice url=http://127.0.0.1:PORT
#   http :8001/services/httpservice/routes name=httpbinroute paths:='["/httpbin"]'
#   http :8000/httpbin/get            → reaches the upstream at /get with Kong's headers
# plus a form body (paths[]=/form, as `curl -d 'paths[]=/x'` sends) and the
# same flow on PostgreSQL-less SQLite storage, then hybrid mode: a control
# plane and a data plane from `kiln gateway gen-cert`, with
#   http :8001/clustering/status   → the data plane and its config hash
# Usage: KILN=bin/kiln e2e/httpie/seed.sh
set -euo pipefail
KILN=${KILN:-bin/kiln}
command -v http >/dev/null || { echo "✗ httpie is not installed (apt-get install httpie)"; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(freeport); ADMIN=$(freeport); PROXY=$(freeport)

# Echo upstream: answers every request with its method, path and headers as JSON.
python3 - "$UP" <<'PY' &
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"method": self.command, "path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
pids+=($!)

"$KILN" gateway run --database sqlite --sqlite-path "$work/kiln.db" \
  --admin-listen "127.0.0.1:$ADMIN" --proxy-listen "127.0.0.1:$PROXY" --status-listen off \
  --proxy-access-log off >"$work/kiln.log" 2>&1 &
pids+=($!)

step() { printf '%s %s\n' "$1" "$2"; }
fail() { step ✗ "$1"; echo "--- kiln log"; cat "$work/kiln.log"; exit 1; }
for _ in $(seq 50); do http --ignore-stdin -q --check-status ":$ADMIN/" >/dev/null 2>&1 && break; sleep 0.2; done
http --ignore-stdin -q --check-status ":$ADMIN/" >/dev/null 2>&1 || fail "kiln Admin API did not come up on :$ADMIN"

H="http --ignore-stdin --check-status --print=b"
$H ":$ADMIN/services" name=httpservice "url=http://127.0.0.1:$UP" >"$work/svc.json" || fail "POST /services"
step ✓ "http :$ADMIN/services name=httpservice url=http://127.0.0.1:$UP"
$H ":$ADMIN/services/httpservice/routes" name=httpbinroute 'paths:=["/httpbin"]' >"$work/route.json" || fail "POST /services/httpservice/routes"
step ✓ "http :$ADMIN/services/httpservice/routes name=httpbinroute paths:='[\"/httpbin\"]'"
$H --form ":$ADMIN/services/httpservice/routes" name=formroute 'paths[]=/form' >"$work/form.json" || fail "form POST paths[]=/form"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["paths"]==["/form"], r' "$work/form.json" || fail "form body paths[]"
step ✓ "http --form :$ADMIN/services/httpservice/routes name=formroute 'paths[]=/form'"

# The proxy picks the change up without a restart; give it a moment.
ok=
for _ in $(seq 50); do
  if http --ignore-stdin --check-status --print=hb ":$PROXY/httpbin/get" >"$work/proxied.txt" 2>/dev/null; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || fail "GET :$PROXY/httpbin/get never succeeded"
python3 - "$work/proxied.txt" <<'PY' || fail "proxied request does not look like Kong's"
import json, sys
text = open(sys.argv[1]).read()
head, _, body = text.partition("\n\n")
headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in head.splitlines()[1:] if ":" in l}
up = json.loads(body)
uh = {k.lower(): v for k, v in up["headers"].items()}
assert up["path"] == "/get", up["path"]
for h in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-forwarded-prefix", "x-real-ip"):
    assert h in uh, "upstream missing " + h
assert uh["x-forwarded-prefix"] == "/httpbin", uh["x-forwarded-prefix"]
for h in ("via", "x-kong-upstream-latency", "x-kong-proxy-latency"):
    assert h in headers, "response missing " + h
PY
step ✓ "http :$PROXY/httpbin/get → upstream /get with X-Forwarded-*, Via, X-Kong-*-Latency"
http --ignore-stdin --print=hb ":$ADMIN/clustering/status" >"$work/clustering.txt" 2>/dev/null || true
code=$(awk 'NR==1 {print $2}' "$work/clustering.txt")
[ "$code" = 400 ] || fail "/clustering/status on a traditional node answered $code, expected 400 as Kong"
step ✓ "http :$ADMIN/clustering/status → 400 on a traditional node"

# Hybrid mode: a control plane (SQLite) and a data plane sharing a
# gen-cert certificate; the seed's `http :8001/clustering/status` runs
# against the control plane and lists the data plane with its config hash.
"$KILN" gateway gen-cert "$work/cluster.crt" "$work/cluster.key" 2>/dev/null || fail "kiln gateway gen-cert"
step ✓ "kiln gateway gen-cert"
CL=$(freeport); CPADMIN=$(freeport); DPPROXY=$(freeport); DPSTATUS=$(freeport)
certs=(--cluster-cert "$work/cluster.crt" --cluster-cert-key "$work/cluster.key")
"$KILN" gateway run --role control_plane --database sqlite --sqlite-path "$work/cp.db" "${certs[@]}" \
  --cluster-listen "127.0.0.1:$CL" --admin-listen "127.0.0.1:$CPADMIN" --proxy-listen off --status-listen off \
  --db-update-frequency 1s --proxy-access-log off >"$work/cp.log" 2>&1 &
pids+=($!)
"$KILN" gateway run --role data_plane --database off --prefix "$work/dp" "${certs[@]}" \
  --cluster-control-plane "127.0.0.1:$CL" --cluster-dp-labels seed:httpie --admin-listen off \
  --proxy-listen "127.0.0.1:$DPPROXY" --status-listen "127.0.0.1:$DPSTATUS" --proxy-access-log off >"$work/dp.log" 2>&1 &
pids+=($!)
hfail() { step ✗ "$1"; for f in cp dp; do echo "--- $f log"; cat "$work/$f.log"; done; exit 1; }
for _ in $(seq 100); do http --ignore-stdin -q --check-status ":$CPADMIN/" >/dev/null 2>&1 && break; sleep 0.2; done
$H ":$CPADMIN/services" name=hybridservice "url=http://127.0.0.1:$UP" >/dev/null || hfail "POST /services on the control plane"
$H ":$CPADMIN/services/hybridservice/routes" name=hybridroute 'paths:=["/hybrid"]' >/dev/null || hfail "POST /routes on the control plane"
step ✓ "service and route created on the control plane"
ok=
for _ in $(seq 150); do
  if http --ignore-stdin --check-status --print=b ":$DPPROXY/hybrid/get" >"$work/dp-proxied.json" 2>/dev/null; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || hfail "the data plane never proxied /hybrid/get"
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["path"] == "/get"' "$work/dp-proxied.json" || hfail "data plane proxied to the wrong path"
step ✓ "http :$DPPROXY/hybrid/get on the data plane → upstream /get"
ok=
for _ in $(seq 150); do
  http --ignore-stdin --check-status --print=hb ":$CPADMIN/clustering/status" >"$work/cs.txt" 2>/dev/null || true
  dphash=$(http --ignore-stdin --print=b ":$DPSTATUS/status" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["configuration_hash"])' 2>/dev/null || true)
  if python3 - "$work/cs.txt" "$dphash" <<'PY' 2>/dev/null
import json, sys
text = open(sys.argv[1]).read()
head, _, body = text.partition("\n\n")
assert head.splitlines()[0].split()[1] == "200"
assert "deprecation: true" in head.lower()
dps = json.loads(body)
assert len(dps) == 1, dps
(dp,) = dps.values()
assert dp["config_hash"] == sys.argv[2] and dp["config_hash"] != "0" * 32, (dp, sys.argv[2])
assert dp["ip"] == "127.0.0.1" and dp["hostname"] and dp["last_seen"] > 0, dp
PY
  then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || { cat "$work/cs.txt"; hfail "/clustering/status never listed the data plane with its hash"; }
step ✓ "http :$CPADMIN/clustering/status → the data plane with its config hash (Deprecation: true)"
http --ignore-stdin --check-status --print=b ":$CPADMIN/clustering/data-planes" >"$work/dps.json" || hfail "GET /clustering/data-planes"
python3 - "$work/dps.json" <<'PY' || hfail "/clustering/data-planes row"
import json, sys
d = json.load(open(sys.argv[1]))
(row,) = d["data"]
assert row["sync_status"] == "normal" and row["labels"] == {"seed": "httpie"}, row
assert d["next"] is None
PY
step ✓ "http :$CPADMIN/clustering/data-planes → sync_status normal, labels"
