// Bad input of every kind never disturbs other parked requests; the 100000-byte body limit;
// odd Sids; many concurrent rendezvous; the match-versus-timeout decision is atomic.
// docs/protocol.md §1 (body limit), §3.3, §3.6, §9 #18; docs/design.md §2.1, §3.

import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import {
  BAD_PATTERN,
  CLIENT_GONE,
  NOT_FOUND,
  ROBOTS,
  clientError,
  NO_PROXIES,
  READ_LIMIT,
  SUCCESS,
  TIMED_OUT,
  UNKNOWN_BRIDGE,
  answerBody,
  answerJson,
  assertEmpty,
  assertMetricsResponse,
  assertPrometheusResponse,
  assertText,
  clientAnswer,
  clientBody,
  clientMatch,
  newSid,
  noMatch,
  offerJson,
  padTo,
  pollBody,
  sdp,
  sleep,
  startBroker,
} from "./harness.mjs";

let b;

before(async () => {
  b = await startBroker({ PROXY_POLL_TIMEOUT_MS: "3000", CLIENT_TIMEOUT_MS: "3000" });
});
after(() => b?.close());
beforeEach(() => b.waitIdle(5000));

function binary(size, seed = 1) {
  const out = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out[i] = x >> 16;
  }
  out[0] = 0xff; // never `{`, never a 1.0 prefix
  return out;
}

describe("the 100000-byte body limit (§1)", () => {
  test("/proxy: a 100000-byte poll is read and parked; 100001 bytes and more get 400", async () => {
    const sid = newSid();
    const body = padTo(pollBody(sid, { nat: "open" }), READ_LIMIT);
    assert.equal(Buffer.byteLength(body), READ_LIMIT);
    const pending = b.post("/proxy", body);
    await b.waitSessions(1);
    for (const size of [READ_LIMIT + 1, 1_000_000]) {
      assertEmpty(await b.post("/proxy", padTo(pollBody(newSid()), size)), 400, { cors: true });
    }
    assert.equal(await b.sessions(), 1);
    const offer = offerJson();
    const client = b.client(offer, { nat: "restricted" });
    assertText(await pending, 200, clientMatch(offer, "restricted"), { cors: true });
    assertText(await b.answer(sid, answerJson()), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answerJson()));
  });

  test("a body that never ends gets 400 soon after it passes the limit, and parked polls are kept", async () => {
    const sid = newSid();
    const pending = b.post("/proxy", pollBody(sid, { nat: "open" }));
    await b.waitSessions(1);
    // 150000 bytes with no Content-Length, then a stream that never ends: only a running
    // cap answers it (reading it whole would wait for ever); the rest is drained ~1 s.
    const endless = () => new ReadableStream({ start: (c) => c.enqueue(new Uint8Array(150_000).fill(0x20)) });
    const refused = await Promise.all(["/proxy", "/client", "/answer"].map((path) => b.post(path, endless())));
    for (const res of refused) assertEmpty(res, 400, { cors: true });
    assert.equal(await b.sessions(), 1, "the parked poll survived");
    const offer = offerJson();
    const client = b.client(offer, { nat: "restricted" });
    assertText(await pending, 200, clientMatch(offer, "restricted"), { cors: true });
    assertText(await b.answer(sid, answerJson()), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answerJson()));
  });

  test("a Content-Length over the limit gets 400 before the body is sent", async () => {
    const { hostname, port } = new URL(b.url);
    const reply = await new Promise((resolve, reject) => {
      const socket = net.connect(Number(port), hostname, () => {
        socket.write("POST /proxy HTTP/1.1\r\nHost: broker.test\r\nContent-Length: 2147483648\r\n\r\n{");
      });
      let data = "";
      socket.on("data", (d) => {
        data += d;
        if (data.includes("\r\n\r\n")) {
          socket.destroy();
          resolve(data);
        }
      });
      socket.on("error", reject);
      setTimeout(() => {
        socket.destroy();
        resolve(data);
      }, 5000);
    });
    assert.match(reply, /^HTTP\/1\.1 400 /, reply);
  });

  test("/client (1.0): 100000 bytes are read; 100001 bytes get 400 with an empty body, not a JSON error", async () => {
    const body = padTo(clientBody(offerJson()), READ_LIMIT);
    assertText(await b.post("/client", body), 200, NO_PROXIES, { cors: true });
    assertEmpty(await b.post("/client", padTo(clientBody(offerJson()), READ_LIMIT + 1)), 400, { cors: true });
    assertEmpty(await b.post("/client", Buffer.alloc(READ_LIMIT + 1)), 400, { cors: true });
    assertEmpty(await b.post("/client", binary(2_000_000)), 400, { cors: true });
  });

  test("/client (legacy): 100000 bytes are read; 100001 bytes get 400", async () => {
    assertEmpty(await b.legacy(padTo(offerJson(), READ_LIMIT), "restricted"), 503, { cors: true });
    assertEmpty(await b.legacy(padTo(offerJson(), READ_LIMIT + 1), "restricted"), 400, { cors: true });
  });

  test("/answer: 100000 bytes are read; 100001 bytes get 400 (§9 #18)", async () => {
    assertText(await b.post("/answer", padTo(answerBody("unseen", answerJson()), READ_LIMIT)), 200, CLIENT_GONE, { cors: true });
    assertEmpty(await b.post("/answer", padTo(answerBody("unseen", answerJson()), READ_LIMIT + 1)), 400, { cors: true });
    assertEmpty(await b.post("/answer", Buffer.alloc(READ_LIMIT + 1)), 400, { cors: true });
  });

  test("an offer and an answer as large as the limit allows pass through intact", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "open" });
    // Fill the offer's SDP so that the whole 1.0 body is exactly 100000 bytes.
    const build = (fill) => JSON.stringify({ type: "offer", sdp: sdp("offer", "big") + `a=x-fill:${fill}\r\n` });
    const room = READ_LIMIT - Buffer.byteLength(clientBody(build(""), { nat: "restricted" }));
    const offer = build("f".repeat(room));
    const body = clientBody(offer, { nat: "restricted" });
    assert.equal(Buffer.byteLength(body), READ_LIMIT);
    const client = b.post("/client", body);
    const poll = await parked.response;
    assertText(poll, 200, clientMatch(offer, "restricted"), { cors: true });
    const answer = JSON.stringify({ type: "answer", sdp: sdp("answer", "big") + "a=x-fill:" + "g".repeat(90000) + "\r\n" });
    assertText(await b.answer(sid, answer), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answer), { cors: true });
  });
});

