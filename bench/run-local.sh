#!/usr/bin/env bash
# Runs bench/loadgen.mjs against the built Worker served locally, at several load levels, and
# prints one table row per level. It builds nothing: run `make build` first.
#
#   bench/run-local.sh                      # the default levels below
#   bench/run-local.sh 200:20 1000:100      # PROXIES:CLIENTS_PER_SECOND levels of your own
#
# Each level gets a fresh broker (bench/serve.mjs: Miniflare running build/index.js under
# workerd on 127.0.0.1, a free port), so levels do not disturb each other and the memory
# figures start from the same baseline. With two or more cores the broker is pinned to core 0
# and the generator to core 1 (taskset), as on the machine the README's figures come from.
#
# Environment (all optional):
#   BENCH_RUNTIME=miniflare    or workerd: see bench/serve.mjs (workerd = no Miniflare entry
#                              Worker in front, as docs/design.md §4's minimal-matcher figure)
#   BENCH_DURATION=20          measured seconds per level
#   BENCH_OUT=DIR              where the reports go (default bench/results/<date>)
#   BENCH_EXTRA="--arrivals poisson"   extra loadgen options for every level
#   BENCH_SHARDS="1 4 16"      run every level once per MATCHER_SHARDS value (default: the
#                              MATCHER_SHARDS in the environment, else 1); the table then has
#                              requests per shard per second (mean/busiest) and DO requests
#                              per client for each
#   BENCH_BROKER_CPU=0 BENCH_GEN_CPU=1 cores for taskset ("" = no pinning)
#   PROXY_POLL_TIMEOUT_MS=5000 CLIENT_TIMEOUT_MS=5000 MAX_PARKED_POLLS=5000 NEXT_POLL_MS=20000
#   and any other broker setting bench/serve.mjs knows, passed to the Worker.
#
# Every loop is bounded: a level lasts at most ~duration + 60 s, then everything it started
# is stopped. Only processes this script started are signalled, by their pid.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

if [[ ! -f build/index.js ]]; then
  echo "run-local: build/index.js is missing: run \`make build\` first" >&2
  exit 2
fi

