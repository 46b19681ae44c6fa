// The end-to-end tests' driver: serves the built Worker (or uses BROKER_URL), runs the
// browser-proxy test, the real-peers test and the AMP cache test, prints the checks and
// figures and a final "N passed, M failed" line, stops every process it started, and keeps the
// logs of a failed run in tests/e2e/logs/. Start it through tests/e2e/run.sh.
//
// Options: --only browser|peers|amp|sqs, --proxies N, --clients N (default 3 each), --verbose.
// Environment: BROKER_URL (use a running broker on loopback instead of starting one),
// E2E_RELAY_PATTERN (the proxies' -allowed-relay-hostname-pattern, default "127.0.0.1$"),
// E2E_REQUIRE_RELAY=0 (do not fail when proxies cannot reach the relay: for a BROKER_URL whose
// bridge list does not point at ws://127.0.0.1:8081/), E2E_KEEP_LOGS=1 (keep logs of a passing
// run too), E2E_RUN_DIR (scratch directory, made by run.sh).

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { E2E_DIR, NS, FINGERPRINT, Runner, startBroker, startMoto, waitForProxyCount } from "./lib.mjs";
import { realPeersTest } from "./real-peers.mjs";
import { browserProxyTest } from "./browser-proxy.mjs";
import { ampPeersTest } from "./amp-peers.mjs";
import { SQS_QUEUE_URL, sqsPeersTest } from "./sqs-peers.mjs";

const { values: opt } = parseArgs({
  options: {
    only: { type: "string" },
    proxies: { type: "string", default: "3" },
    clients: { type: "string", default: "3" },
    verbose: { type: "boolean", default: false },
  },
});

const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
const logDir = path.join(E2E_DIR, "logs", `${stamp}-${process.pid}`);
const ownRunDir = !process.env.E2E_RUN_DIR;
const runDir = process.env.E2E_RUN_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), "snowflake-e2e-"));
const runner = new Runner({ logDir, runDir, verbose: opt.verbose });

// The relay's host is 127.0.0.1, so the bridge list, the broker's ALLOWED_RELAY_PATTERN and
// the proxies' pattern all name it: the proxies' pattern must be a suffix of the broker's
// (docs/protocol.md §4.3) and the relay URL's host must match the proxies' pattern.
const relayPattern = process.env.E2E_RELAY_PATTERN ?? "127.0.0.1$";
const relayUrl = `ws://${NS.relay}/`;
const settings = {
  PROXY_POLL_TIMEOUT_MS: "8000",
  ALLOWED_RELAY_PATTERN: "127.0.0.1$",
  BRIDGE_LIST: JSON.stringify({ displayName: "default", webSocketAddress: relayUrl, fingerprint: FINGERPRINT }),
};
const requireRelay = process.env.E2E_REQUIRE_RELAY !== "0";
// The real-peers tests run against a second broker with N's per-address poll interval at its
// default: the real proxies must keep working with it on. (The browser and AMP tests each rely
// on one proxy being parked when their client's retry comes, which a 2.5.1 proxy under the
// interval is only about a third of the time.)
const intervalSettings = { ...settings, PROXY_POLL_INTERVAL_MS: "20000" };

// The Go peers: bookworm's, installed by run.sh, and sid's, unpacked by tests/e2e/sid-peers.sh.
const SID = path.join(E2E_DIR, "../../build/snowflake-sid/usr/bin");
// Since 2.10 a proxy refuses relays at private addresses unless told otherwise; the relay here
// is on loopback.
const PEERS = [
  { version: "2.5.1", proxy: "snowflake-proxy", client: "snowflake-client", proxyFlags: [] },
  {
    version: "2.10.1",
    proxy: path.join(SID, "snowflake-proxy"),
    client: path.join(SID, "snowflake-client"),
    proxyFlags: ["-allow-proxying-to-private-addresses"],
  },
];

let stopping = false;
// Stops everything, then removes the scratch directory and (for a passing run) the logs.
async function cleanUp(passing) {
  await runner.stopAll().catch(() => {});
  runner.mainLog.end();
  if (ownRunDir) fs.rmSync(runDir, { recursive: true, force: true });
  if (passing && process.env.E2E_KEEP_LOGS !== "1") {
    fs.rmSync(logDir, { recursive: true, force: true });
    return null;
  }
  return path.relative(process.cwd(), logDir) || logDir;
}
function interrupted(why) {
  if (stopping) return;
  stopping = true;
  console.log(`${why}; stopping`);
  cleanUp(false).then((logs) => {
    console.log(`logs: ${logs}`);
    process.exit(130);
  });
}
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, () => interrupted(`interrupted (${sig})`));
// If whoever started us (run.sh's supervisor) dies, stop too rather than run on unsupervised.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) interrupted("parent process gone");
}, 1000).unref();

