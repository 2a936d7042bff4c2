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

# One server per mode: the default layer, then with the verified-token cache.
for cache in 0 10000; do
    VERIFIED_CACHE="$cache" PORT="$PORT" taskset -c 0 target/release/examples/axum > /dev/null 2>&1 &
    SERVER=$!
    trap 'kill $SERVER 2>/dev/null || true' EXIT
    for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

    TOKEN=$(curl -fs "http://127.0.0.1:$PORT/login" -H 'content-type: application/json' \
        -d '{"username":"alice","password":"wonderland"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
    AUTH="authorization: Bearer $TOKEN"

    rate() { # path: the same headers on every route
        taskset -c 1 wrk -t1 -c32 -d"$DURATION" -H "$AUTH" "http://127.0.0.1:$PORT$1" | awk '/Requests\/sec/ {print $2}'
    }

    # Interleave the routes, twice, and keep the better run of each.
    health=0; me=0; admin=0
    for _ in 1 2; do
        h=$(rate /health); m=$(rate /me); a=$(rate /admin)
        health=$(awk -v x="$health" -v y="$h" 'BEGIN {print (y > x) ? y : x}')
        me=$(awk -v x="$me" -v y="$m" 'BEGIN {print (y > x) ? y : x}')
        admin=$(awk -v x="$admin" -v y="$a" 'BEGIN {print (y > x) ? y : x}')
    done
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
    echo "cache=$cache health_rps=$health me_rps=$me admin_rps=$admin"
    awk -v a="$me" -v b="$health" -v c="$cache" 'BEGIN {printf "THROUGHPUT_RATIO me/health cache=%s %.3f\n", c, a / b}'
done