describe("bad input never disturbs other parked requests", () => {
  test("garbage to every endpoint, while one proxy polls and another's client waits for its answer", async () => {
    // `busy` reports less load, so the client gets it; `polling` keeps waiting.
    const busy = newSid("busy");
    const polling = newSid("polling");
    const busyPoll = await b.park({ sid: busy, nat: "open", clients: 0 });
    const stillPolling = await b.park({ sid: polling, nat: "open", clients: 8 });
    const offer = offerJson("pair");
    const client = b.client(offer, { nat: "restricted" });
    assertText(await busyPoll.response, 200, clientMatch(offer, "restricted"), { cors: true });

    const goodPoll = (sid) => pollBody(sid, { nat: "open" });
    // [path, body, status, exact body or undefined]
    const cases = {
      "/proxy binary": ["/proxy", binary(4096), 400, ""],
      "/proxy brace then binary": ["/proxy", Buffer.from([0x7b, 0xff, 0xfe, 0x00]), 400, ""],
      "/proxy truncated": ["/proxy", '{"Sid":', 400, ""],
      "/proxy array": ["/proxy", "[]", 400, ""],
      "/proxy null": ["/proxy", "null", 400, ""],
      "/proxy polling Sid, version 2": ["/proxy", JSON.stringify({ Sid: polling, Version: "2.0", NAT: "open", AcceptedRelayPattern: "" }), 400, ""],
      "/proxy busy Sid, bad NAT": ["/proxy", JSON.stringify({ Sid: busy, Version: "1.3", NAT: "cone", AcceptedRelayPattern: "" }), 400, ""],
      "/proxy polling Sid, Clients string": ["/proxy", JSON.stringify({ Sid: polling, Version: "1.3", NAT: "open", Clients: "x", AcceptedRelayPattern: "" }), 400, ""],
      "/proxy polling Sid, bad pattern": ["/proxy", JSON.stringify({ Sid: polling, Version: "1.3", NAT: "open", AcceptedRelayPattern: "^evil.example$" }), 200, BAD_PATTERN],
      "/proxy busy Sid, no pattern": ["/proxy", JSON.stringify({ Sid: busy, Version: "1.3", NAT: "open" }), 200, BAD_PATTERN],
      "/proxy 100001 bytes, polling Sid": ["/proxy", padTo(goodPoll(polling), READ_LIMIT + 1), 400, ""],
      "/proxy 300 kB binary": ["/proxy", binary(300_000, 7), 400, ""],
      "/client binary": ["/client", binary(4096), 200, clientError("unsupported message version")],
      "/client 1.0 then binary": ["/client", Buffer.concat([Buffer.from("1.0\n"), binary(512, 3)]), 200, undefined],
      "/client legacy binary": ["/client", Buffer.from([0x7b, 0x00, 0xff]), 400, ""],
      "/client legacy {test}": ["/client", "{test}", 400, ""],
      "/client 1.0 truncated": ["/client", "1.0\n{", 200, clientError("unexpected end of JSON input")],
      "/client fake offer": ["/client", clientBody("fake"), 200, undefined],
      "/client bad NAT": ["/client", clientBody(offerJson(), { nat: "cone" }), 200, clientError("invalid NAT type")],
      "/client bad fingerprint": ["/client", clientBody(offerJson(), { fingerprint: "123" }), 200, clientError("cannot decode fingerprint")],
      "/client unknown bridge": ["/client", clientBody(offerJson(), { fingerprint: "2B280B23E1107BB62ABFC40DDCC8824814F80B00" }), 200, UNKNOWN_BRIDGE],
      "/client 100001 bytes": ["/client", padTo(clientBody(offerJson()), READ_LIMIT + 1), 400, ""],
      "/answer binary": ["/answer", binary(4096), 400, ""],
      "/answer not JSON": ["/answer", "a=candidate", 400, ""],
      "/answer busy Sid, answer not SDP": ["/answer", answerBody(busy, "test answer a=candidate"), 400, ""],
      "/answer busy Sid, no candidate": ["/answer", answerBody(busy, answerJson("x", { candidate: false })), 400, ""],
      "/answer busy Sid, version 2": ["/answer", answerBody(busy, answerJson(), "2.0"), 400, ""],
      "/answer busy Sid, Answer number": ["/answer", JSON.stringify({ Version: "1.3", Sid: busy, Answer: 5, Pad: "a=candidate" }), 400, ""],
      "/answer polling Sid": ["/answer", answerBody(polling, answerJson("stale")), 200, CLIENT_GONE],
      "/answer unseen Sid": ["/answer", answerBody("unseen", answerJson()), 200, CLIENT_GONE],
      "/answer 100001 bytes, busy Sid": ["/answer", padTo(answerBody(busy, answerJson()), READ_LIMIT + 1), 400, ""],
      "/debug binary": ["/debug", binary(1024), 200, undefined],
      "/robots.txt binary": ["/robots.txt", binary(1024), 200, ROBOTS],
      "/metrics binary": ["/metrics", binary(1024), null, undefined],
      "/prometheus binary": ["/prometheus", binary(1024), null, undefined],
      "/nowhere binary": ["/nowhere", binary(1024), 404, NOT_FOUND],
      "//proxy a good poll": ["//proxy", goodPoll(polling), 301, ""],
      "/amp/client": ["/amp/client", "", 301, ""],
    };
    const results = await Promise.all(Object.entries(cases).map(async ([name, [path, body, status, text]]) => [name, status, text, await b.post(path, body)]));
    for (const [name, status, text, res] of results) {
      if (name.startsWith("/metrics")) assertMetricsResponse(res);
      else if (name.startsWith("/prometheus")) assertPrometheusResponse(res);
      else assert.equal(res.status, status, `${name}: ${res}`);
      if (text !== undefined) assert.equal(res.text, text, `${name}: ${res}`);
      if (name.startsWith("/client") && status === 200) assert.match(res.text, /^\{"error":"[^"]/, `${name}: ${res}`);
    }

    assert.equal(await b.sessions(), 2, "one proxy still polling, one still answering");
    // The waiting client still gets its proxy's answer ...
    const answer = answerJson("pair");
    assertText(await b.answer(busy, answer), 200, SUCCESS, { cors: true });
    assertText(await client, 200, clientAnswer(answer), { cors: true });
    // ... and the polling proxy is still there for the next client.
    const offer2 = offerJson("next");
    const client2 = b.client(offer2, { nat: "unknown" });
    assertText(await stillPolling.response, 200, clientMatch(offer2, "unknown"), { cors: true });
    assertText(await b.answer(polling, answerJson("next")), 200, SUCCESS);
    assertText(await client2, 200, clientAnswer(answerJson("next")));
  });
});

