// POST /proxy: decoding, relay patterns, the long poll, N's pools and the load order.
// docs/protocol.md §1.2, §2.1, §3, §4.3, §9 #14-#28, #38, #47; docs/design.md §2.

import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  BAD_PATTERN,
  NO_PROXIES,
  SUCCESS,
  answerJson,
  assertBetween,
  assertEmpty,
  assertText,
  clientAnswer,
  clientMatch,
  debugText,
  newSid,
  noMatch,
  offerJson,
  pollBody,
  startBroker,
} from "./harness.mjs";

const POLL_MS = 600;
// `short` times polls out quickly, for the tests that wait for `no match`; `long` holds them
// long enough that a sequence of matches never races a timeout.
let short;
let long;

before(async () => {
  [short, long] = await Promise.all([
    startBroker({ PROXY_POLL_TIMEOUT_MS: String(POLL_MS), CLIENT_TIMEOUT_MS: "600" }),
    startBroker({ PROXY_POLL_TIMEOUT_MS: "8000", CLIENT_TIMEOUT_MS: "3000" }),
  ]);
});
after(() => Promise.all([short?.close(), long?.close()]));
beforeEach(() => Promise.all([short.waitIdle(), long.waitIdle(10000)]));

/** Sends a client offer, checks that the proxy whose poll is `pending` got exactly it, answers, and checks the client gets the answer. */
async function rendezvous(b, pending, sid, { nat, clientNat = nat, tag = newSid() } = {}) {
  const offer = offerJson(tag);
  const client = b.client(offer, { nat });
  const poll = await (pending.response ?? pending);
  assertText(poll, 200, clientMatch(offer, clientNat ?? "unknown"), { cors: true });
  const answer = answerJson(tag);
  assertText(await b.answer(sid, answer), 200, SUCCESS, { cors: true });
  assertText(await client, 200, clientAnswer(answer), { cors: true });
}

describe("the long poll", () => {
  test("an unmatched poll is held PROXY_POLL_TIMEOUT_MS, then answered no match with NextPoll (§9 #15)", async () => {
    const b = short;
    const res = await b.proxy({ sid: newSid() });
    assertText(res, 200, noMatch(), { cors: true });
    assertBetween(res.ms, POLL_MS - 10, POLL_MS + 600, "no match after");
    assert.equal(await b.debug(), debugText());
  });

  test("a matched poll returns the client's offer string verbatim, Go-escaped, with the client's NAT and the bridge's RelayURL (§9 #14, #19)", async () => {
    const b = long;
    const sid = newSid();
    // HTML characters and U+2028 must come out escaped as Go escapes them.
    const offer = JSON.stringify({ type: "offer", sdp: "v=0\r\na=candidate:1 1 udp 1 8.8.8.8 1 typ host\r\na=x:<b>&\u2028\u2029\b\f\u0001/\u007f\r\n" });
    const pending = await b.park({ sid, nat: "unrestricted", type: "webext" });
    const started = Date.now();
    const client = b.client(offer, {});
    const poll = await pending.response;
    assertText(poll, 200, clientMatch(offer, "unknown"), { cors: true });
    assert.ok(poll.text.includes("\\u003cb\\u003e\\u0026\\u2028\\u2029"), poll.text);
    assert.ok(Date.now() - started < 400, "the offer reaches the parked poll at once");
    // While the client waits for the answer, /debug still counts the matched proxy (R: §1.5).
    assert.equal(
      await b.debug(),
      debugText({ sessions: 1, types: { webext: 1 }, unrestricted: 1 }),
    );
    const answer = JSON.stringify({ type: "answer", sdp: "v=0\r\na=candidate:2 1 udp 1 9.9.9.9 2 typ host\r\na=x:<i>&\r\n" });
    assertText(await b.answer(sid, answer), 200, SUCCESS, { cors: true });
    const res = await client;
    assertText(res, 200, clientAnswer(answer), { cors: true });
    assert.ok(res.text.includes("\\u003ci\\u003e\\u0026"), res.text);
    assert.equal(await b.debug(), debugText());
  });
});

