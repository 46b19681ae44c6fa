// POST /client in the 1.0 format: decoding and its error texts, denial, answer delivery,
// timeouts from the request or from the match.
// docs/protocol.md §1.3, §2.3, §2.4, §3.2, §9 #1-#5, #32-#36; docs/design.md §2.

import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_FP,
  NO_PROXIES,
  SUCCESS,
  CLIENT_GONE,
  TIMED_OUT,
  UNKNOWN_BRIDGE,
  answerJson,
  assertBetween,
  assertText,
  clientAnswer,
  clientBody,
  clientError,
  clientMatch,
  newSid,
  offerJson,
  slowBody,
  startBroker,
} from "./harness.mjs";

const CLIENT_MS = 600;
let b; // CLIENT_TIMEOUT_FROM=request (the default)
let m; // CLIENT_TIMEOUT_FROM=match

before(async () => {
  [b, m] = await Promise.all([
    startBroker({ PROXY_POLL_TIMEOUT_MS: "3000", CLIENT_TIMEOUT_MS: String(CLIENT_MS) }),
    startBroker({ PROXY_POLL_TIMEOUT_MS: "3000", CLIENT_TIMEOUT_MS: String(CLIENT_MS), CLIENT_TIMEOUT_FROM: "match" }),
  ]);
});
after(() => Promise.all([b?.close(), m?.close()]));
beforeEach(() => Promise.all([b.waitIdle(10000), m.waitIdle(10000)]));

/** Parks an open proxy, sends `body` as a 1.0 client, answers whatever the proxy got, and returns the client's response. */
async function rendezvousWith(broker, clientRequest, { proxyNat = "open", expectedOffer, expectedNat = "unknown", relay } = {}) {
  const sid = newSid();
  const parked = await broker.park({ sid, nat: proxyNat });
  const client = clientRequest();
  const poll = await parked.response;
  assertText(poll, 200, clientMatch(expectedOffer, expectedNat, relay ? { relay } : {}), { cors: true });
  const answer = answerJson(sid);
  assertText(await broker.answer(sid, answer), 200, SUCCESS, { cors: true });
  const res = await client;
  assertText(res, 200, clientAnswer(answer), { cors: true });
  return res;
}