describe("odd Sids", () => {
  test("any non-empty string of at most 256 bytes is a Sid: quotes, backslashes, control characters, non-ASCII", async () => {
    const sids = ['a"b\\c', "line\nbreak\ttab", "\u2028\u2029<&>", "日本語🙂", " ", "x".repeat(256), "🙂".repeat(64), "null"];
    for (const sid of sids) {
      const parked = await b.park({ sid, nat: "open" });
      const offer = offerJson();
      const client = b.client(offer, { nat: "restricted" });
      assertText(await parked.response, 200, clientMatch(offer, "restricted"), { cors: true });
      assertText(await b.answer(sid, answerJson("odd")), 200, SUCCESS, { cors: true });
      assertText(await client, 200, clientAnswer(answerJson("odd")));
    }
  });

  test("a Sid over 256 bytes gets 400 on /proxy and /answer, and costs nothing parked", async () => {
    for (const sid of ["x".repeat(257), "🙂".repeat(64) + "x", "x".repeat(99_000)]) {
      assertEmpty(await b.post("/proxy", pollBody(sid, { nat: "open" })), 400, { cors: true });
      assertEmpty(await b.post("/answer", answerBody(sid, answerJson())), 400, { cors: true });
    }
    assert.equal(await b.sessions(), 0);
  });

  test("invalid UTF-8 in a Sid is read as U+FFFD on both sides, as Go reads it", async () => {
    const raw = (json) => Buffer.from(json.replace("@SID@", "\u0000"), "utf8");
    const withBadBytes = (text) => {
      const buf = raw(text);
      const at = buf.indexOf(0);
      return Buffer.concat([buf.subarray(0, at), Buffer.from([0x61, 0xff, 0xfe, 0x62]), buf.subarray(at + 1)]);
    };
    const pending = b.post("/proxy", withBadBytes(JSON.stringify({ Sid: "@SID@", Version: "1.3", NAT: "open", AcceptedRelayPattern: "" })));
    await b.waitSessions(1);
    const offer = offerJson();
    const client = b.client(offer, { nat: "restricted" });
    assertText(await pending, 200, clientMatch(offer, "restricted"), { cors: true });
    // The same bytes, or the same text with the replacement characters, name the same session.
    const answer = answerJson();
    assertText(await b.post("/answer", answerBody("a\ufffd\ufffdb", answer)), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answer));
  });
});

