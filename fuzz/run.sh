#!/usr/bin/env bash
# Short fuzzing run of every target, for CI (`make test`): builds the
# targets once, runs each for FUZZ_SECONDS (default 15) and fails if any
# target finds a crash (a panic, a failed assertion, a timeout or an OOM).
#
#   bash fuzz/run.sh                       # every target, 15 s each
#   FUZZ_SECONDS=60 bash fuzz/run.sh       # longer
#   bash fuzz/run.sh proxy_messages amp_and_routes   # some targets only
#
# Environment:
#   FUZZ_SECONDS    seconds per target (libFuzzer -max_total_time), default 15
#   FUZZ_SANITIZER  cargo fuzz --sanitizer: `none` (default; the crate has no
#                   `unsafe`, and it runs 2-6x more inputs than ASan) or `address`
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a hang, default 10
#
# Only the stable toolchain exists here; cargo-fuzz needs nightly flags
# (-Zsanitizer, -Cpasses=sancov-module), which stable accepts with
# RUSTC_BOOTSTRAP=1. New inputs go to fuzz/corpus/<target> (git-ignored, kept
# between runs), crashes to fuzz/artifacts/<target>/, logs to
# fuzz/artifacts/logs/<target>.log. See fuzz/README.md.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
export RUSTC_BOOTSTRAP=1

seconds="${FUZZ_SECONDS:-15}"
sanitizer="${FUZZ_SANITIZER:-none}"
timeout="${FUZZ_TIMEOUT:-10}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked || cargo install cargo-fuzz || {
    echo "fuzz: cannot install cargo-fuzz" >&2
    exit 1
  }
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
if [ "${#targets[@]}" -eq 0 ]; then
  echo "fuzz: no targets" >&2
  exit 1
fi

start=$(date +%s)
mkdir -p artifacts/logs
echo "fuzz: building ${#targets[@]} targets (sanitizer: $sanitizer)"
if ! cargo fuzz build --sanitizer "$sanitizer" >artifacts/logs/build.log 2>&1; then
  grep -v '^ *Compiling ' artifacts/logs/build.log | tail -40 >&2
  echo "fuzz: build failed" >&2
  echo "0 passed, ${#targets[@]} failed"
  exit 1
fi
echo "fuzz: built in $(($(date +%s) - start)) s; ${seconds} s per target"

passed=0
failed=0
failures=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/logs/$t.log"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  cargo fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 \
    >"$log" 2>&1
  rc=$?
  runs=$(grep -Eo '^Done [0-9]+ runs in [0-9]+ second\(s\)' "$log" | tail -1)
  if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
    passed=$((passed + 1))
    echo "fuzz: $t: ok: $runs"
  else
    failed=$((failed + 1))
    failures+=("$t")
    echo "fuzz: $t: FAILED (exit $rc): ${runs:-no Done line}; log: fuzz/$log"
    # The crashing input (libFuzzer prints it in base64), the artifact path
    # and the panic message.
    grep -E "^Base64:|Test unit written|^SUMMARY|==ERROR|ERROR: libFuzzer" "$log" \
      | head -6 | sed 's/^/    /'
    grep -A3 "panicked at" "$log" | head -4 | sed 's/^/    /'
  fi
done

echo "fuzz: total $(($(date +%s) - start)) s"
if [ "$failed" -gt 0 ]; then
  echo "fuzz: failed: ${failures[*]} (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer <target> fuzz/artifacts/<target>/<crash-file>)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
