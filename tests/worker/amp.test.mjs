// GET /amp/client/<path>: the AMP cache rendezvous. Every outcome is a 200 AMP page carrying
// the client JSON in armor; the path carries the 1.0 message.
// docs/protocol.md §1.8, §7.1, §7.2, §9 #10-#13, #32b-#37; docs/design.md §2.

import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import {
  NO_PROXIES,
  SUCCESS,
  TIMED_OUT,
  UNKNOWN_BRIDGE,
  answerJson,
  assertBetween,
  assertCors,
  clientAnswer,
  clientBody,
  clientError,
  clientMatch,
  newSid,
  offerJson,
  startBroker,
} from "./harness.mjs";

const CLIENT_MS = 600;
let b;

before(async () => {
  b = await startBroker({ PROXY_POLL_TIMEOUT_MS: "3000", CLIENT_TIMEOUT_MS: String(CLIENT_MS) });
});
after(() => b?.close());
beforeEach(() => b.waitIdle(5000));

const b64url = (data) => Buffer.from(data).toString("base64url");

/** The path a Go client requests: `0` + 12 random characters + `/` + base64url(message) (§7.1). */
function ampPath(message) {
  return `/amp/client/0${b64url(randomBytes(9))}/${b64url(message)}`;
}

/** The client's armor decoder (§7.2): the text of the <pre> elements, whitespace removed, `0`, base64. */
function decodeArmor(html) {
  const pres = [...html.matchAll(/<pre>([\s\S]*?)<\/pre>/g)].map((m) => m[1]);
  assert.ok(pres.length > 0, `no <pre> in ${JSON.stringify(html)}`);
  const stream = pres.join("").replace(/[\t\n\f\r ]/g, "");
  assert.equal(stream[0], "0", `format indicator in ${JSON.stringify(stream)}`);
  return Buffer.from(stream.slice(1), "base64").toString("utf8");
}

const HEADER_SHA256 = "0c3206bf651283bf33b5fd9fa9ea77f83ea2f8b6f811fecc195a1a3ac87c9d8f";
const sha256 = (data) => createHash("sha256").update(data).digest("hex");

/** A 200 AMP page: text/html (no charset), Cache-Control max-age=15, CORS, the exact 983-byte header, the trailer; returns the JSON it carries. */
function assertAmpPage(res, json) {
  assert.equal(res.status, 200, `status: ${res}`);
  assert.equal(res.header("content-type"), "text/html", `Content-Type: ${res}`);
  assert.equal(res.header("cache-control"), "max-age=15", `Cache-Control: ${res}`);
  assert.equal(res.header("location"), null, "an AMP cache treats a Location header as a redirect");
  assertCors(res, true);
  assert.equal(sha256(res.bytes.subarray(0, 983)), HEADER_SHA256, `AMP header: ${res}`);
  assert.ok(res.text.endsWith("</pre>\n</body>\n</html>"), `trailer: ${res}`);
  const length = res.header("content-length");
  if (length !== null) assert.equal(Number(length), res.bytes.length);
  const decoded = decodeArmor(res.text.slice(983));
  if (json instanceof RegExp) assert.match(decoded, json);
  else if (json !== undefined) assert.equal(decoded, json);
  return decoded;
}