describe("decoding (§2.1)", () => {
  test("every 1.x version, any key case, null fields, duplicates, extra keys and whitespace are accepted and counted on /debug (§9 #20-#22)", async () => {
    const b = short;
    const p = "snowflake.torproject.net$";
    const bodies = [
      // Version before the first dot must be 1.
      JSON.stringify({ Sid: newSid(), Version: "1", AcceptedRelayPattern: p }),
      JSON.stringify({ sid: newSid(), version: "1.0", type: "webext", nat: "restricted", clients: 8, acceptedrelaypattern: p }),
      JSON.stringify({ SID: newSid(), VERSION: "1.x", TYPE: "badge", NAT: "unrestricted", CLIENTS: 3, ACCEPTEDRELAYPATTERN: p }),
      JSON.stringify({ Sid: newSid(), Version: "1.", Type: "iptproxy", NAT: "open", AcceptedRelayPattern: p }),
      JSON.stringify({ Sid: newSid(), Version: "1.3", Type: "bloco", NAT: "moderate", AcceptedRelayPattern: p }),
      JSON.stringify({ Sid: newSid(), Version: "1.3", Type: "standalone", NAT: "strict", AcceptedRelayPattern: p }),
      // Type is never refused: other spellings count as unknown; NAT "" means unknown.
      JSON.stringify({ Sid: newSid(), Version: "1.3", Type: "Standalone", NAT: "", AcceptedRelayPattern: p }),
      JSON.stringify({ Sid: newSid(), Version: "1.3", Type: "", Clients: -5, AcceptedRelayPattern: p }),
      // null leaves the zero value; unknown keys are ignored.
      JSON.stringify({ Sid: newSid(), Version: "1.3", Type: null, NAT: null, Clients: null, Extra: [1, { a: null }], AcceptedRelayPattern: p }),
      // The last duplicate wins, whatever its case.
      `{"Sid":"","Version":"2.0","sid":"${newSid()}","version":"1.3","Type":"webext","NAT":"cone","nat":"unknown","AcceptedRelayPattern":"^x$","acceptedRelayPattern":"${p}"}`,
      // The largest int64 load is fine (it only orders the pool).
      `{"Sid":"${newSid()}","Version":"1.3","Type":"iptproxy","NAT":"restricted","Clients":9223372036854775807,"AcceptedRelayPattern":"${p}"}`,
      // Whitespace around the object.
      ` \r\n\t${JSON.stringify({ Sid: newSid(), Version: "1.2", Type: "standalone", NAT: "unrestricted", Clients: 24, AcceptedRelayPattern: p })}\n\t `,
    ];
    const pending = bodies.map((body) => b.proxy(body));
    await b.waitSessions(bodies.length);
    assert.equal(
      await b.debug(),
      debugText({
        sessions: 12,
        types: { standalone: 2, webext: 2, badge: 1, iptproxy: 2, bloco: 1 },
        unknownTypes: 4,
        restricted: 2,
        unrestricted: 2,
        unknown: 5,
        nNames: { strict: 1, moderate: 1, open: 1 },
      }),
    );
    for (const res of await Promise.all(pending)) assertText(res, 200, noMatch(), { cors: true });
  });

  test("bodies that are not a valid 1.x poll get 400 with an empty body, and park nothing (§9 #24-#28)", async () => {
    const b = short;
    const p = "snowflake.torproject.net$";
    const poll = (fields) => JSON.stringify({ Sid: "s-400", Version: "1.3", AcceptedRelayPattern: p, ...fields });
    const bodies = {
      empty: "",
      whitespace: "  \n",
      "{}": "{}",
      null: "null",
      array: "[]",
      string: '"x"',
      number: "1",
      bool: "true",
      "no Version (§9 #25)": JSON.stringify({ Sid: "ymbcCMto7KHNGYlp", AcceptedRelayPattern: p }),
      "no Sid (§9 #27)": JSON.stringify({ Version: "1.0", AcceptedRelayPattern: p }),
      "empty Sid": poll({ Sid: "" }),
      "null Sid": poll({ Sid: null }),
      "Sid as number": poll({ Sid: 7 }),
      "Version 2.0 (§9 #28)": poll({ Version: "2.0" }),
      "Version 2.0 without Sid": JSON.stringify({ Version: "2.0" }),
      "Version 0.9": poll({ Version: "0.9" }),
      "Version 10.0": poll({ Version: "10.0" }),
      "Version empty": poll({ Version: "" }),
      "Version ' 1.0'": poll({ Version: " 1.0" }),
      "Version v1": poll({ Version: "v1" }),
      "Version as number": poll({ Version: 1 }),
      "Version as number 1.3": poll({ Version: 1.3 }),
      "NAT Restricted": poll({ NAT: "Restricted" }),
      "NAT cone": poll({ NAT: "cone" }),
      "NAT OPEN": poll({ NAT: "OPEN" }),
      "NAT ' open'": poll({ NAT: " open" }),
      "NAT 'unknown '": poll({ NAT: "unknown " }),
      "NAT as number": poll({ NAT: 1 }),
      "Type as number": poll({ Type: 5 }),
      "Type as object": poll({ Type: {} }),
      "Clients 1.5": poll({ Clients: 1.5 }),
      "Clients as string": poll({ Clients: "1" }),
      "Clients as bool": poll({ Clients: true }),
      "Clients 1e2": poll({ Clients: 1 }).replace('"Clients":1', '"Clients":1e2'),
      "Clients 8.0": poll({ Clients: 1 }).replace('"Clients":1', '"Clients":8.0'),
      "Clients over int64": poll({ Clients: 1 }).replace('"Clients":1', '"Clients":99999999999999999999'),
      "AcceptedRelayPattern as number": poll({ AcceptedRelayPattern: 5 }),
      "AcceptedRelayPattern as array": poll({ AcceptedRelayPattern: [p] }),
      "trailing garbage": poll({}) + "x",
      "two objects": poll({}) + "{}",
      truncated: poll({}).slice(0, -1),
      "single quotes": "{'Sid':'a','Version':'1.3'}",
      "client message": "1.0\n" + JSON.stringify({ offer: offerJson() }),
      "bad version and no pattern": JSON.stringify({ Sid: "s", Version: "2.0" }),
    };
    const results = await Promise.all(Object.entries(bodies).map(async ([name, body]) => [name, await b.proxy(body)]));
    for (const [name, res] of results) {
      assert.equal(res.status, 400, `${name}: ${res}`);
      assertEmpty(res, 400, { cors: true });
    }
    assert.equal(await b.sessions(), 0);
  });
});

