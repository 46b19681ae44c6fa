// PROXY_POLL_INTERVAL_MS, N's per-address poll interval: a second poll from one address and
// pool within the interval is answered `polled too soon` at once, with the time left as
// NextPoll, and is not parked; other addresses and pools are not affected; it holds on 1 and 4
// shards (every poll of an address goes to one shard).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  SUCCESS,
  TEXT_PLAIN,
  answerJson,
  assertText,
  clientAnswer,
  clientMatch,
  newSid,
  noMatch,
  offerJson,
  sleep,
  startBroker,
} from "./harness.mjs";

const INTERVAL = 2000;
const HOLD = 300;
const TOO_SOON = /^\{"Status":"polled too soon","Offer":"","NAT":"","NextPoll":(\d+),"RelayURL":""\}$/;

/** The NextPoll of a `polled too soon` reply, after checking its bytes. */
function tooSoon(res) {
  assertText(res, 200, TOO_SOON, { cors: true });
  return Number(TOO_SOON.exec(res.text)[1]);
}

const noMatchNextPoll = (res) => {
  assert.equal(res.status, 200, `${res}`);
  assert.equal(res.header("content-type"), TEXT_PLAIN);
  const m = /^\{"Status":"no match","Offer":"","NAT":"","NextPoll":(\d+),"RelayURL":""\}$/.exec(res.text);
  assert.ok(m, `${res}`);
  return Number(m[1]);
};

for (const shards of [1, 4]) {
  describe(`PROXY_POLL_INTERVAL_MS=${INTERVAL} on ${shards} shard(s)`, () => {
    let b;
    before(async () => {
      b = await startBroker({
        PROXY_POLL_INTERVAL_MS: String(INTERVAL),
        PROXY_POLL_TIMEOUT_MS: String(HOLD),
        NEXT_POLL_MS: "500",
        MATCHER_SHARDS: String(shards),
      });
    });
    after(() => b?.close());

    test("a second poll within the interval is too soon with the time left; after it, a poll parks", async () => {
      const from = { headers: { "CF-Connecting-IP": `198.51.100.${shards}` } };
      const began = Date.now();
      const first = await b.proxy({ sid: newSid("a") }, from);
      // Accepted and held: its NextPoll is the rest of the interval (longer than NEXT_POLL_MS).
      const held = Date.now() - began;
      const next = noMatchNextPoll(first);
      assert.ok(Math.abs(next - (INTERVAL - held)) <= 100, `no match NextPoll ${next} after ${held} ms`);
      // Under other Sids (as Go proxies poll), at once: too soon, not parked, NextPoll = time left.
      for (let i = 0; i < 6; i++) {
        const sent = Date.now();
        const res = await b.proxy({ sid: newSid("b") }, from);
        assert.ok(res.ms < HOLD, `answered at once, not parked (${res.ms} ms)`);
        const left = tooSoon(res);
        const expected = INTERVAL - (sent - began);
        assert.ok(Math.abs(left - expected) <= 100, `NextPoll ${left}, ${expected} ms were left`);
      }
      assert.equal(await b.sessions(), 0, "no too-soon poll was parked");
      // Once the interval has passed, the address polls as usual: parked until HOLD.
      await sleep(Math.max(0, began + INTERVAL - Date.now()) + 50);
      const again = await b.proxy({ sid: newSid("c") }, from);
      noMatchNextPoll(again);
      assert.ok(again.ms >= HOLD - 10, `held ${again.ms} ms`);
    });

    test("addresses and pools are apart: another address, or the same one in another pool, parks", async () => {
      const one = { headers: { "CF-Connecting-IP": `203.0.113.${10 + shards}` } };
      const two = { headers: { "CF-Connecting-IP": `203.0.113.${20 + shards}` } };
      noMatchNextPoll(await b.proxy({ sid: newSid("s"), nat: "restricted" }, one));
      tooSoon(await b.proxy({ sid: newSid("s"), nat: "restricted" }, one));
      // Another address: not held back.
      const other = await b.proxy({ sid: newSid("t"), nat: "restricted" }, two);
      noMatchNextPoll(other);
      assert.ok(other.ms >= HOLD - 10, `held ${other.ms} ms`);
      // The same address in the open pool: its own interval.
      const open = await b.proxy({ sid: newSid("u"), nat: "unrestricted" }, one);
      noMatchNextPoll(open);
      assert.ok(open.ms >= HOLD - 10, `held ${open.ms} ms`);
      // IPv6: one /64 is one address.
      noMatchNextPoll(await b.proxy({ sid: newSid("v") }, { headers: { "CF-Connecting-IP": `2001:db8:${shards}::1` } }));
      tooSoon(await b.proxy({ sid: newSid("v") }, { headers: { "CF-Connecting-IP": `2001:db8:${shards}::ffff:2` } }));
    });

    test("a matched proxy is told to come back when its interval ends; /prometheus counts the polls too soon", async () => {
      const from = { headers: { "CF-Connecting-IP": `192.0.2.${shards}` } };
      const sid = newSid("r");
      const began = Date.now();
      const poll = b.proxy({ sid, nat: "unrestricted" }, from);
      await b.waitSessions(1);
      const offer = offerJson("r");
      const client = b.client(offer, { nat: "unrestricted" });
      const matched = await poll;
      const next = Number(/"NextPoll":(\d+),/.exec(matched.text)?.[1]);
      assertText(matched, 200, clientMatch(offer, "unrestricted", { nextPoll: next }), { cors: true });
      const waited = Date.now() - began;
      assert.ok(Math.abs(next - (INTERVAL - waited)) <= 100, `NextPoll ${next} after ${waited} ms`);
      assertText(await b.answer(sid, answerJson("r"), "1.3", from), 200, SUCCESS);
      assertText(await client, 200, clientAnswer(answerJson("r")));
      // Every poll told too soon is counted once, also those the Worker answered from its
      // memory of the shard's refusal (sent with its next poll to that shard): 6 + 1 + 1.
      const prom = (await b.get("/prometheus")).text;
      assert.match(prom, /^snowflake_proxy_polled_too_soon_total\{nat="unknown",type="standalone"\} 7$/m);
      assert.match(prom, /^snowflake_proxy_polled_too_soon_total\{nat="restricted",type="standalone"\} 1$/m);
    });
  });
}

test("without the setting, polls from one address are never too soon", async () => {
  const b = await startBroker({ PROXY_POLL_TIMEOUT_MS: "100", NEXT_POLL_MS: "500" });
  try {
    const from = { headers: { "CF-Connecting-IP": "192.0.2.200" } };
    for (let i = 0; i < 3; i++) assertText(await b.proxy({ sid: newSid("n") }, from), 200, noMatch(500), { cors: true });
  } finally {
    await b.close();
  }
});
