#!/usr/bin/env bash
# Profiles a Worker under a fixed open-loop load with `perf` and says where its core's time
# goes: with our own code (wasm and its JavaScript glue) on the stack, or in the runtime alone (HTTP,
# request dispatch, GC), with the busiest symbols. It builds nothing: run `make build` (and
# `make build-floor` for the floor) first.
#
#   bench/profile.sh                               # the broker, 200 proxies, 300 clients/s
#   bench/profile.sh bench/floor/build/entry.mjs   # the floor (bench/floor/README.md)
#   PROFILE_RATE=200 PROFILE_PROXIES=1000 bench/profile.sh
#
# The server runs under plain workerd pinned to core 0 with V8's --perf-basic-prof (so perf
# can name JavaScript and wasm frames), the generator on core 1; perf samples the server for
# PROFILE_SECONDS (default 8) in the middle of a 16 s window. Only processes this script
# started are signalled. Needs `perf` (Debian: linux-perf).
set -uo pipefail
cd "$(dirname "$0")/.."

SCRIPT=${1:-build/entry.mjs}
RATE=${PROFILE_RATE:-300}
PROXIES=${PROFILE_PROXIES:-200}
SECONDS_SAMPLED=${PROFILE_SECONDS:-8}
OUT=${PROFILE_OUT:-$(mktemp -d)}
command -v perf >/dev/null || { echo "profile: perf is not installed" >&2; exit 2; }
[[ -f $SCRIPT ]] || { echo "profile: $SCRIPT is missing: build it first" >&2; exit 2; }

WORKERD_V8_FLAGS="--perf-basic-prof" PROXY_POLL_TIMEOUT_MS=5000 CLIENT_TIMEOUT_MS=5000 \
  taskset -c 0 node bench/serve.mjs --runtime workerd --port 0 --script "$SCRIPT" \
  >"$OUT/serve.out" 2>"$OUT/serve.err" &
SERVE=$!
trap 'kill $SERVE 2>/dev/null; wait $SERVE 2>/dev/null' EXIT
for _ in $(seq 1 150); do grep -q '"ready"' "$OUT/serve.out" 2>/dev/null && break; sleep 0.2; done
url=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$OUT/serve.out" | head -1)
pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$OUT/serve.out" | head -1)
[[ -n $url && -n $pid ]] || { echo "profile: the server did not start; see $OUT/serve.err" >&2; exit 1; }

timeout 120 taskset -c 1 node bench/loadgen.mjs --url "$url" --proxies "$PROXIES" \
  --clients-per-second "$RATE" --duration 16 --ramp 2 --warmup 1 --pid "$pid" --interval 0 \
  --no-debug --json >"$OUT/report.json" 2>"$OUT/loadgen.err" &
GEN=$!
sleep 7
perf record -F 1999 -g -p "$pid" -o "$OUT/perf.data" -- sleep "$SECONDS_SAMPLED" >/dev/null 2>&1
wait $GEN
perf script -i "$OUT/perf.data" -F period,ip,sym 2>/dev/null | node bench/profile-split.mjs "$OUT/report.json"
echo "(perf data and the load report: $OUT)"