describe("relay patterns (§4.3, docs/design.md §2: default snowflake.torproject.net$)", () => {
  test("patterns that are not a superset of the broker's, and polls without one, get incorrect relay pattern at once with NextPoll 3600000 (§9 #38)", async () => {
    const b = short;
    const refused = {
      absent: { pattern: undefined },
      null: { pattern: null },
      exact: { pattern: "^snowflake.torproject.net$" },
      "other domain (§9 #23)": { pattern: "snowfalke.torproject.org" },
      "longer suffix": { pattern: "xsnowflake.torproject.net$" },
      "subdomain": { pattern: "01.snowflake.torproject.net$" },
      "upper case": { pattern: "SNOWFLAKE.TORPROJECT.NET$" },
      "exact empty": { pattern: "^" },
      "two dollars": { pattern: "snowflake.torproject.net$$" },
    };
    for (const [name, opts] of Object.entries(refused)) {
      const res = await b.proxy({ sid: newSid(), ...opts });
      assertText(res, 200, BAD_PATTERN, { cors: true });
      assert.ok(res.ms < 400, `${name}: answered at once, not after ${res.ms} ms`);
    }
    // Also when sent with lower-case keys and a null that resets an earlier value.
    const res = await b.proxy(`{"sid":"${newSid()}","version":"1.3","AcceptedRelayPattern":"${"snowflake.torproject.net$"}","acceptedrelaypattern":null}`);
    assertText(res, 200, BAD_PATTERN, { cors: true });
    assert.equal(await b.sessions(), 0, "refused polls are not parked");
  });

  test("patterns that are a superset of the broker's are accepted and parked", async () => {
    const b = short;
    const accepted = ["snowflake.torproject.net$", "snowflake.torproject.net", "torproject.net$", "net", "t$", "", "$"];
    const pending = accepted.map((pattern) => b.proxy({ sid: newSid(), pattern }));
    await b.waitSessions(accepted.length);
    for (const res of await Promise.all(pending)) assertText(res, 200, noMatch(), { cors: true });
  });
});