describe("outcomes", () => {
  test("no proxy waiting: 200 no snowflake proxies currently available, at once (§9 #2)", async () => {
    const res = await b.client(offerJson(), { nat: "unknown", fingerprint: DEFAULT_FP });
    assertText(res, 200, NO_PROXIES, { cors: true });
    assert.ok(res.ms < 400, `denied at once, not after ${res.ms} ms`);
  });

  test("a proxy's answer reaches the client as {\"answer\":…} (§9 #3, #19)", async () => {
    const offer = offerJson("full");
    await rendezvousWith(b, () => b.client(offer, { nat: "unknown", fingerprint: DEFAULT_FP }), { expectedOffer: offer });
  });

  test("fingerprints match whatever their hex case; keys match in any case; unknown keys are ignored", async () => {
    const offer = offerJson("case");
    const body = "1.0\n" + JSON.stringify({ OFFER: offer, Nat: "restricted", FingerPrint: DEFAULT_FP.toLowerCase(), extra: [null] });
    await rendezvousWith(b, () => b.post("/client", body), { expectedOffer: offer, expectedNat: "restricted" });
  });

  test("offers without any a=candidate are accepted (N dropped R's check, §9 #1 adapted)", async () => {
    const offer = offerJson("nocand", { candidate: false });
    assert.ok(!offer.includes("a=candidate"));
    await rendezvousWith(b, () => b.client(offer, {}), { expectedOffer: offer });
  });

  test("any session description type N accepts (offer, pranswer, answer, rollback) and an empty sdp pass", async () => {
    for (const type of ["pranswer", "answer", "rollback"]) {
      const offer = JSON.stringify({ type, sdp: "" });
      await rendezvousWith(b, () => b.client(offer, { nat: "unrestricted" }), { expectedOffer: offer, expectedNat: "unrestricted" });
    }
  });

  test("the Snowflake-NAT-Type header is ignored in the 1.0 format", async () => {
    const offer = offerJson("hdr");
    await rendezvousWith(b, () => b.post("/client", clientBody(offer, {}), { headers: { "Snowflake-NAT-Type": "unrestricted" } }), {
      expectedOffer: offer,
      expectedNat: "unknown",
    });
    // An unknown client cannot use a strict proxy, whatever the header says.
    const sid = newSid();
    const parked = await b.park({ sid, nat: "restricted" });
    const res = await b.post("/client", clientBody(offerJson(), {}), { headers: { "Snowflake-NAT-Type": "unrestricted" } });
    assertText(res, 200, NO_PROXIES, { cors: true });
    // Leave nothing parked: an unrestricted client takes the strict proxy.
    const client = b.client(offerJson(), { nat: "unrestricted" });
    assert.match((await parked.response).text, /^\{"Status":"client match",/);
    assertText(await b.answer(sid, answerJson()), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answerJson()), { cors: true });
  });

  test("a proxy that never answers: timed out waiting for answer! CLIENT_TIMEOUT_MS after the request; its late answer gets client gone (§9 #5)", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "unrestricted" });
    const offer = offerJson();
    const client = b.client(offer, { nat: "restricted" });
    assertText(await parked.response, 200, clientMatch(offer, "restricted"), { cors: true });
    const res = await client;
    assertText(res, 200, TIMED_OUT, { cors: true });
    assertBetween(res.ms, CLIENT_MS - 10, CLIENT_MS + 500, "timed out after");
    assertText(await b.answer(sid, answerJson()), 200, CLIENT_GONE, { cors: true });
    assert.equal(await b.sessions(), 0);
  });

  test("each answer reaches exactly the client whose offer that proxy received", async () => {
    const [s1, s2, s3] = [newSid("p1"), newSid("p2"), newSid("p3")];
    const p1 = await b.park({ sid: s1, nat: "open" });
    const p2 = await b.park({ sid: s2, nat: "open" });
    const p3 = await b.park({ sid: s3, nat: "open" });
    const offers = ["c1", "c2", "c3"].map((tag) => offerJson(tag));
    const c1 = b.client(offers[0], { nat: "restricted" });
    assertText(await p1.response, 200, clientMatch(offers[0], "restricted"), { cors: true });
    const c2 = b.client(offers[1], { nat: "restricted" });
    assertText(await p2.response, 200, clientMatch(offers[1], "restricted"), { cors: true });
    const c3 = b.client(offers[2], { nat: "restricted" });
    assertText(await p3.response, 200, clientMatch(offers[2], "restricted"), { cors: true });
    // Answer in another order than the matches.
    const answers = ["a1", "a2", "a3"].map((tag) => answerJson(tag));
    assertText(await b.answer(s3, answers[2]), 200, SUCCESS);
    assertText(await c3, 200, clientAnswer(answers[2]));
    assertText(await b.answer(s1, answers[0], "1.0"), 200, SUCCESS);
    assertText(await c1, 200, clientAnswer(answers[0]));
    assertText(await b.answer(s2, answers[1]), 200, SUCCESS);
    assertText(await c2, 200, clientAnswer(answers[1]));
  });
});

