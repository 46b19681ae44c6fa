// The Worker's logs (for Workers Logs / `wrangler tail`): one JSON line per
// request with no addresses and no path tail, and every line scrubbed of IP
// addresses unless UNSAFE_LOGGING=true.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startBroker, newSid, pollBody, clientBody, offerJson, sleep } from "./harness.mjs";

const requestLines = (b) =>
  b.logs.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));

test("one JSON line per request: endpoint, outcome, status, duration", async () => {
  const b = await startBroker({ PROXY_POLL_TIMEOUT_MS: "200" });
  try {
    await b.post("/proxy", pollBody(newSid()));
    await b.post("/client", clientBody(offerJson("logs")));
    await b.get("/nope");
    const amp = "1.0\n" + JSON.stringify({ offer: offerJson("logs-amp"), nat: "unknown" });
    await b.get(`/amp/client/0aaaaaaaaaaaa/${Buffer.from(amp).toString("base64url")}`);
    await sleep(100);
    const lines = requestLines(b);
    const find = (endpoint) => lines.find((l) => l.endpoint === endpoint);
    assert.deepEqual(Object.keys(find("/proxy")), ["endpoint", "outcome", "status", "ms"]);
    assert.equal(find("/proxy").outcome, "no match");
    assert.equal(find("/proxy").status, 200);
    assert.ok(find("/proxy").ms >= 150, `a held poll took ${find("/proxy").ms} ms`);
    assert.equal(find("/client").outcome, "denied");
    assert.equal(find("not found").status, 404);
    // The AMP path carries the client's offer: only the endpoint is logged,
    // with the outcome the page carries (no proxy is waiting: denied).
    assert.equal(find("/amp/client/").outcome, "denied");
    assert.equal(find("/amp/client/").status, 200);
    assert.ok(!b.logs.some((l) => l.includes("logs-amp") || l.includes("0aaaaaaaaaaaa")), b.logs.join("\n"));
  } finally {
    await b.close();
  }
});

test("addresses are scrubbed from every log line", async () => {
  // A configuration error whose message names an address-like key.
  const b = await startBroker({ BRIDGE_LIST: '{"192.0.2.7":1,"[2001:db8::1]:443":2}' });
  try {
    const res = await b.post("/proxy", pollBody(newSid()));
    assert.equal(res.status, 500);
    await sleep(100);
    const error = b.logs.find((l) => l.includes("BRIDGE_LIST"));
    assert.ok(error, b.logs.join("\n"));
    assert.match(error, /\[scrubbed\]/);
    assert.ok(!b.logs.some((l) => l.includes("192.0.2.7") || l.includes("2001:db8")), b.logs.join("\n"));
  } finally {
    await b.close();
  }
});
