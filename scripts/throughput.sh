#!/usr/bin/env bash
# Loopback throughput, server on core 0, wrk on core 1, 127.0.0.1 only,
# bounded: 10-second runs, 32 connections.
#
# 1. Same handler (examples/bench_server.rs): one trivial handler served
#    plain, behind the layer, and behind the layer with the verified-token
#    cache; every request carries the same Authorization header; routes
#    interleaved, three rounds, the best of each kept.
#    Prints THROUGHPUT_RATIO same-handler and same-handler-cached.
# 2. The axum demo: GET /me with a valid token against GET /health.
#
#   scripts/throughput.sh            # prints the requests/s and the ratios
set -euo pipefail
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --example axum --example bench_server -q

PORT="${PORT:-3917}"
DURATION="${DURATION:-10s}"
export JWT_SECRET="throughput-benchmark secret, at least 32 bytes"

best() { awk -v x="$1" -v y="$2" 'BEGIN {print (y > x) ? y : x}'; }

# 1. The same handler, with and without the layer.
PORT="$PORT" taskset -c 0 target/release/examples/bench_server > /tmp/bench_server.out 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q '^listening on' /tmp/bench_server.out 2>/dev/null && break; sleep 0.1; done
AUTH="authorization: Bearer $(awk '/^token / {print $2}' /tmp/bench_server.out)"
same() { # path
    taskset -c 1 wrk -t1 -c32 -d"$DURATION" -H "$AUTH" "http://127.0.0.1:$PORT$1" | awk '/Requests\/sec/ {print $2}'
}
plain=0; layered=0; cached=0
for _ in 1 2 3; do
    plain=$(best "$plain" "$(same /plain)")
    layered=$(best "$layered" "$(same /layered)")
    cached=$(best "$cached" "$(same /cached)")
done
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
echo "same-handler plain_rps=$plain layered_rps=$layered cached_rps=$cached"
awk -v a="$layered" -v b="$plain" 'BEGIN {printf "THROUGHPUT_RATIO same-handler %.3f\n", a / b}'
awk -v a="$cached" -v b="$plain" 'BEGIN {printf "THROUGHPUT_RATIO same-handler-cached %.3f\n", a / b}'

# 2. The axum demo.

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
        health=$(best "$health" "$h"); me=$(best "$me" "$m"); admin=$(best "$admin" "$a")
    done
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
    echo "cache=$cache health_rps=$health me_rps=$me admin_rps=$admin"
    awk -v a="$me" -v b="$health" -v c="$cache" 'BEGIN {printf "THROUGHPUT_RATIO me/health cache=%s %.3f\n", c, a / b}'
done