describe("one live poll per Sid (docs/design.md §2.1)", () => {
  test("a second poll with the same Sid ends the first with no match at once and takes its place, with its own NAT", async () => {
    const b = long;
    const sid = newSid();
    const first = await b.park({ sid, nat: "restricted", type: "standalone" });
    const second = b.proxy({ sid, nat: "unrestricted", type: "webext" });
    const res = await first.response;
    assertText(res, 200, noMatch(), { cors: true });
    assert.ok(res.ms < POLL_MS - 100, `the first poll ended at once, not after ${res.ms} ms`);
    await b.waitSessions(1);
    assert.equal(await b.debug(), debugText({ sessions: 1, types: { webext: 1 }, unrestricted: 1 }));
    // A restricted client may only use open proxies: it gets the replacement, so the
    // replacement (unrestricted) is what is parked, and the first poll is gone from its pool.
    await rendezvous(b, second, sid, { nat: "restricted" });
    const denied = await b.client(offerJson(), { nat: "unrestricted" });
    assertText(denied, 200, NO_PROXIES, { cors: true });
  });

  test("a poll under a Sid whose client is waiting for the answer is refused at once and does not disturb that rendezvous", async () => {
    const b = long;
    const sid = newSid();
    const pending = await b.park({ sid, nat: "unrestricted" });
    const offer = offerJson("busy");
    const client = b.client(offer, { nat: "restricted" });
    assertText(await pending.response, 200, clientMatch(offer, "restricted"), { cors: true });
    const again = await b.proxy({ sid, nat: "unrestricted" });
    // Refused like a poll beyond MAX_PARKED_POLLS: no match now, come back later.
    assertText(again, 200, noMatch(60000), { cors: true });
    assert.ok(again.ms < 400, `refused at once, not after ${again.ms} ms`);
    assert.equal(await b.sessions(), 1);
    const answer = answerJson("busy");
    assertText(await b.answer(sid, answer), 200, SUCCESS, { cors: true });
    assertText(await client, 200, clientAnswer(answer), { cors: true });
  });
});