describe("invalid UTF-8 in offers", () => {
  test("each invalid byte becomes U+FFFD in the offer the proxy receives, in both client formats (Go's decoder and encoder)", async () => {
    const offerWith = (text) => JSON.stringify({ type: "offer", sdp: sdp("offer", text) });
    const splice = (body) => {
      const at = body.indexOf("@BAD@");
      return Buffer.concat([Buffer.from(body.slice(0, at)), Buffer.from([0xff, 0xe2, 0x82]), Buffer.from(body.slice(at + 5))]);
    };
    for (const legacy of [false, true]) {
      const sid = newSid();
      const parked = await b.park({ sid, nat: "open" });
      const raw = legacy ? offerWith("@BAD@") : clientBody(offerWith("@BAD@"), { nat: "restricted" });
      const client = legacy ? b.legacy(splice(raw), "restricted") : b.post("/client", splice(raw));
      const expected = offerWith("\ufffd\ufffd\ufffd");
      assertText(await parked.response, 200, clientMatch(expected, "restricted"), { cors: true });
      assertText(await b.answer(sid, answerJson()), 200, SUCCESS);
      assertText(await client, 200, legacy ? answerJson() : clientAnswer(answerJson()), { cors: true });
    }
  });
});

describe("concurrency", () => {
  test("30 proxies and 30 clients at once: every client gets the answer to its own offer", async () => {
    const n = 30;
    const sids = Array.from({ length: n }, () => newSid("burst"));
    const polls = sids.map((sid) => b.proxy({ sid, nat: "open", clients: Math.floor(Math.random() * 3) * 8 }));
    await b.waitSessions(n);
    const proxyDone = polls.map(async (p, i) => {
      const res = await p;
      const m = res.json();
      assert.equal(m.Status, "client match", res.toString());
      const tag = /a=x-test:(\S+)/.exec(JSON.parse(m.Offer).sdp)[1];
      assertText(await b.answer(sids[i], answerJson(tag)), 200, SUCCESS);
      return tag;
    });
    const tags = Array.from({ length: n }, (_, i) => `client-${i}`);
    const clients = await Promise.all(tags.map((tag) => b.client(offerJson(tag), { nat: "restricted" })));
    clients.forEach((res, i) => assertText(res, 200, clientAnswer(answerJson(tags[i])), { cors: true }));
    const served = await Promise.all(proxyDone);
    assert.deepEqual([...served].sort(), [...tags].sort(), "each offer went to exactly one proxy");
    assert.equal(await b.sessions(), 0);
  });
});