describe("1.0 decoding errors: 200 with the exact error text (§2.3, §9 #32-#36)", () => {
  const fake = "fake";
  const valid = offerJson("valid");
  const cases = {
    "empty body": ["", "unsupported message version"],
    "no newline": ["1.0", "unsupported message version"],
    "version 2.0": [`2.0\n${JSON.stringify({ offer: valid })}`, "unsupported message version"],
    "version 1.1": [`1.1\n${JSON.stringify({ offer: valid })}`, "unsupported message version"],
    "CRLF after the version": [`1.0\r\n${JSON.stringify({ offer: valid })}`, "unsupported message version"],
    "space after the version": [`1.0 \n${JSON.stringify({ offer: valid })}`, "unsupported message version"],
    "space before the version": [` 1.0\n${JSON.stringify({ offer: valid })}`, "unsupported message version"],
    "empty version line": [`\n${JSON.stringify({ offer: valid })}`, "unsupported message version"],
    "legacy body after a space": [` ${valid}`, "unsupported message version"],
    "nothing after the newline": ["1.0\n", "unexpected end of JSON input"],
    "only whitespace after the newline": ["1.0\n  \n", "unexpected end of JSON input"],
    "truncated JSON": ['1.0\n{"offer":', "unexpected end of JSON input"],
    "not JSON": ["1.0\nx", "invalid character 'x' looking for beginning of value"],
    "trailing data": ["1.0\n{}x", "invalid character 'x' after top-level value"],
    "offer as number": ['1.0\n{"offer":1}', "json: cannot unmarshal number into Go struct field ClientPollRequest.offer of type string"],
    "offer as object": ['1.0\n{"offer":{"type":"offer","sdp":"v=0"}}', "json: cannot unmarshal object into Go struct field ClientPollRequest.offer of type string"],
    "nat as number": [`1.0\n{"offer":${JSON.stringify(valid)},"nat":5}`, "json: cannot unmarshal number into Go struct field ClientPollRequest.nat of type string"],
    "fingerprint as bool": [`1.0\n{"offer":${JSON.stringify(valid)},"fingerprint":true}`, "json: cannot unmarshal bool into Go struct field ClientPollRequest.fingerprint of type string"],
    "array": ["1.0\n[]", "json: cannot unmarshal array into Go value of type messages.ClientPollRequest"],
    "string": ['1.0\n"x"', "json: cannot unmarshal string into Go value of type messages.ClientPollRequest"],
    "number": ["1.0\n1", "json: cannot unmarshal number into Go value of type messages.ClientPollRequest"],
    "null": ["1.0\nnull", "no supplied offer"],
    "{}": ["1.0\n{}", "no supplied offer"],
    "no offer (§9 #33)": ['1.0\n{"nat":"unknown"}', "no supplied offer"],
    "empty offer": ['1.0\n{"offer":""}', "no supplied offer"],
    "null offer": ['1.0\n{"offer":null}', "no supplied offer"],
    "empty offer before a bad fingerprint": ['1.0\n{"offer":"","fingerprint":"123123"}', "no supplied offer"],
    "short fingerprint (§9 #34)": [clientBody(fake, { nat: "unknown", fingerprint: "123123" }), "cannot decode fingerprint"],
    "39 hex digits": [clientBody(valid, { fingerprint: DEFAULT_FP.slice(1) }), "cannot decode fingerprint"],
    "41 hex digits": [clientBody(valid, { fingerprint: DEFAULT_FP + "A" }), "cannot decode fingerprint"],
    "62 hex digits": [clientBody(valid, { fingerprint: "ab".repeat(31) }), "cannot decode fingerprint"],
    "not hex": [clientBody(valid, { fingerprint: "zz".repeat(20) }), "cannot decode fingerprint"],
    "bad fingerprint before a bad NAT": [clientBody(fake, { nat: "cone", fingerprint: "xyz" }), "cannot decode fingerprint"],
    "bad NAT (§9 #35)": [clientBody(fake, { nat: "cone" }), "invalid NAT type"],
    "NAT Restricted": [clientBody(valid, { nat: "Restricted" }), "invalid NAT type"],
    "NAT UNKNOWN": [clientBody(valid, { nat: "UNKNOWN" }), "invalid NAT type"],
    "unknown 20-byte fingerprint (§9 #36)": [clientBody(valid, { fingerprint: "2B280B23E1107BB62ABFC40DDCC8824814F80B00" }), null],
    "unknown 32-byte fingerprint": [clientBody(valid, { fingerprint: "AB".repeat(32) }), null],
  };

  test("each malformed message gets its error text, and none of them takes the waiting proxy", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "unrestricted" });
    const results = await Promise.all(Object.entries(cases).map(async ([name, [body, text]]) => [name, text, await b.post("/client", body)]));
    for (const [name, text, res] of results) {
      const expected = text === null ? UNKNOWN_BRIDGE : clientError(text);
      assert.equal(res.text, expected, `${name}: ${res}`);
      assertText(res, 200, expected, { cors: true });
    }
    assert.equal(await b.sessions(), 1, "the proxy is still waiting");
    const offer = offerJson();
    const client = b.client(offer, { nat: "unknown" });
    assertText(await parked.response, 200, clientMatch(offer, "unknown"), { cors: true });
    const answer = answerJson();
    assertText(await b.answer(sid, answer), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answer));
  });

  test("offers that are not a WebRTC session description: malformed session description (N)", async () => {
    const offers = {
      "plain text (§9 #1)": "fake",
      "no type": JSON.stringify({ sdp: "v=0" }),
      "no sdp": JSON.stringify({ type: "offer" }),
      "unknown type": JSON.stringify({ type: "bogus", sdp: "v=0" }),
      "type in upper case": JSON.stringify({ type: "Offer", sdp: "v=0" }),
      "type as number": JSON.stringify({ type: 1, sdp: "v=0" }),
      "sdp as number": JSON.stringify({ type: "offer", sdp: 1 }),
      "sdp as null": JSON.stringify({ type: "offer", sdp: null }),
      array: "[]",
      null: "null",
      string: '"offer"',
      "trailing data": JSON.stringify({ type: "offer", sdp: "v=0" }) + " x",
      "truncated": JSON.stringify({ type: "offer", sdp: "v=0" }).slice(0, -1),
    };
    const sid = newSid();
    const parked = await b.park({ sid, nat: "unrestricted" });
    for (const [name, offer] of Object.entries(offers)) {
      const res = await b.client(offer, { nat: "restricted" });
      assertText(res, 200, /^\{"error":"malformed session description: (?:[^"\\]|\\.)+"\}$/, { cors: true });
      assert.ok(res.ms < 400, `${name}: at once`);
    }
    // Checked after R's checks: a bad NAT still says invalid NAT type.
    assertText(await b.client("fake", { nat: "cone" }), 200, clientError("invalid NAT type"));
    assert.equal(await b.sessions(), 1, "the proxy is still waiting");
    const client = b.client(offerJson(), { nat: "unrestricted" });
    assert.match((await parked.response).text, /^\{"Status":"client match",/);
    assertText(await b.answer(sid, answerJson()), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answerJson()));
  });
});

