// The matcher reset while polls and clients are parked (an eviction, a deploy, a runtime
// restart): every parked request still gets its protocol's reply, none outlives its deadline
// by more than 1 s, the broker matches again at once, and saved metrics come back (issue 12,
// fault injection; docs/design.md §3). Runs the test-only build with the `fault-injection`
// feature (`make build-fault`), whose matcher resets itself on a call to `/fault/reset` and traps
// (as a panic would) on `/fault/trap`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  FAULT_BUILD_DIR,
  NO_PROXIES,
  assertRendezvous,
  assertText,
  newSid,
  noMatch,
  offerJson,
  sleep,
  startBroker,
} from "./harness.mjs";

const POLL_MS = 3000;
const CLIENT_MS = 3000;
// What a matcher failure gets (README, "When the matcher fails").
const FAILED_POLL = noMatch(60000);
let b;
let dir;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "do-"));
  b = await startBroker(
    // Saves every second, so the counts before the reset are on disk.
    // One shard, the one reset; tests/worker/sharding.test.mjs resets one shard of four.
    { PROXY_POLL_TIMEOUT_MS: String(POLL_MS), CLIENT_TIMEOUT_MS: String(CLIENT_MS), METRICS_PERIOD_SECONDS: "8", MATCHER_SHARDS: "1" },
    { persist: dir, build: FAULT_BUILD_DIR },
  );
});
after(async () => {
  await b?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Resets the matcher (a moment after this call returns), as an eviction or deploy does. */
async function resetMatcher() {
  const ns = await b.mf.getDurableObjectNamespace("MATCHER");
  const res = await ns.get(ns.idFromName("shard-0")).fetch("https://matcher/fault/reset");
  assert.equal(await res.text(), "reset");
}

test("a matcher reset ends every parked request at once with its protocol's reply, and matching resumes", async () => {
  for (let i = 0; i < 3; i++) assertText(await b.client(offerJson(), { nat: "restricted" }), 200, NO_PROXIES);
  await sleep(1500); // saved
  const started = Date.now();
  const polls = Array.from({ length: 5 }, () => b.proxy({ sid: newSid("fault"), nat: "unrestricted" }));
  await b.waitSessions(5);
  // One proxy is handed a client, which then waits for the answer.
  const offer = offerJson("before");
  const waiting = b.client(offer, { nat: "unrestricted" });
  const matched = await Promise.race(polls.map((p) => p.then((res) => (res.json().Status === "client match" ? res : null))));
  assert.ok(matched, "one poll was matched");
  await resetMatcher();
  const ends = await Promise.all([waiting, ...polls]);
  const took = Date.now() - started;
  // At once, long before their 3 s deadlines (and never past deadline + 1 s).
  assert.ok(took < POLL_MS, `parked requests ended after ${took} ms`);
  assertText(ends[0], 200, NO_PROXIES);
  const replies = ends.slice(1).map((r) => r.text);
  assert.equal(replies.filter((t) => t === FAILED_POLL).length, 4, replies.join("\n"));
  // The broker serves again at once, from a fresh matcher.
  await assertRendezvous(b, "after");
  // The denials counted before the reset came back from storage.
  const text = (await b.get("/prometheus")).text;
  assert.match(text, /\nsnowflake_rounded_client_poll_total\{cc="\?\?",nat="restricted",rendezvous_method="http",status="denied"\} 8\n/, text);
});

test("a trap in the wasm module (what a panic would be) still ends every parked request by its deadline + 1 s with its protocol's reply", async () => {
  await b.waitIdle();
  const started = Date.now();
  const polls = Array.from({ length: 3 }, () => b.proxy({ sid: newSid("trap"), nat: "unrestricted" }));
  await b.waitSessions(3);
  const ns = await b.mf.getDurableObjectNamespace("MATCHER");
  // The trapping call itself never returns; it is not awaited.
  ns.get(ns.idFromName("shard-0")).fetch("https://matcher/fault/trap").catch(() => {});
  const ends = await Promise.all(polls);
  const took = Date.now() - started;
  // Their Rust futures died with the module; the entry's guard answered them.
  assert.ok(took < POLL_MS + 1000, `parked polls ended after ${took} ms`);
  for (const res of ends) assertText(res, 200, FAILED_POLL, { cors: true });
  // And the broker serves again, from a fresh module.
  await assertRendezvous(b, "after-trap");
});
