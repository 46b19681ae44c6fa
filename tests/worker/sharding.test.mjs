// Several matcher shards (MATCHER_SHARDS) behave as one broker: a lone proxy parked on any
// shard is found, /debug and /metrics describe the whole deployment, a denial is counted
// once, an address polling with many Sids (so on many shards) is one address, a shard's
// capacity is per shard, and a reset of one shard leaves the others' requests alone.
// (`make test-worker` also runs the HTTP suite on 4 shards.)

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  FAULT_BUILD_DIR,
  NO_PROXIES,
  assertRendezvous,
  assertText,
  newSid,
  noMatch,
  offerJson,
  periodBegins,
  sleep,
  startBroker,
} from "./harness.mjs";

const line = (block, name) => block.split("\n").find((l) => l.split(" ")[0] === name);

async function lonelyProxies(shards) {
  const b = await startBroker({ MATCHER_SHARDS: String(shards), PROXY_POLL_TIMEOUT_MS: "3000", CLIENT_TIMEOUT_MS: "3000" });
  try {
    // The isolate first learns that every shard is empty.
    assertText(await b.client(offerJson(), { nat: "restricted" }), 200, NO_PROXIES);
    // Then, 3 × shards times, one proxy on whatever shard its Sid picks, and one client.
    for (let i = 0; i < 3 * shards; i++) {
      await assertRendezvous(b, `lone-${shards}-${i}`, { clientNat: "restricted" });
    }
  } finally {
    await b.close();
  }
}

test("4 shards: a lone proxy on any shard is found", () => lonelyProxies(4));
test("16 shards: a lone proxy on any shard is found", () => lonelyProxies(16));

/// The same workload on `shards` shards; returns its first closed /metrics period.
async function workload(shards) {
  const b = await startBroker({
    MATCHER_SHARDS: String(shards),
    METRICS_PERIOD_SECONDS: "8",
    PROXY_POLL_TIMEOUT_MS: "400",
    CLIENT_TIMEOUT_MS: "1000",
  });
  try {
    const period = 8000;
    await periodBegins(period / 1000);
    const begun = Date.now();
    // One address polls 12 times under 12 Sids (so on several shards); another twice; all idle.
    const one = { headers: { "CF-Connecting-IP": "129.97.208.23" } };
    const two = { headers: { "CF-Connecting-IP": "129.97.208.24" } };
    await Promise.all([
      ...Array.from({ length: 12 }, () => b.proxy({ sid: newSid("m"), nat: "restricted", type: "webext" }, one)),
      ...Array.from({ length: 2 }, () => b.proxy({ sid: newSid("m"), nat: "unknown", type: "standalone" }, two)),
    ]);
    // Nine restricted clients denied, each counted once however many shards it tried.
    for (let i = 0; i < 9; i++) assertText(await b.client(offerJson(), { nat: "restricted" }), 200, NO_PROXIES);
    // Two rendezvous.
    for (const tag of ["a", "b"]) await assertRendezvous(b, tag);
    assert.ok(Date.now() - begun < period - 500, "the workload fits in one period");
    const deadline = Date.now() + 20000;
    for (;;) {
      const text = (await b.get("/metrics")).text;
      if (text) return text.split(/(?=snowflake-stats-end )/)[0].replace(/^snowflake-stats-end [^\n]*\n/, "");
      assert.ok(Date.now() < deadline, "no period closed");
      await sleep(200);
    }
  } finally {
    await b.close();
  }
}

test("the same workload gives the same /metrics on 1 and 4 shards: one address is one address, a denial counts once", async () => {
  const [one, four] = await Promise.all([workload(1), workload(4)]);
  assert.equal(four, one);
  assert.equal(line(four, "snowflake-ips-total"), "snowflake-ips-total 4");
  assert.equal(line(four, "snowflake-ips-webext"), "snowflake-ips-webext 1");
  assert.equal(line(four, "client-denied-count"), "client-denied-count 16");
  assert.equal(line(four, "client-snowflake-match-count"), "client-snowflake-match-count 8");
});

test("4 shards: /debug counts every shard; each shard holds MAX_PARKED_POLLS", async () => {
  const b = await startBroker({ MATCHER_SHARDS: "4", MAX_PARKED_POLLS: "2", PROXY_POLL_TIMEOUT_MS: "2000" });
  try {
    const polls = Array.from({ length: 40 }, () => b.proxy({ sid: newSid("cap"), nat: "unknown" }));
    await sleep(600);
    const seen = await b.sessions();
    const replies = await Promise.all(polls);
    // Parked ones end `no match` at their deadline; the rest were refused at once.
    const parked = replies.filter((r) => r.text === noMatch()).length;
    const refused = replies.filter((r) => r.text === noMatch(60000)).length;
    assert.equal(parked + refused, 40);
    // At most 2 per shard, and more than one shard's 2; /debug counted them across shards.
    assert.ok(parked > 2 && parked <= 8, `${parked} parked`);
    assert.ok(seen > 2 && seen <= parked, `/debug said ${seen} of ${parked}`);
  } finally {
    await b.close();
  }
});

test("4 shards: a reset of one shard answers its parked polls at once and leaves the other shards' alone", async () => {
  const dir = mkdtempSync(join(tmpdir(), "do-"));
  const b = await startBroker(
    { MATCHER_SHARDS: "4", PROXY_POLL_TIMEOUT_MS: "3000", CLIENT_TIMEOUT_MS: "3000" },
    { persist: dir, build: FAULT_BUILD_DIR },
  );
  try {
    const started = Date.now();
    const polls = Array.from({ length: 40 }, () => {
      const p = b.proxy({ sid: newSid("reset"), nat: "unknown" });
      return p.then((res) => ({ res, ms: Date.now() - started }));
    });
    await b.waitSessions(40);
    const ns = await b.mf.getDurableObjectNamespace("MATCHER");
    assert.equal(await (await ns.get(ns.idFromName("shard-0")).fetch("https://matcher/fault/reset")).text(), "reset");
    const ends = await Promise.all(polls);
    const early = ends.filter((e) => e.ms < 2500);
    const late = ends.filter((e) => e.ms >= 2500);
    // Shard 0's polls: the failure reply, at once. The others: `no match` at their deadline.
    assert.ok(early.length > 0 && late.length > 0, `${early.length} early, ${late.length} late`);
    for (const e of early) assertText(e.res, 200, noMatch(60000), { cors: true });
    for (const e of late) {
      assertText(e.res, 200, noMatch(), { cors: true });
      assert.ok(e.ms < 3000 + 1000, `a poll ended after ${e.ms} ms`);
    }
  } finally {
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