describe("CLIENT_TIMEOUT_FROM (docs/design.md §2.3)", () => {
  // The request's body arrives SLOW ms after its headers: with `request` the wait is counted
  // from the headers, with `match` from the match, which comes only once the body is read.
  const SLOW = 550;
  const head = '1.0\n{"nat":"restricted","offer":';

  test("request (default): the client times out CLIENT_TIMEOUT_MS after its request started, even though the match came late", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "open" });
    const offer = offerJson();
    const client = b.post("/client", slowBody(head, SLOW, JSON.stringify(offer) + "}"));
    assertText(await parked.response, 200, clientMatch(offer, "restricted"), { cors: true });
    const res = await client;
    assertText(res, 200, TIMED_OUT, { cors: true });
    assertBetween(res.ms, CLIENT_MS - 10, SLOW + CLIENT_MS - 100, "timed out after");
  });

  test("request: a client whose time is up before it could be matched is told timed out at once and takes no proxy", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "open" });
    const client = b.post("/client", slowBody(head, CLIENT_MS + 250, JSON.stringify(offerJson()) + "}"));
    const res = await client;
    assertText(res, 200, TIMED_OUT, { cors: true });
    assertBetween(res.ms, CLIENT_MS + 240, CLIENT_MS + 650, "answered after");
    assert.equal(await b.sessions(), 1, "the proxy was not spent on it");
    const offer = offerJson();
    const next = b.client(offer, { nat: "unknown" });
    assertText(await parked.response, 200, clientMatch(offer, "unknown"), { cors: true });
    assertText(await b.answer(sid, answerJson()), 200, SUCCESS);
    assertText(await next, 200, clientAnswer(answerJson()));
  });

  test("match: the client waits CLIENT_TIMEOUT_MS after the match (R)", async () => {
    const sid = newSid();
    const parked = await m.park({ sid, nat: "open" });
    const offer = offerJson();
    const client = m.post("/client", slowBody(head, SLOW, JSON.stringify(offer) + "}"));
    assertText(await parked.response, 200, clientMatch(offer, "restricted"), { cors: true });
    const res = await client;
    assertText(res, 200, TIMED_OUT, { cors: true });
    assertBetween(res.ms, SLOW + CLIENT_MS - 10, SLOW + CLIENT_MS + 500, "timed out after");
  });

  test("match: an answer within CLIENT_TIMEOUT_MS of the match is delivered though the request is older than that", async () => {
    const sid = newSid();
    const parked = await m.park({ sid, nat: "open" });
    const offer = offerJson();
    const client = m.post("/client", slowBody(head, CLIENT_MS + 100, JSON.stringify(offer) + "}"));
    assertText(await parked.response, 200, clientMatch(offer, "restricted"), { cors: true });
    const answer = answerJson();
    assertText(await m.answer(sid, answer), 200, SUCCESS);
    const res = await client;
    assertText(res, 200, clientAnswer(answer), { cors: true });
    assert.ok(res.ms > CLIENT_MS, `the request lasted ${res.ms} ms`);
  });
});
