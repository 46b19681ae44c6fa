#!/usr/bin/env bash
# Runs bench/loadgen.mjs against the built Worker served locally, at several load levels, and
# prints one table row per level. It builds nothing: run `make build` first.
#
#   bench/run-local.sh                      # the default levels below
#   bench/run-local.sh 200:20 1000:100      # PROXIES:CLIENTS_PER_SECOND levels of your own
#   bench/run-local.sh 200:c32              # PROXIES:cN = N closed-loop clients (loadgen
#                                           # --client-concurrency N): the max rendezvous rate
#   BENCH_COMPARE=1 bench/run-local.sh      # compare mode: the floor against the broker (below)
#
# Each level gets a fresh broker (bench/serve.mjs: Miniflare running build/index.js under
# workerd on 127.0.0.1, a free port), so levels do not disturb each other and the memory
# figures start from the same baseline. With two or more cores the broker is pinned to core 0
# and the generator to core 1 (taskset), as on the machine the README's figures come from.
#
# Compare mode (BENCH_COMPARE=1, or --compare as the first argument) runs, in one run, the
# floor (bench/floor/build/entry.mjs: a minimal Worker + Durable Object matcher speaking the
# same protocol; `make build-floor` is run if it is missing) and the broker (build/entry.mjs),
# both under plain workerd, interleaved: BENCH_ROUNDS rounds, each level once per round for
# each, floor first in odd rounds and last in even ones (to cancel drift), a fresh server
# every time. Levels: the max rate (BENCH_MAX_LEVEL, default 200:c32: 200 proxies, 32
# closed-loop clients), then an open-loop latency sweep (BENCH_SWEEP_PROXIES proxies at each
# of BENCH_SWEEP_RATES clients/s); levels given as arguments replace both. With BENCH_SHARDS
# the broker runs once per shard count (the floor once). Then bench/compare.mjs prints medians
# over rounds and broker/floor ratios (compare.txt, compare.md, compare.json) and
# bench/plot.mjs draws latency against offered load (latency.svg). The default run takes
# rounds x levels x 2 x (duration + ~10-30 s): ~25 minutes at 20 s levels.
#
# Environment (all optional):
#   BENCH_RUNTIME=miniflare    or workerd: see bench/serve.mjs (workerd = no Miniflare entry
#                              Worker in front, as docs/design.md §4's minimal-matcher figure);
#                              compare mode always uses workerd
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
# Compare mode only:
#   BENCH_ROUNDS=3             rounds
#   BENCH_MAX_LEVEL=200:c32    the max-rate level (PROXIES:cN, or PROXIES:RATE)
#   BENCH_SWEEP_PROXIES=3000   proxies in the latency sweep
#   BENCH_SWEEP_RATES="100 200 300 400 600 800"   offered clients/s of the sweep
#   BENCH_HEADLINE_RATE=300    the sweep rate whose p99 ratio compare.mjs puts in its headline
#   BENCH_FLOOR=bench/floor/build/entry.mjs       the floor's script
#   BENCH_BROKER=build/entry.mjs                  the broker's script
#
# Every loop is bounded: a level lasts at most ~duration + 60 s, then everything it started
# is stopped. Only processes this script started are signalled, by their pid.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

COMPARE=${BENCH_COMPARE:-0}
[[ $COMPARE == 0 ]] && COMPARE=""
if [[ ${1:-} == --compare ]]; then
  COMPARE=1
  shift
fi

if [[ ! -f build/index.js ]]; then
  echo "run-local: build/index.js is missing: run \`make build\` first" >&2
  exit 2
fi

DURATION=${BENCH_DURATION:-20}
RUNTIME=${BENCH_RUNTIME:-miniflare}
OUT=${BENCH_OUT:-bench/results/$(date +%Y%m%d-%H%M%S)}
EXTRA=${BENCH_EXTRA:-}
read -r -a SHARD_COUNTS <<<"${BENCH_SHARDS:-${MATCHER_SHARDS:-1}}"