describe("outcomes", () => {
  test("no proxies: the page is byte for byte Go's (1087 bytes, SHA-256 8bae1c2f…) (§7.2, §9 #11)", async () => {
    const res = await b.get(ampPath(clientBody(offerJson(), { nat: "unknown" })));
    assertAmpPage(res, NO_PROXIES);
    assert.equal(res.bytes.length, 1087);
    assert.equal(sha256(res.bytes), "8bae1c2fb4bf8691e6dff7b726cecd7f3db840fed57985e5e62cc685bca65e75");
  });

  test("answered: the proxy gets the offer, the page carries {\"answer\":…} (§9 #12)", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "unrestricted" });
    // No a=candidate check on this path.
    const offer = offerJson("amp", { candidate: false });
    const page = b.get(ampPath(clientBody(offer, { nat: "restricted" })));
    assert.equal((await parked.response).text, clientMatch(offer, "restricted"));
    const answer = answerJson("amp <&>");
    assert.equal((await b.answer(sid, answer)).text, SUCCESS);
    assertAmpPage(await page, clientAnswer(answer));
  });

  test("the proxy never answers: the page says timed out waiting for answer! (§9 #13)", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "open" });
    const page = b.get(ampPath(clientBody(offerJson(), {})));
    assert.match((await parked.response).text, /^\{"Status":"client match",/);
    const res = await page;
    assertAmpPage(res, TIMED_OUT);
    assertBetween(res.ms, CLIENT_MS - 10, CLIENT_MS + 500, "timed out after");
  });

  test("large answers span several <pre> elements of at most 992 lines", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "open" });
    const page = b.get(ampPath(clientBody(offerJson(), { nat: "restricted" })));
    await parked.response;
    const answer = JSON.stringify({ type: "answer", sdp: "a=candidate:1 1 udp 1 1.1.1.1 1 typ host\r\n" + "x".repeat(40000) });
    assert.equal((await b.answer(sid, answer)).text, SUCCESS);
    const res = await page;
    assertAmpPage(res, clientAnswer(answer));
    const pres = [...res.text.matchAll(/<pre>\n([\s\S]*?)<\/pre>\n/g)].map((m) => m[1].split("\n").filter(Boolean));
    assert.ok(pres.length >= 2, `${pres.length} <pre> elements`);
    for (const lines of pres.slice(0, -1)) assert.equal(lines.length, 992);
    for (const line of pres.flat().slice(0, -1)) assert.equal(line.length, 32);
  });
});

describe("errors, all inside a 200 page", () => {
  test("paths that do not decode: cannot decode URL path (§7.1, §9 #10)", async () => {
    const suffixes = ["bad", "", "0", "0foobar", "1/YWJj", "x/YWJj", "0/YWJj=", "0/Y", "0/YW*j"];
    for (const suffix of suffixes) {
      const res = await b.get(`/amp/client/${suffix}`);
      assert.equal(decodeArmor(res.text.slice(983)), clientError("cannot decode URL path"), `suffix ${JSON.stringify(suffix)}: ${res}`);
      assertAmpPage(res);
    }
  });

  test("paths that decode to something other than a 1.0 message (§7.1 table, §9 #32b, #37)", async () => {
    const cases = {
      "0/": "unsupported message version",
      "0foobar/": "unsupported message version",
      "0/YWJj": "unsupported message version", // "abc"
      "0foobar/YWJj": "unsupported message version",
      "0/foobar/YWJj": "unsupported message version",
      [`0/${b64url('{"version":"2.0"}')}`]: "unsupported message version",
      // No legacy format here: a body starting with `{` is just not 1.0.
      [`0/${b64url(offerJson())}`]: "unsupported message version",
    };
    for (const [suffix, error] of Object.entries(cases)) {
      const res = await b.get(`/amp/client/${suffix}`);
      assertAmpPage(res, clientError(error));
    }
  });

  test("1.0 messages with errors carry the same texts as /client (§9 #33-#36)", async () => {
    const cases = [
      ['1.0\n{"nat":"unknown"}', clientError("no supplied offer")],
      ['1.0\n{"offer":"fake","nat":"unknown","fingerprint":"123123"}', clientError("cannot decode fingerprint")],
      ['1.0\n{"offer":"fake","nat":"cone"}', clientError("invalid NAT type")],
      [clientBody(offerJson(), { fingerprint: "2B280B23E1107BB62ABFC40DDCC8824814F80B00" }), UNKNOWN_BRIDGE],
      ["1.0\nx", clientError("invalid character 'x' looking for beginning of value")],
      [clientBody("fake"), /^\{"error":"malformed session description: (?:[^"\\]|\\.)+"\}$/],
    ];
    const sid = newSid();
    const parked = await b.park({ sid, nat: "unrestricted" });
    for (const [message, json] of cases) assertAmpPage(await b.get(ampPath(message)), json);
    assert.equal(await b.sessions(), 1, "no error took the waiting proxy");
    const page = b.get(ampPath(clientBody(offerJson(), { nat: "unrestricted" })));
    await parked.response;
    assert.equal((await b.answer(sid, answerJson())).text, SUCCESS);
    assertAmpPage(await page, clientAnswer(answerJson()));
  });
});
