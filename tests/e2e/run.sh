#!/usr/bin/env bash
# End-to-end tests: real snowflake-proxy/snowflake-client (Debian 2.5.1 and 2.10.1) and a headless Chromium
# browser proxy against the built Worker (build/index.js, served with Miniflare) or BROKER_URL.
# See tests/e2e/README.md. Needs root (network namespaces, apt-get).
#
# Usage: bash tests/e2e/run.sh [--only browser|peers|amp|sqs] [--proxies N] [--clients N] [--verbose]
set -euo pipefail

cd "$(dirname "$0")/../.."

# 1. Debian packages, installed only when missing.
need=()
command -v snowflake-proxy >/dev/null || need+=(snowflake-proxy)
command -v snowflake-client >/dev/null || need+=(snowflake-client)
command -v chromium >/dev/null || need+=(chromium)
command -v ip >/dev/null || need+=(iproute2)
if ((${#need[@]})); then
  echo "e2e: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# sid's 2.10.1 peers, unpacked beside them (not installed), and moto for the SQS test.
bash tests/e2e/sid-peers.sh
make --no-print-directory moto >/dev/null
for tool in unshare nsenter node python3; do
  command -v "$tool" >/dev/null || { echo "e2e: $tool is missing" >&2; exit 2; }
done

# 2. The Worker: the Makefile builds it before calling this script.
if [[ -z "${BROKER_URL:-}" && ! -f build/index.js ]]; then
  echo "e2e: build/index.js is missing; run \`make build\` first (or set BROKER_URL)" >&2
  exit 2
fi

# 3. Scratch space (Unix socket, browser profile, PT state) and the run itself, under a
#    subreaper that stops every process left behind, even if the driver dies.
E2E_RUN_DIR="$(mktemp -d /tmp/snowflake-e2e.XXXXXX)"
export E2E_RUN_DIR
cleanup() { rm -rf "$E2E_RUN_DIR"; }
trap cleanup EXIT
python3 tests/e2e/supervise.py node tests/e2e/main.mjs "$@" &
sup=$!
trap 'kill -TERM "$sup" 2>/dev/null || true' INT TERM HUP
status=0
while kill -0 "$sup" 2>/dev/null; do
  wait "$sup" && status=0 || status=$?
done
exit "$status"
