// POST /answer: the a=candidate check, decoding, N's structural check, delivery and client gone.
// docs/protocol.md §1.4, §2.2, §3.5, §3.6, §9 #16-#18, #29-#31; docs/design.md §2.1.

import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  CLIENT_GONE,
  SUCCESS,
  answerBody,
  answerJson,
  assertEmpty,
  assertText,
  clientAnswer,
  clientMatch,
  newSid,
  offerJson,
  sdp,
  startBroker,
} from "./harness.mjs";

let b;

before(async () => {
  b = await startBroker({ PROXY_POLL_TIMEOUT_MS: "3000", CLIENT_TIMEOUT_MS: "3000" });
});
after(() => b?.close());
beforeEach(() => b.waitIdle(5000));

/** Parks a proxy under `sid` and matches a client to it; resolves to `{ client }`, the client's pending response. */
async function matched(sid) {
  const parked = await b.park({ sid, nat: "open" });
  const offer = offerJson(sid);
  const client = b.client(offer, { nat: "restricted" });
  assertText(await parked.response, 200, clientMatch(offer, "restricted"), { cors: true });
  return { client };
}

describe("client gone (§3.5)", () => {
  test("a Sid the broker never saw: 200 {\"Status\":\"client gone\"} (§9 #16)", async () => {
    const res = await b.post("/answer", JSON.stringify({ Version: "1.3", Sid: "invalid", Answer: answerJson() }));
    assertText(res, 200, CLIENT_GONE, { cors: true });
  });

  test("a Sid that is polling but not matched: client gone at once, and the poll keeps waiting (docs/design.md §2.1)", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "open" });
    const res = await b.answer(sid, answerJson());
    assertText(res, 200, CLIENT_GONE, { cors: true });
    assert.ok(res.ms < 400, `answered at once, not after ${res.ms} ms`);
    assert.equal(await b.sessions(), 1);
    // The stale answer is not kept for a later client.
    const offer = offerJson("later");
    const client = b.client(offer, { nat: "restricted" });
    assertText(await parked.response, 200, clientMatch(offer, "restricted"), { cors: true });
    const answer = answerJson("fresh");
    assertText(await b.answer(sid, answer), 200, SUCCESS, { cors: true });
    assertText(await client, 200, clientAnswer(answer), { cors: true });
  });

  test("a second answer for the same match: client gone; the client got the first", async () => {
    const sid = newSid();
    const { client } = await matched(sid);
    assertText(await b.answer(sid, answerJson("first")), 200, SUCCESS, { cors: true });
    assertText(await b.answer(sid, answerJson("second")), 200, CLIENT_GONE, { cors: true });
    assertText(await client, 200, clientAnswer(answerJson("first")));
  });

  test("Sids are compared exactly (case, whitespace)", async () => {
    const sid = newSid("Case");
    const { client } = await matched(sid);
    for (const other of [sid.toLowerCase(), sid.toUpperCase(), ` ${sid}`, `${sid} `]) {
      assertText(await b.answer(other, answerJson()), 200, CLIENT_GONE);
    }
    assertText(await b.answer(sid, answerJson()), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answerJson()));
  });
});

describe("accepted answers", () => {
  test("Version 1.0 (browser proxies), 1 and 1.x, any key case, extra keys, whitespace, and any session description type", async () => {
    const a = answerJson();
    const bodies = {
      "Version 1.0": answerBody("unseen", a, "1.0"),
      "Version 1": answerBody("unseen", a, "1"),
      "Version 1.x": answerBody("unseen", a, "1.x"),
      "lower-case keys": JSON.stringify({ version: "1.3", sid: "unseen", answer: a }),
      "extra keys": JSON.stringify({ Version: "1.3", Sid: "unseen", Answer: a, Extra: { x: [1] } }),
      whitespace: `\n\t ${answerBody("unseen", a)} \r\n`,
      "last duplicate wins": `{"Version":"2.0","Sid":"","Answer":"","Version":"1.3","Sid":"unseen","Answer":${JSON.stringify(a)}}`,
      pranswer: answerBody("unseen", JSON.stringify({ type: "pranswer", sdp: sdp("answer") })),
      offer: answerBody("unseen", JSON.stringify({ type: "offer", sdp: sdp("answer") })),
      rollback: answerBody("unseen", JSON.stringify({ type: "rollback", sdp: "a=candidate" })),
      // The candidate check looks at the raw body, not at the answer.
      "a=candidate only in another key": JSON.stringify({ Version: "1.3", Sid: "unseen", Answer: answerJson("x", { candidate: false }), Pad: "a=candidate" }),
    };
    for (const [name, body] of Object.entries(bodies)) {
      const res = await b.post("/answer", body);
      assert.equal(res.text, CLIENT_GONE, `${name}: ${res}`);
      assertText(res, 200, CLIENT_GONE, { cors: true });
    }
  });

  test("the client receives the Answer string itself, not the request around it", async () => {
    const sid = newSid();
    const { client } = await matched(sid);
    const answer = answerJson("bare", { candidate: false });
    const res = await b.post("/answer", JSON.stringify({ version: "1.0", SID: sid, Answer: answer, Pad: "a=candidate" }));
    assertText(res, 200, SUCCESS, { cors: true });
    assertText(await client, 200, clientAnswer(answer), { cors: true });
  });
});

