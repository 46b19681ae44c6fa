// Requests whose callers went away: a proxy that closed its poll (a closed browser tab) is not
// handed a client, and a client that left does not keep its proxy busy (issue 12 item 3;
// docs/platform.md, request signals).

import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  CLIENT_GONE,
  NO_PROXIES,
  SUCCESS,
  answerJson,
  assertText,
  clientAnswer,
  clientMatch,
  newSid,
  offerJson,
  startBroker,
} from "./harness.mjs";

// Deadlines long enough that only a cancellation, never a deadline, can end these requests
// within the test's waits.
const POLL_MS = 20000;
const CLIENT_MS = 20000;
// How long after it starts a request is abandoned by the edge stand-in (tests/support/edge.mjs).
const ABANDON_MS = 500;
let b;

before(async () => {
  b = await startBroker(
    { PROXY_POLL_TIMEOUT_MS: String(POLL_MS), CLIENT_TIMEOUT_MS: String(CLIENT_MS) },
    { edge: true },
  );
});
after(() => b?.close());
beforeEach(() => b.waitIdle(POLL_MS));

/** Options making the edge abandon a request ABANDON_MS after it starts. */
const abandoned = { headers: { "x-test-abandon-after-ms": String(ABANDON_MS) } };

/** What the caller of an abandoned request gets from the edge stand-in. */
function assertAbandoned(res) {
  assert.equal(res.status, 599, `${res}`);
  assert.match(res.text, /^abandoned: TimeoutError/);
}

describe("a caller that goes away is forgotten at once", () => {
  test("a closed poll leaves the broker, and the next client is denied at once instead of waiting for a dead proxy", async () => {
    const poll = b.proxy({ sid: newSid(), nat: "unrestricted" }, abandoned);
    await b.waitSessions(1);
    assertAbandoned(await poll);
    // Well before the poll's 20 s deadline.
    await b.waitSessions(0, 2000);
    const client = await b.client(offerJson(), { nat: "unrestricted" });
    assertText(client, 200, NO_PROXIES);
    assert.ok(client.ms < 1000, `denied after ${client.ms} ms`);
  });

  test("of two proxies, the one still polling gets the client; the closed one is never offered it", async () => {
    const gone = b.proxy({ sid: newSid(), nat: "unrestricted", clients: 0 }, abandoned);
    await b.waitSessions(1);
    const sid = newSid();
    const live = b.proxy({ sid, nat: "unrestricted", clients: 5 });
    await b.waitSessions(2);
    assertAbandoned(await gone);
    await b.waitSessions(1, 2000);
    const offer = offerJson("live");
    const client = b.client(offer, { nat: "unrestricted" });
    // The closed poll reported fewer clients, so it would have been chosen first.
    assertText(await live, 200, clientMatch(offer, "unrestricted"), { cors: true });
    assertText(await b.answer(sid, answerJson("live")), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answerJson("live")));
  });

  test("a client that leaves frees its proxy: the proxy's answer is `client gone` and it can poll again under its Sid", async () => {
    const sid = newSid();
    const poll = b.proxy({ sid, nat: "unrestricted" });
    await b.waitSessions(1);
    const offer = offerJson("leaves");
    const client = b.client(offer, { nat: "unrestricted" }, abandoned);
    assertText(await poll, 200, clientMatch(offer, "unrestricted"), { cors: true });
    assertAbandoned(await client);
    // The matched proxy counts as a session until its client is forgotten.
    await b.waitSessions(0, 2000);
    assertText(await b.answer(sid, answerJson("late")), 200, CLIENT_GONE);
    const again = b.proxy({ sid, nat: "unrestricted" });
    await b.waitSessions(1);
    const next = offerJson("next");
    const second = b.client(next, { nat: "unrestricted" });
    assertText(await again, 200, clientMatch(next, "unrestricted"), { cors: true });
    assertText(await b.answer(sid, answerJson("next")), 200, SUCCESS);
    assertText(await second, 200, clientAnswer(answerJson("next")));
  });
});