if [[ -n $COMPARE ]]; then
  RUNTIME=workerd
  ROUNDS=${BENCH_ROUNDS:-3}
  FLOOR_SCRIPT=${BENCH_FLOOR:-bench/floor/build/entry.mjs}
  BROKER_SCRIPT=${BENCH_BROKER:-build/entry.mjs}
  HEADLINE_RATE=${BENCH_HEADLINE_RATE:-300}
  if ! [[ $ROUNDS =~ ^[1-9][0-9]*$ ]]; then
    echo "run-local: BENCH_ROUNDS=$ROUNDS: want a whole number >= 1" >&2
    exit 2
  fi
  if [[ $# -gt 0 ]]; then
    LEVELS=("$@")
  else
    LEVELS=("${BENCH_MAX_LEVEL:-200:c32}")
    for r in ${BENCH_SWEEP_RATES:-100 200 300 400 600 800}; do LEVELS+=("${BENCH_SWEEP_PROXIES:-3000}:$r"); done
  fi
  if [[ ! -f $BROKER_SCRIPT ]]; then
    echo "run-local: the broker ($BROKER_SCRIPT) is missing: run \`make build\` first" >&2
    exit 2
  fi
  if [[ ! -f $FLOOR_SCRIPT && -z ${BENCH_FLOOR:-} ]]; then
    echo "run-local: the floor ($FLOOR_SCRIPT) is missing: running \`make build-floor\`" >&2
    make build-floor >&2 || {
      echo "run-local: \`make build-floor\` failed: compare mode needs the floor at $FLOOR_SCRIPT" >&2
      exit 2
    }
  fi
  if [[ ! -f $FLOOR_SCRIPT ]]; then
    echo "run-local: the floor ($FLOOR_SCRIPT) is missing${BENCH_FLOOR:+ (BENCH_FLOOR)}; compare mode needs it" >&2
    exit 2
  fi
elif [[ $# -gt 0 ]]; then
  LEVELS=("$@")
else
  LEVELS=(3000:0 200:20 1000:100 3000:300 3000:500 3000:700 3000:1000 3000:1400)
fi

for level in "${LEVELS[@]}"; do
  if ! [[ ${level%%:*} =~ ^[0-9]+$ && ${level#*:} =~ ^([0-9.]+|c[1-9][0-9]*)$ && $level == *:* ]]; then
    echo "run-local: bad level '$level' (want PROXIES:CLIENTS_PER_SECOND or PROXIES:cCONCURRENCY)" >&2
    exit 2
  fi
done

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

# A script's identity for the settings: its path, mtime and the start of its sha256 (and of
# the wasm beside it, if any).
build_id() {
  local dir
  dir=$(dirname "$1")
  printf '%s %s sha256 %s' "$1" "$(stat -c '%y' "$1")" "$(sha256sum "$1" | cut -c1-12)"
  [[ -f $dir/index_bg.wasm ]] && printf ', index_bg.wasm %s' "$(sha256sum "$dir/index_bg.wasm" | cut -c1-12)"
  echo
}

{
  echo "# bench/run-local.sh $(date -u +%FT%TZ)"
  if [[ -n $COMPARE ]]; then
    echo "compare mode: floor vs broker, $ROUNDS rounds, order alternating per round"
  fi
  echo "levels: ${LEVELS[*]}; duration ${DURATION} s each; runtime $RUNTIME"
  echo "broker settings: PROXY_POLL_TIMEOUT_MS=$PROXY_POLL_TIMEOUT_MS CLIENT_TIMEOUT_MS=$CLIENT_TIMEOUT_MS MAX_PARKED_POLLS=$MAX_PARKED_POLLS NEXT_POLL_MS=$NEXT_POLL_MS"
  echo "pinning: broker '${BROKER_PIN[*]:-none}', generator '${GEN_PIN[*]:-none}'; $(nproc) cores; node $(node --version)"
  echo "build: $(stat -c '%y' build/index.js) $(sha256sum build/index_bg.wasm | cut -c1-12)"
  if [[ -n $COMPARE ]]; then
    echo "floor: $(build_id "$FLOOR_SCRIPT")"
    echo "broker: $(build_id "$BROKER_SCRIPT")"
    echo "workerd: $(node_modules/@cloudflare/workerd-linux-64/bin/workerd --version 2>/dev/null || echo unknown)"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)"
  fi
  echo "extra loadgen options: ${EXTRA:-none}"
  echo "matcher shards: ${SHARD_COUNTS[*]}"
} | tee "$OUT/settings.txt"

n=0
REPORTS=()

# One level against a fresh server: run_level TAG SCRIPT SHARDS LEVEL [WHAT]. SCRIPT "" =
# serve.mjs's default (build/entry.mjs); SHARDS "" = MATCHER_SHARDS unset. The report goes to
# $OUT/TAG.json and is appended to REPORTS; returns non-zero when the server did not start.
run_level() {
  local tag=$1 script=$2 shards=$3 level=$4 what=${5:-}
  local proxies=${level%%:*} load=${level#*:}
  local clients_args clients_what
  if [[ $load == c* ]]; then
    clients_args=(--client-concurrency "${load#c}")
    clients_what="${load#c} closed-loop clients"
  else
    clients_args=(--clients-per-second "$load")
    clients_what="$load clients/s"
  fi
  if [[ -n $shards ]]; then export MATCHER_SHARDS=$shards; else unset MATCHER_SHARDS; fi
  echo
  echo "== level $n: ${what:+$what, }${shards:+$shards shard(s), }$proxies proxies, $clients_what, ${DURATION} s"

  # A fresh broker, pinned, on a free loopback port.
  "${BROKER_PIN[@]}" node bench/serve.mjs --runtime "$RUNTIME" --port 0 --log "$OUT/$tag.worker.log" \
    ${script:+--script "$script"} >"$OUT/$tag.serve.out" 2>"$OUT/$tag.serve.err" &
  SERVE_PID=$!
  local url="" pid
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
    return 1
  fi
  pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$OUT/$tag.serve.out" | head -1)

  # The generator; --pid samples the workerd process that serves the broker.
  local ramp=$((proxies >= 2000 ? 3 : 2)) rc
  timeout --kill-after=5 $((DURATION + ramp + 1 + 20 + 30)) \
    "${GEN_PIN[@]}" node bench/loadgen.mjs --url "$url" --proxies "$proxies" "${clients_args[@]}" \
    --duration "$DURATION" --ramp "$ramp" --warmup 1 --drain 20 --pid "$pid" --interval 5 --json \
    --label "$tag" $EXTRA \
    >"$OUT/$tag.json" 2> >(tee "$OUT/$tag.progress" >&2)
  rc=$?
  [[ $rc -ne 0 ]] && echo "run-local: loadgen exited with $rc at level $level" >&2
  REPORTS+=("$OUT/$tag.json")

  # The Worker's log: requests that ended in a 5xx, and errors it logged.
  if [[ -f $OUT/$tag.worker.log ]]; then
    local s5 errs
    s5=$(grep -c '"status":5' "$OUT/$tag.worker.log")
    errs=$(grep -ci 'error\|unavailable\|panic' "$OUT/$tag.worker.log")
    echo "worker log: $(wc -l <"$OUT/$tag.worker.log") lines, $s5 with a 5xx status, $errs mentioning error/unavailable/panic" \
      | tee "$OUT/$tag.worker-summary.txt"
  fi
  stop_broker
  sleep 1
}

# PROXIES:RATE -> p3000-c300; PROXIES:cN -> p200-n32 (as in the report file names).
level_tag() {
  local load=${1#*:}
  if [[ $load == c* ]]; then echo "p${1%%:*}-n${load#c}"; else echo "p${1%%:*}-c$load"; fi
}

# Every report of the run as one table, text and Markdown.
write_tables() {
  node bench/table.mjs "${REPORTS[@]}" | tee "$OUT/table.txt"
  node bench/table.mjs --markdown "${REPORTS[@]}" >"$OUT/table.md"
}

if [[ -z $COMPARE ]]; then
  for shards in "${SHARD_COUNTS[@]}"; do
    for level in "${LEVELS[@]}"; do
      n=$((n + 1))
      tag=$(printf '%02d-s%s-%s' "$n" "$shards" "$(level_tag "$level")")
      run_level "$tag" "" "$shards" "$level"
    done
  done
  echo
  echo "== results ($OUT)"
  write_tables
  exit 0
fi

# Compare mode. Implementations as impl|script|shards: the floor once, the broker once per
# shard count. runs.tsv says which report is which, for bench/compare.mjs.
IMPLS=("floor|$FLOOR_SCRIPT|")
for shards in "${SHARD_COUNTS[@]}"; do IMPLS+=("broker|$BROKER_SCRIPT|$shards"); done
printf 'round\tlevel\timpl\tshards\tscript\treport\n' >"$OUT/runs.tsv"
for round in $(seq 1 "$ROUNDS"); do
  order=("${IMPLS[@]}")
  if ((round % 2 == 0)); then
    order=()
    for ((k = ${#IMPLS[@]} - 1; k >= 0; k--)); do order+=("${IMPLS[k]}"); done
  fi
  for level in "${LEVELS[@]}"; do
    for entry in "${order[@]}"; do
      IFS='|' read -r impl script shards <<<"$entry"
      n=$((n + 1))
      tag=$(printf '%03d-r%s-%s-%s%s' "$n" "$round" "$(level_tag "$level")" "$impl" "${shards:+-s$shards}")
      if run_level "$tag" "$script" "$shards" "$level" "round $round/$ROUNDS, $impl"; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$level" "$impl" "${shards:--}" "$script" "$tag.json" >>"$OUT/runs.tsv"
      fi
    done
  done
done

echo
echo "== every run ($OUT/table.txt)"
write_tables
echo
echo "== floor vs broker ($OUT/compare.txt, compare.md, compare.json)"
node bench/compare.mjs --headline-rate "$HEADLINE_RATE" "$OUT"
node bench/plot.mjs "$OUT/compare.json" -o "$OUT/latency.svg" && echo "plot: $OUT/latency.svg"
