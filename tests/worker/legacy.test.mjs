// POST /client in the legacy format (the body starts with `{`; NAT in Snowflake-NAT-Type):
// bare answer, 503, 504, and the 400 of docs/design.md §2.1 instead of R's dropped connection.
// docs/protocol.md §1.3 step 6, §2.5, §9 #6-#9, #32a; docs/design.md §2.1.

import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_RELAY,
  SUCCESS,
  answerJson,
  assertBetween,
  assertEmpty,
  assertText,
  clientMatch,
  newSid,
  offerJson,
  sdp,
  startBroker,
} from "./harness.mjs";

const CLIENT_MS = 600;
let b;

before(async () => {
  b = await startBroker({ PROXY_POLL_TIMEOUT_MS: "3000", CLIENT_TIMEOUT_MS: String(CLIENT_MS) });
});
after(() => b?.close());
beforeEach(() => b.waitIdle(5000));

describe("outcomes", () => {
  test("no proxies: 503 with an empty body (§9 #7)", async () => {
    const res = await b.legacy(offerJson(), "restricted");
    assertEmpty(res, 503, { cors: true });
    assert.ok(res.ms < 400, "at once");
  });

  test("answered: 200 with the bare answer string; the proxy got the whole body as its offer (§9 #8)", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "unrestricted" });
    // Odd spacing and key order: the body is passed on byte for byte, not re-encoded.
    const body = `{ "sdp" : ${JSON.stringify(sdp("offer", "legacy <&>"))},\n  "type":"offer" }`;
    const client = b.legacy(body, "restricted");
    assertText(await parked.response, 200, clientMatch(body, "restricted", { relay: DEFAULT_RELAY }), { cors: true });
    const answer = answerJson("legacy-answer <&>");
    assertText(await b.answer(sid, answer), 200, SUCCESS, { cors: true });
    assertText(await client, 200, answer, { cors: true });
  });

  test("offers without any a=candidate are accepted (N dropped R's check)", async () => {
    const res = await b.legacy(offerJson("nc", { candidate: false }), "restricted");
    assertEmpty(res, 503, { cors: true });
  });

  test("the proxy never answers: 504 with an empty body after CLIENT_TIMEOUT_MS (§9 #9)", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "open" });
    const client = b.legacy(offerJson(), "unknown");
    assert.match((await parked.response).text, /^\{"Status":"client match",/);
    const res = await client;
    assertEmpty(res, 504, { cors: true });
    assertBetween(res.ms, CLIENT_MS - 10, CLIENT_MS + 500, "504 after");
  });
});

describe("Snowflake-NAT-Type", () => {
  test("the header name matches in any case; its value selects the pools (unrestricted may use a strict proxy)", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "restricted" });
    const body = offerJson("hdr");
    const client = b.post("/client", body, { headers: { "sNoWfLaKe-nAt-TyPe": "unrestricted" } });
    assertText(await parked.response, 200, clientMatch(body, "unrestricted"), { cors: true });
    const answer = answerJson();
    assertText(await b.answer(sid, answer), 200, SUCCESS);
    assertText(await client, 200, answer, { cors: true });
  });

  test("no header, or an empty one, means unknown: only open proxies", async () => {
    const strict = newSid();
    const parkedStrict = await b.park({ sid: strict, nat: "restricted" });
    assertEmpty(await b.legacy(offerJson()), 503, { cors: true });
    assertEmpty(await b.legacy(offerJson(), ""), 503, { cors: true });
    for (const nat of [undefined, ""]) {
      const sid = newSid();
      const parked = await b.park({ sid, nat: "open" });
      const body = offerJson(sid);
      const client = b.legacy(body, nat);
      assertText(await parked.response, 200, clientMatch(body, "unknown"), { cors: true });
      assertText(await b.answer(sid, answerJson()), 200, SUCCESS);
      assertText(await client, 200, answerJson(), { cors: true });
    }
    // The strict proxy was never offered to them; release it.
    const client = b.legacy(offerJson("last"), "open");
    assert.match((await parkedStrict.response).text, /^\{"Status":"client match",/);
    assertText(await b.answer(strict, answerJson()), 200, SUCCESS);
    assertText(await client, 200, answerJson());
  });
});

describe("refused: 400 with an empty body instead of R's dropped connection (docs/design.md §2.1)", () => {
  test("invalid NAT values and malformed offers, none of which takes the waiting proxy", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "unrestricted" });
    const cases = [
      ["bad NAT cone", offerJson(), "cone"],
      ["NAT Restricted", offerJson(), "Restricted"],
      ["NAT UNKNOWN", offerJson(), "UNKNOWN"],
      ["NAT with junk", offerJson(), "restricted,unrestricted"],
      ["invalid SDP (§9 #6)", "{test}", "restricted"],
      ["not a session description (§9 #32a; R: 503)", JSON.stringify({ version: "2.0", x: "a=candidate" }), undefined],
      ["no sdp", JSON.stringify({ type: "offer" }), "restricted"],
      ["unknown type", JSON.stringify({ type: "bogus", sdp: sdp("offer") }), "restricted"],
      ["sdp as number", JSON.stringify({ type: "offer", sdp: 1 }), "restricted"],
      ["trailing data", offerJson() + " x", "restricted"],
      ["a lone brace", "{", "restricted"],
      ["binary after the brace", Buffer.from([0x7b, 0x00, 0xff, 0xfe]), "restricted"],
      ["bad NAT and bad offer", "{test}", "cone"],
    ];
    const results = await Promise.all(cases.map(async ([name, body, nat]) => [name, await b.legacy(body, nat)]));
    for (const [name, res] of results) {
      assert.equal(res.status, 400, `${name}: ${res}`);
      assertEmpty(res, 400, { cors: true });
    }
    assert.equal(await b.sessions(), 1, "the proxy is still waiting");
    const body = offerJson("after");
    const client = b.legacy(body, "restricted");
    assertText(await parked.response, 200, clientMatch(body, "restricted"), { cors: true });
    assertText(await b.answer(sid, answerJson()), 200, SUCCESS);
    assertText(await client, 200, answerJson(), { cors: true });
  });
});
