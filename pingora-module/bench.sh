#!/usr/bin/env bash
# Benchmark the DynDNS2 nochg path (auth cache and record cache warm: no Argon2, no callout)
# with wrk over HTTPS keep-alive, and print requests/s and latency.
#
#   pingora-module/bench.sh                 # builds and starts PowerDNS + dynedge-pingora itself
#   BENCH_URL=https://127.0.0.1:8443 pingora-module/bench.sh   # any running gateway (e.g. Envoy
#                                           # from `cargo xtask up`) with the demo configuration
#
# Settings: DURATION (10s), CONNS (50), THREADS (wrk threads, 2), WORKERS (dynedge threads, 2),
# CLOSE=1 adds "Connection: close" (one TLS handshake per request, as routers do).
# With BENCH_URL, the gateway's configuration must have rate_limits off (see below).
# Ports 24900-24903. Needs wrk, curl, openssl, pdns-server,
# pdns-backend-sqlite3, sqlite3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
: "${DURATION:=10s}" "${CONNS:=50}" "${THREADS:=2}" "${WORKERS:=2}" "${CLOSE:=0}"
HOST=home.dyn.example.test
IP=192.0.2.77
AUTH="Authorization: Basic $(printf demo:demo-password | base64)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_for() { # wait_for CMD... : retry for up to 30 s
  for _ in $(seq 1 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "gave up waiting for: $*" >&2; return 1
}

if [ -z "${BENCH_URL:-}" ]; then
  run=$(mktemp -d /tmp/dynedge-pingora-bench.XXXXXX)
  DNS_PORT=24900 API_PORT=24901 TLS_PORT=24902 PLAIN_PORT=24903
  BENCH_URL=https://127.0.0.1:$TLS_PORT
  (cd "$root" && cargo build --release -q -p dynedge-pingora)
  bin=${CARGO_TARGET_DIR:-$root/target}/release/dynedge-pingora

  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null
  mkdir "$run/pdns"
  sqlite3 "$run/pdns/pdns.sqlite3" </usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql
  cat >"$run/pdns/pdns.conf" <<EOF
launch=gsqlite3
gsqlite3-database=$run/pdns/pdns.sqlite3
local-address=127.0.0.1
local-port=$DNS_PORT
api=yes
api-key=dynedge-demo-pdns-key
webserver=yes
webserver-address=127.0.0.1
webserver-port=$API_PORT
webserver-allow-from=127.0.0.1
socket-dir=$run/pdns
daemon=no
guardian=no
write-pid=no
disable-syslog=yes
security-poll-suffix=
EOF
  pdns_server --config-dir="$run/pdns" >"$run/pdns.log" 2>&1 &
  pids+=($!)
  api="http://127.0.0.1:$API_PORT/api/v1/servers/localhost"
  wait_for curl -fsS -H "X-API-Key: dynedge-demo-pdns-key" "$api"
  curl -fsS -o /dev/null -H "X-API-Key: dynedge-demo-pdns-key" -H 'Content-Type: application/json' \
    --data '{"name":"dyn.example.test.","kind":"Native","nameservers":["ns1.dyn.example.test."]}' "$api/zones"

  # Rate limits off: the point is the nochg path itself (with them, one client sending one
  # host's update 60 times a minute is rightly answered `abuse`).
  sed '0,/{/s//{ "rate_limits": { "enabled": false },/' "$root/examples/dynedge.json" >"$run/dynedge.json"
  "$bin" --config "$run/dynedge.json" --tls "127.0.0.1:$TLS_PORT" \
    --cert "$run/cert.pem" --key "$run/key.pem" --listen "127.0.0.1:$PLAIN_PORT" \
    --cluster "pdns_api=127.0.0.1:$API_PORT,max_requests=1" --threads "$WORKERS" \
    --grace-period 0 >"$run/gateway.log" 2>&1 &
  pids+=($!)
  wait_for curl -fsSk "$BENCH_URL/health"
  echo "dynedge-pingora $(git -C "$root" rev-parse --short HEAD), $WORKERS worker threads, logs in $run"
fi

url="$BENCH_URL/nic/update?hostname=$HOST&myip=$IP"
# Warm up: the first request verifies the password (Argon2) and writes the record; the second
# must then be nochg (auth cache and record cache warm), which is what wrk measures.
first=$(curl -sSk -A bench -H "$AUTH" "$url")
second=$(curl -sSk -A bench -H "$AUTH" "$url")
echo "warm-up: ${first%$'\n'} / ${second%$'\n'}"
[ "$second" = "nochg $IP" ] || { echo "expected 'nochg $IP', got '$second'" >&2; exit 1; }

extra=()
[ "$CLOSE" = 1 ] && extra=(-H "Connection: close")
echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency ${extra[*]:-} (nochg over HTTPS, keep-alive unless CLOSE=1)"
out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "$AUTH" -H "User-Agent: bench" \
  "${extra[@]}" "$url")
echo "$out" | grep -E "Requests/sec|Latency  |50%|90%|99%|requests in|Non-2xx|Socket errors" | sed 's/^ */  /'
# Every answer must still be nochg: a last request after the run.
last=$(curl -sSk -A bench -H "$AUTH" "$url")
[ "$last" = "nochg $IP" ] || { echo "after the run: '$last'" >&2; exit 1; }