const results = [];
const figures = {};
try {
  console.log(`e2e: broker ${process.env.BROKER_URL ? `at ${process.env.BROKER_URL}` : "build/entry.mjs under Miniflare"}; logs in ${path.relative(process.cwd(), logDir)}`);
  if (process.env.BROKER_URL) {
    console.log(`e2e: for the relay checks the broker must run with ${Object.entries(settings).map(([k, v]) => `${k}='${v}'`).join(" ")}`);
    console.log("e2e: (otherwise set E2E_RELAY_PATTERN to a pattern the broker accepts, and E2E_REQUIRE_RELAY=0; see tests/e2e/README.md)");
  }
  // The SQS test's local SQS (moto), which the broker's consumer reads; with BROKER_URL the
  // test is skipped (that broker would need SQS_ENDPOINT pointed at it).
  const sqsWanted = (!opt.only || opt.only === "sqs") && !process.env.BROKER_URL;
  const moto = sqsWanted ? await startMoto(runner) : null;
  if (moto) {
    Object.assign(settings, {
      SQS_QUEUE_URL,
      SQS_ENDPOINT: moto.endpoint,
      AWS_ACCESS_KEY_ID: "AKIDBROKEREXAMPLE",
      AWS_SECRET_ACCESS_KEY: "broker-secret-example",
    });
  }
  const broker = await startBroker(runner, settings);
  runner.note(`broker at ${broker.url}`);
  if (process.env.BROKER_URL) {
    // Polls of proxies that a previous run stopped stay at a running broker until they time
    // out, and a client matched with one of them waits for nothing: let them expire first.
    const n = await waitForProxyCount(broker.url, (k) => k === 0, 15000);
    runner.note(`broker /debug before the tests: ${n} proxies`);
  }

  const tests = [];
  // The browser test goes first: afterwards no Go proxy's poll can linger at the broker and
  // be matched with the browser test's client.
  if (!opt.only || opt.only === "browser") {
    tests.push(["browser proxy", () => browserProxyTest(runner, broker, { relayPattern, expectedRelayUrl: process.env.BROKER_URL ? null : relayUrl })]);
  }
  if (!opt.only || opt.only === "peers") {
    const peersBroker = process.env.BROKER_URL ? broker : await startBroker(runner, intervalSettings, "broker-interval");
    if (process.env.BROKER_URL) console.log("e2e: with BROKER_URL the real-peers tests use that broker; start it with PROXY_POLL_INTERVAL_MS=20000 to test the interval");
    else runner.note(`broker with PROXY_POLL_INTERVAL_MS=20000 at ${peersBroker.url}`);
    for (const peers of PEERS) {
      tests.push([`real peers ${peers.version}`, () => realPeersTest(runner, peersBroker, { peers, proxies: Number(opt.proxies), clients: Number(opt.clients), relayPattern, requireRelay })]);
    }
  }
  // The AMP and SQS tests come last and first wait until the broker counts no proxies, so that no poll
  // left by a stopped proxy of the real-peers test can be matched with its client.
  if (!opt.only || opt.only === "amp") {
    for (const peers of PEERS) {
      tests.push([`amp cache ${peers.version}`, () => ampPeersTest(runner, broker, { peers, relayPattern, requireRelay })]);
    }
  }
  if (moto) {
    tests.push(["sqs", () => sqsPeersTest(runner, broker, moto, { peers: PEERS[1], relayPattern, requireRelay })]);
  } else if (opt.only === "sqs") {
    console.log("e2e: the SQS test needs the broker this script starts (not BROKER_URL)");
  }
  for (const [name, run] of tests) {
    console.log(`\n== ${name}`);
    const started = Date.now();
    try {
      const r = await run();
      for (const c of r.checks) {
        const mark = c.ok === null ? "skip" : c.ok ? "ok  " : "FAIL";
        console.log(`${mark} ${c.name}${c.detail && c.ok !== true ? ` -- ${c.detail}` : ""}`);
        results.push(c);
      }
      figures[name] = r.figures;
    } catch (e) {
      console.log(`FAIL ${name}: ${e.stack ?? e}`);
      results.push({ test: name, name: `${name} ran to the end`, ok: false, detail: String(e) });
    }
    console.log(`(${((Date.now() - started) / 1000).toFixed(1)} s)`);
  }
} catch (e) {
  console.log(`FAIL set-up: ${e.stack ?? e}`);
  results.push({ test: "set-up", name: "set-up", ok: false, detail: String(e) });
}

stopping = true;
const passed = results.filter((r) => r.ok === true).length;
const failed = results.filter((r) => r.ok === false).length;
const ok = failed === 0 && passed > 0;
const logs = await cleanUp(ok);
console.log("\n== figures");
for (const [test, f] of Object.entries(figures)) {
  for (const [k, v] of Object.entries(f)) console.log(`${test}: ${k}: ${v}`);
}
if (logs) console.log(`logs of this run: ${logs}`);
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(ok ? 0 : 1);