describe("which proxy a client gets", () => {
  test("least reported Clients first (§9 #47)", async () => {
    const b = long;
    const proxies = [4, 5, 3, 1].map((clients) => ({ clients, sid: newSid(`c${clients}`) }));
    const pending = new Map();
    for (const p of proxies) pending.set(p.clients, await b.park({ sid: p.sid, nat: "unrestricted", clients: p.clients }));
    for (const clients of [1, 3, 4, 5]) {
      const sid = proxies.find((p) => p.clients === clients).sid;
      await rendezvous(b, pending.get(clients), sid, { nat: "restricted" });
    }
  });

  test("equal load: the longest-waiting proxy first; a negative Clients counts as 0", async () => {
    const b = long;
    const a = newSid("a");
    const bb = newSid("b");
    const c = newSid("c");
    const pa = await b.park({ sid: a, nat: "open", clients: 0 });
    const pb = await b.park({ sid: bb, nat: "open", clients: 0 });
    const pc = await b.park({ sid: c, nat: "open", clients: -3 });
    await rendezvous(b, pa, a, { nat: "unknown" });
    await rendezvous(b, pb, bb, { nat: "unknown" });
    await rendezvous(b, pc, c, { nat: "unknown" });
  });

  test("unrestricted and open clients take strict, then moderate, then open proxies, whatever their load (N)", async () => {
    const b = long;
    const strict = newSid("strict");
    const moderate = newSid("moderate");
    const open = newSid("open");
    const ps = await b.park({ sid: strict, nat: "restricted", clients: 64 });
    const po = await b.park({ sid: open, nat: "unrestricted", clients: 0 });
    const pm = await b.park({ sid: moderate, nat: "moderate", clients: 8 });
    await rendezvous(b, ps, strict, { nat: "unrestricted" });
    await rendezvous(b, pm, moderate, { nat: "open" });
    await rendezvous(b, po, open, { nat: "unrestricted" });
    assertText(await b.client(offerJson(), { nat: "open" }), 200, NO_PROXIES, { cors: true });
  });

  test("moderate clients take moderate, then open proxies, never strict ones (N)", async () => {
    const b = long;
    const strict = newSid("strict");
    const moderate = newSid("moderate");
    const open = newSid("open");
    const ps = await b.park({ sid: strict, nat: "unknown" });
    const po = await b.park({ sid: open, nat: "open" });
    const pm = await b.park({ sid: moderate, nat: "moderate", clients: 16 });
    await rendezvous(b, pm, moderate, { nat: "moderate" });
    await rendezvous(b, po, open, { nat: "moderate" });
    const denied = await b.client(offerJson(), { nat: "moderate" });
    assertText(denied, 200, NO_PROXIES, { cors: true });
    assert.ok(denied.ms < 400, "denied at once");
    assert.equal(await b.sessions(), 1, "the strict proxy is still waiting");
    await rendezvous(b, ps, strict, { nat: "unrestricted" });
  });

  test("restricted, strict and unknown clients take only open proxies (N; R: §3.2)", async () => {
    const b = long;
    const strict = newSid("strict");
    const moderate = newSid("moderate");
    const ps = await b.park({ sid: strict, nat: "strict" });
    const pm = await b.park({ sid: moderate, nat: "moderate" });
    for (const nat of ["restricted", "strict", "unknown", "", undefined]) {
      const res = await b.client(offerJson(), { nat });
      assertText(res, 200, NO_PROXIES, { cors: true });
    }
    assert.equal(await b.sessions(), 2, "denied clients take nothing");
    const open = newSid("open");
    const po = await b.park({ sid: open, nat: "unrestricted" });
    await rendezvous(b, po, open, { nat: "strict" });
    // A client that names no NAT is unknown, and the proxy is told so.
    const open2 = newSid("open2");
    const po2 = await b.park({ sid: open2, nat: "open" });
    await rendezvous(b, po2, open2, { nat: undefined, clientNat: "unknown" });
    const open3 = newSid("open3");
    const po3 = await b.park({ sid: open3, nat: "open" });
    await rendezvous(b, po3, open3, { nat: "", clientNat: "unknown" });
    await rendezvous(b, ps, strict, { nat: "unrestricted" });
    await rendezvous(b, pm, moderate, { nat: "moderate" });
  });
});

test("a PUT, or a request with any other method, is served like a POST (R has no method checks)", async () => {
  const b = long;
  const sid = newSid();
  const pending = b.request("PUT", "/proxy", { body: pollBody(sid, { nat: "open" }) });
  await b.waitSessions(1);
  await rendezvous(b, pending, sid, { nat: "restricted" });
  assertEmpty(await b.request("GET", "/proxy"), 400, { cors: true });
  assertEmpty(await b.request("DELETE", "/proxy", { body: "{}" }), 400, { cors: true });
});