if [[ $# -gt 0 ]]; then
  LEVELS=("$@")
else
  LEVELS=(3000:0 200:20 1000:100 3000:300 3000:500 3000:700 3000:1000 3000:1400)
fi
DURATION=${BENCH_DURATION:-20}
RUNTIME=${BENCH_RUNTIME:-miniflare}
OUT=${BENCH_OUT:-bench/results/$(date +%Y%m%d-%H%M%S)}
EXTRA=${BENCH_EXTRA:-}
read -r -a SHARD_COUNTS <<<"${BENCH_SHARDS:-${MATCHER_SHARDS:-1}}"

export PROXY_POLL_TIMEOUT_MS=${PROXY_POLL_TIMEOUT_MS:-5000}
export CLIENT_TIMEOUT_MS=${CLIENT_TIMEOUT_MS:-5000}
export MAX_PARKED_POLLS=${MAX_PARKED_POLLS:-5000}
export NEXT_POLL_MS=${NEXT_POLL_MS:-20000}

BROKER_PIN=()
GEN_PIN=()
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
  BROKER_CPU=${BENCH_BROKER_CPU-0}
  GEN_CPU=${BENCH_GEN_CPU-1}
  [[ -n $BROKER_CPU ]] && BROKER_PIN=(taskset -c "$BROKER_CPU")
  [[ -n $GEN_CPU ]] && GEN_PIN=(taskset -c "$GEN_CPU")
fi

mkdir -p "$OUT"
SERVE_PID=""

stop_broker() {
  [[ -z $SERVE_PID ]] && return
  kill -TERM "$SERVE_PID" 2>/dev/null
  for _ in $(seq 1 50); do
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$SERVE_PID" 2>/dev/null
  wait "$SERVE_PID" 2>/dev/null
  SERVE_PID=""
}
trap stop_broker EXIT
trap 'stop_broker; exit 130' INT TERM

{
  echo "# bench/run-local.sh $(date -u +%FT%TZ)"
  echo "levels: ${LEVELS[*]}; duration ${DURATION} s each; runtime $RUNTIME"
  echo "broker settings: PROXY_POLL_TIMEOUT_MS=$PROXY_POLL_TIMEOUT_MS CLIENT_TIMEOUT_MS=$CLIENT_TIMEOUT_MS MAX_PARKED_POLLS=$MAX_PARKED_POLLS NEXT_POLL_MS=$NEXT_POLL_MS"
  echo "pinning: broker '${BROKER_PIN[*]:-none}', generator '${GEN_PIN[*]:-none}'; $(nproc) cores; node $(node --version)"
  echo "build: $(stat -c '%y' build/index.js) $(sha256sum build/index_bg.wasm | cut -c1-12)"
  echo "extra loadgen options: ${EXTRA:-none}"
  echo "matcher shards: ${SHARD_COUNTS[*]}"
} | tee "$OUT/settings.txt"

n=0
REPORTS=()
RUNS=()
for shards in "${SHARD_COUNTS[@]}"; do
  for level in "${LEVELS[@]}"; do RUNS+=("$shards/$level"); done
done
for run in "${RUNS[@]}"; do
  n=$((n + 1))
  export MATCHER_SHARDS=${run%%/*}
  level=${run#*/}
  proxies=${level%%:*}
  rate=${level##*:}
  if ! [[ $proxies =~ ^[0-9]+$ && $rate =~ ^[0-9.]+$ ]]; then
    echo "run-local: bad level '$level' (want PROXIES:CLIENTS_PER_SECOND)" >&2
    exit 2
  fi
  tag=$(printf '%02d-s%s-p%s-c%s' "$n" "$MATCHER_SHARDS" "$proxies" "$rate")
  echo
  echo "== level $n: $MATCHER_SHARDS shard(s), $proxies proxies, $rate clients/s, ${DURATION} s"

  # A fresh broker, pinned, on a free loopback port.
  "${BROKER_PIN[@]}" node bench/serve.mjs --runtime "$RUNTIME" --port 0 --log "$OUT/$tag.worker.log" \
    >"$OUT/$tag.serve.out" 2>"$OUT/$tag.serve.err" &
  SERVE_PID=$!
  url=""
  for _ in $(seq 1 150); do
    url=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$OUT/$tag.serve.out" 2>/dev/null | head -1)
    [[ -n $url ]] && break
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.2
  done
  if [[ -z $url ]]; then
    echo "run-local: the broker did not start; see $OUT/$tag.serve.err" >&2
    cat "$OUT/$tag.serve.err" >&2
    stop_broker
    continue
  fi
  pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$OUT/$tag.serve.out" | head -1)

  # The generator; --pid samples the workerd process that serves the broker.
  ramp=$(( proxies >= 2000 ? 3 : 2 ))
  timeout --kill-after=5 $((DURATION + ramp + 1 + 20 + 30)) \
    "${GEN_PIN[@]}" node bench/loadgen.mjs --url "$url" --proxies "$proxies" --clients-per-second "$rate" \
    --duration "$DURATION" --ramp "$ramp" --warmup 1 --drain 20 --pid "$pid" --interval 5 --json \
    --label "$tag" $EXTRA \
    >"$OUT/$tag.json" 2> >(tee "$OUT/$tag.progress" >&2)
  rc=$?
  [[ $rc -ne 0 ]] && echo "run-local: loadgen exited with $rc at level $level" >&2
  REPORTS+=("$OUT/$tag.json")

  # The Worker's log: requests that ended in a 5xx, and errors it logged.
  if [[ -f $OUT/$tag.worker.log ]]; then
    s5=$(grep -c '"status":5' "$OUT/$tag.worker.log")
    errs=$(grep -ci 'error\|unavailable\|panic' "$OUT/$tag.worker.log")
    echo "worker log: $(wc -l <"$OUT/$tag.worker.log") lines, $s5 with a 5xx status, $errs mentioning error/unavailable/panic" \
      | tee "$OUT/$tag.worker-summary.txt"
  fi
  stop_broker
  sleep 1
done

echo
echo "== results ($OUT)"
node bench/table.mjs "${REPORTS[@]}" | tee "$OUT/table.txt"
node bench/table.mjs --markdown "${REPORTS[@]}" >"$OUT/table.md"