describe("refused answers: 400 with an empty body, and the waiting client is not disturbed", () => {
  test("every malformed /answer body", async () => {
    const sid = newSid();
    const { client } = await matched(sid);
    const good = answerJson("good");
    const noCandidate = answerJson("nc", { candidate: false });
    const bodies = {
      "empty body (§9 #17)": "",
      "100001 zero bytes (§9 #18)": Buffer.alloc(100001),
      "no a=candidate anywhere": answerBody(sid, noCandidate),
      "no Sid (§9 #29)": JSON.stringify({ Version: "1.0", Answer: "test a=candidate" }),
      "no Sid, good Answer": JSON.stringify({ Version: "1.3", Answer: good }),
      "empty Sid": answerBody("", good),
      "null Sid": JSON.stringify({ Version: "1.3", Sid: null, Answer: good }),
      "no Answer (§9 #30)": JSON.stringify({ Version: "1.0", Sid: sid, x: "a=candidate" }),
      "empty Answer": JSON.stringify({ Version: "1.3", Sid: sid, Answer: "", x: "a=candidate" }),
      "an SDP offer JSON (§9 #31)": JSON.stringify({ type: "offer", sdp: sdp("offer") }),
      "Answer not a session description (N)": JSON.stringify({ Version: "1.3", Sid: sid, Answer: "test answer", Pad: "a=candidate" }),
      "Answer raw SDP (N)": answerBody(sid, sdp("answer")),
      "Answer with unknown type": answerBody(sid, JSON.stringify({ type: "bogus", sdp: sdp("answer") })),
      "Answer without sdp": JSON.stringify({ Version: "1.3", Sid: sid, Answer: JSON.stringify({ type: "answer" }), Pad: "a=candidate" }),
      "Answer sdp as number": JSON.stringify({ Version: "1.3", Sid: sid, Answer: JSON.stringify({ type: "answer", sdp: 5 }), Pad: "a=candidate" }),
      "Answer as object": JSON.stringify({ Version: "1.3", Sid: sid, Answer: { type: "answer", sdp: sdp("answer") } }),
      "Sid as number": JSON.stringify({ Version: "1.3", Sid: 5, Answer: good }),
      "no Version": JSON.stringify({ Sid: sid, Answer: good }),
      "Version 2.0": answerBody(sid, good, "2.0"),
      "Version empty": answerBody(sid, good, ""),
      "Version 0.9": answerBody(sid, good, "0.9"),
      "Version as number": JSON.stringify({ Version: 1.3, Sid: sid, Answer: good }),
      "trailing data": answerBody(sid, good) + "x",
      truncated: answerBody(sid, good).slice(0, -1),
      "not JSON": "a=candidate",
      array: JSON.stringify([answerBody(sid, good)]),
      "binary with a=candidate": Buffer.concat([Buffer.from([0, 0xff, 0xfe, 0x80]), Buffer.from("a=candidate"), Buffer.from([0xc3])]),
      "proxy poll": JSON.stringify({ Sid: sid, Version: "1.3", Pad: "a=candidate" }),
    };
    const results = await Promise.all(Object.entries(bodies).map(async ([name, body]) => [name, await b.post("/answer", body)]));
    for (const [name, res] of results) {
      assert.equal(res.status, 400, `${name}: ${res}`);
      assertEmpty(res, 400, { cors: true });
    }
    assert.equal(await b.sessions(), 1, "the matched proxy is still answering");
    assertText(await b.answer(sid, good), 200, SUCCESS, { cors: true });
    assertText(await client, 200, clientAnswer(good), { cors: true });
  });
});