describe("a flood from one address (MAX_POLLS_PER_ADDRESS, default 10)", () => {
  // The bound is per shard (README, "Choosing MATCHER_SHARDS"): one shard here, so 10 in all.
  let b;
  before(async () => {
    b = await startBroker({ PROXY_POLL_TIMEOUT_MS: "3000", CLIENT_TIMEOUT_MS: "3000", MATCHER_SHARDS: "1" });
  });
  after(() => b?.close());
  test("600 polls from one address park 10; honest proxies still park, and once the flood's 10 are taken the next client gets an honest proxy", async () => {
    const attacker = { headers: { "CF-Connecting-IP": "203.0.113.66" } };
    const answered = new Map();
    const flood = Array.from({ length: 600 }, (_, i) => {
      const p = b.proxy({ sid: newSid("flood"), nat: "unrestricted" }, attacker);
      p.then((res) => answered.set(i, res));
      return p;
    });
    await b.waitSessions(10);
    const honestSid = newSid("honest");
    const honest = b.proxy({ sid: honestSid, nat: "unrestricted" });
    await b.waitSessions(11);
    // Every poll beyond the 10 is answered at once, as one beyond MAX_PARKED_POLLS is.
    for (const deadline = Date.now() + 3000; answered.size < 590 && Date.now() < deadline; ) await sleep(5);
    assert.equal(answered.size, 590);
    for (const res of answered.values()) assertText(res, 200, noMatch(60000), { cors: true });
    // The flood's 10 parked polls are older, so the first 10 clients go to them; while those
    // clients wait for answers that never come, the address may not park more.
    const parked = flood.filter((_, i) => !answered.has(i));
    const wasted = Array.from({ length: 10 }, (_, i) => b.client(offerJson(`wasted-${i}`), { nat: "unrestricted" }));
    for (const res of await Promise.all(parked)) assert.equal(res.json().Status, "client match", `${res}`);
    const more = await b.proxy({ sid: newSid("flood"), nat: "unrestricted" }, attacker);
    assertText(more, 200, noMatch(60000), { cors: true });
    const offer = offerJson("honest");
    const client = b.client(offer, { nat: "unrestricted" });
    assertText(await honest, 200, clientMatch(offer, "unrestricted"), { cors: true });
    assertText(await b.answer(honestSid, answerJson("honest")), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answerJson("honest")));
    for (const res of await Promise.all(wasted)) assertText(res, 200, TIMED_OUT);
  });
});

describe("match versus timeout is atomic (docs/design.md §2.1)", () => {
  let t;
  const POLL = 300;
  before(async () => {
    t = await startBroker({ PROXY_POLL_TIMEOUT_MS: String(POLL), CLIENT_TIMEOUT_MS: "2000" });
  });
  after(() => t?.close());

  test("clients arriving around the proxies' deadline are either matched and answered or denied, never handed to a poll that already ended", async () => {
    const n = 24;
    const sids = Array.from({ length: n }, () => newSid("edge"));
    const proxies = sids.map(async (sid) => {
      const res = await t.proxy({ sid, nat: "open" });
      if (res.text === noMatch()) return null;
      const m = res.json();
      assert.equal(m.Status, "client match", res.toString());
      const tag = /a=x-test:(\S+)/.exec(JSON.parse(m.Offer).sdp)[1];
      assertText(await t.answer(sid, answerJson(tag)), 200, SUCCESS);
      return tag;
    });
    await t.waitSessions(n);
    // Spread the clients over the window in which the polls time out (deadline buckets of 100 ms).
    const clients = Array.from({ length: n }, async (_, i) => {
      await sleep(POLL - 120 + i * 12);
      const tag = `edge-client-${i}`;
      const res = await t.client(offerJson(tag), { nat: "restricted" });
      return [tag, res];
    });
    const outcomes = await Promise.all(clients);
    const served = (await Promise.all(proxies)).filter((x) => x !== null);
    let answered = 0;
    for (const [tag, res] of outcomes) {
      assert.notEqual(res.text, TIMED_OUT, `${tag} was matched to a poll that never saw its offer`);
      if (res.text === NO_PROXIES) continue;
      assertText(res, 200, clientAnswer(answerJson(tag)), { cors: true });
      answered += 1;
    }
    assert.equal(answered, served.length, "every offer a proxy received was answered to its client");
    await t.waitIdle();
  });
});
