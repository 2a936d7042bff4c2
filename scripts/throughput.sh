#!/usr/bin/env bash
# Loopback throughput of the axum demo: GET /me with a valid token against
# GET /health on the same server. The server runs on core 0, wrk on core 1.
# Bounded: two 10-second runs per route, 32 connections, 127.0.0.1 only.
#
#   scripts/throughput.sh            # prints the requests/s and the ratio
set -euo pipefail
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --example axum -q

PORT="${PORT:-3917}"
DURATION="${DURATION:-10s}"
export JWT_SECRET="throughput-benchmark secret, at least 32 bytes"
PORT="$PORT" taskset -c 0 target/release/examples/axum > /dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

TOKEN=$(curl -fs "http://127.0.0.1:$PORT/login" -H 'content-type: application/json' \
    -d '{"username":"alice","password":"wonderland"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')

rate() { # path [header]
    taskset -c 1 wrk -t1 -c32 -d"$DURATION" ${2:+-H "$2"} "http://127.0.0.1:$PORT$1" | awk '/Requests\/sec/ {print $2}'
}

# Interleave the two routes, twice, and keep the better run of each.
health=0; me=0
for _ in 1 2; do
    h=$(rate /health); m=$(rate /me "authorization: Bearer $TOKEN")
    health=$(awk -v a="$health" -v b="$h" 'BEGIN {print (b > a) ? b : a}')
    me=$(awk -v a="$me" -v b="$m" 'BEGIN {print (b > a) ? b : a}')
done
echo "health_rps $health"
echo "me_rps $me"
awk -v a="$me" -v b="$health" 'BEGIN {printf "THROUGHPUT_RATIO me/health %.3f\n", a / b}'
