// Settings (docs/design.md §2.3): BRIDGE_LIST, ALLOWED_RELAY_PATTERN / DEFAULT_RELAY_PATTERN,
// NEXT_POLL_MS, MAX_PARKED_POLLS, and what a malformed setting does: never a crash, a 500 for
// matching requests, an explanation on /debug.
// docs/protocol.md §4.1-§4.3, §9 #36, #39, #52; docs/design.md §2.1-§2.3, §3.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  BAD_PATTERN,
  EMPTY_DEBUG,
  NOT_FOUND,
  NO_PROXIES,
  ROBOTS,
  SUCCESS,
  UNKNOWN_BRIDGE,
  answerJson,
  assertEmpty,
  assertMetricsResponse,
  assertText,
  clientAnswer,
  clientMatch,
  debugText,
  newSid,
  noMatch,
  offerJson,
  pollBody,
  sleep,
  startBroker,
} from "./harness.mjs";

/** Parks an open proxy, sends the client `fields`, checks the proxy's exact poll response, answers. */
async function rendezvous(b, fields, { relay, nextPoll } = {}) {
  const sid = newSid();
  const parked = await b.park({ sid, nat: "open" });
  const offer = offerJson(sid);
  const client = b.client(offer, fields);
  assertText(await parked.response, 200, clientMatch(offer, fields.nat ?? "unknown", { relay, nextPoll }), { cors: true });
  const answer = answerJson(sid);
  assertText(await b.answer(sid, answer), 200, SUCCESS, { cors: true });
  assertText(await client, 200, clientAnswer(answer), { cors: true });
}

describe("a malformed setting never crashes the Worker (docs/design.md §2.3)", () => {
  const broken = {
    "BRIDGE_LIST {": [{ BRIDGE_LIST: "{" }, "BRIDGE_LIST", null],
    "PROXY_POLL_TIMEOUT_MS ten": [{ PROXY_POLL_TIMEOUT_MS: "ten" }, "PROXY_POLL_TIMEOUT_MS", 'setting PROXY_POLL_TIMEOUT_MS is invalid: "ten" is not a whole number'],
    "CLIENT_TIMEOUT_FROM now": [{ CLIENT_TIMEOUT_FROM: "now" }, "CLIENT_TIMEOUT_FROM", null],
    "MAX_PARKED_POLLS 0": [{ MAX_PARKED_POLLS: "0" }, "MAX_PARKED_POLLS", null],
    "PROXY_POLL_INTERVAL_MS strict=often": [
      { PROXY_POLL_INTERVAL_MS: "strict=often" },
      "PROXY_POLL_INTERVAL_MS",
      'setting PROXY_POLL_INTERVAL_MS is invalid: "often" is not a whole number of milliseconds',
    ],
    // The old name was accepted and did nothing; a deployment still setting it is told so.
    "PROXY_POLL_RATE_LIMIT (removed)": [
      { PROXY_POLL_RATE_LIMIT: "10" },
      "PROXY_POLL_RATE_LIMIT",
      "setting PROXY_POLL_RATE_LIMIT is invalid: this setting was removed: it was never in effect; N's per-address limit is now PROXY_POLL_INTERVAL_MS (milliseconds, e.g. 20000)",
    ],
    "BRIDGE_LIST with an unknown key": [
      { BRIDGE_LIST: '{"displayName":"x","webSocketAddress":"wss://x/","fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72","extra":1}' },
      "BRIDGE_LIST",
      null,
    ],
  };
  const brokers = {};
  before(async () => {
    const started = await Promise.all(Object.values(broken).map(([settings]) => startBroker(settings)));
    Object.keys(broken).forEach((name, i) => (brokers[name] = started[i]));
  });
  after(() => Promise.all(Object.values(brokers).map((b) => b.close())));

  for (const [name, [, setting, exact]] of Object.entries(broken)) {
    test(`${name}: /proxy, /client and /answer get 500 naming the setting; /debug explains it; the rest still works`, async () => {
      const b = brokers[name];
      const prefix = `setting ${setting} is invalid: `;
      const requests = {
        "valid poll": () => b.proxy({ sid: newSid() }),
        "garbage poll": () => b.post("/proxy", "\x00garbage"),
        "1.0 client": () => b.client(offerJson()),
        "legacy client": () => b.legacy(offerJson(), "restricted"),
        answer: () => b.answer(newSid(), answerJson()),
      };
      let message;
      for (const [what, send] of Object.entries(requests)) {
        const res = await send();
        assertText(res, 500, /^broker misconfigured: setting \S+ is invalid: .+\n$/, { cors: true });
        assert.ok(res.text.startsWith(`broker misconfigured: ${prefix}`), `${what}: ${res}`);
        if (exact) assert.equal(res.text, `broker misconfigured: ${exact}\n`);
        message ??= res.text.slice("broker misconfigured: ".length, -1);
        assert.equal(res.text, `broker misconfigured: ${message}\n`, `${what}: the same message every time`);
      }
      // /debug: still 200, with the same explanation after R's text.
      assertText(await b.get("/debug"), 200, `${EMPTY_DEBUG}\nconfiguration error: ${message}`, { cors: true });
      assertText(await b.get("/robots.txt"), 200, ROBOTS, { cors: false });
      assertText(await b.get("/nowhere"), 404, NOT_FOUND, { cors: false });
      assertMetricsResponse(await b.get("/metrics"));
      assertEmpty(await b.request("OPTIONS", "/proxy"), 200, { cors: true });
      // One clear message in the log, however many requests met the problem.
      const mentions = () => b.logs.filter((line) => line.includes(prefix));
      for (let i = 0; i < 50 && mentions().length === 0; i++) await sleep(10);
      await sleep(50);
      assert.equal(mentions().length, 1, `log lines naming ${setting}:\n${b.logs.join("\n")}`);
      assert.ok(mentions()[0].includes(message), mentions()[0]);
    });
  }
});

describe("BRIDGE_LIST", () => {
  const imaginary = [
    '{"displayName":"default", "webSocketAddress":"wss://snowflake.torproject.net", "fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80A72"}',
    ...Array.from(
      { length: 10 },
      (_, i) => `{"displayName":"imaginary-${i}", "webSocketAddress":"wss://imaginary-${i}-snowflake.torproject.org", "fingerprint":"2B280B23E1107BB62ABFC40DDCC8824814F80B0${i}"}`,
    ),
    // 32-byte fingerprints, keys in any case, a later duplicate overwriting an earlier one.
    `{"DisplayName":"long","WEBSOCKETADDRESS":"wss://long.example/","fingerprint":"${"ab".repeat(32)}"}`,
    '{"displayName":"dup","webSocketAddress":"wss://second-9.example/","fingerprint":"2b280b23e1107bb62abfc40ddcc8824814f80b09"}',
    "", // a trailing blank line, as a TOML multi-line string leaves
  ].join("\n");
  let b;
  let noDefault;
  before(async () => {
    [b, noDefault] = await Promise.all([
      startBroker({ BRIDGE_LIST: imaginary, PROXY_POLL_TIMEOUT_MS: "3000", CLIENT_TIMEOUT_MS: "3000" }),
      startBroker({
        BRIDGE_LIST: '{"displayName":"second","webSocketAddress":"wss://02.snowflake.torproject.net","fingerprint":"8838024498816A039FCBBAB14E6F40A0843051FA"}',
        PROXY_POLL_TIMEOUT_MS: "3000",
        CLIENT_TIMEOUT_MS: "3000",
      }),
    ]);
  });
  after(() => Promise.all([b?.close(), noDefault?.close()]));

  test("the client's fingerprint selects the RelayURL the proxy gets (§9 #52)", async () => {
    await rendezvous(b, { fingerprint: "2B280B23E1107BB62ABFC40DDCC8824814F80B07" }, { relay: "wss://imaginary-7-snowflake.torproject.org" });
    await rendezvous(b, { fingerprint: "2b280b23e1107bb62abfc40ddcc8824814f80b00", nat: "restricted" }, { relay: "wss://imaginary-0-snowflake.torproject.org" });
    await rendezvous(b, { fingerprint: "AB".repeat(32) }, { relay: "wss://long.example/" });
    await rendezvous(b, { fingerprint: "2B280B23E1107BB62ABFC40DDCC8824814F80B09" }, { relay: "wss://second-9.example/" });
    // No fingerprint means the default bridge, as this list spells its address.
    await rendezvous(b, {}, { relay: "wss://snowflake.torproject.net" });
    assert.equal(await b.debug(), EMPTY_DEBUG, "no warning or error for a valid list");
  });

  test("a well-formed fingerprint not in the list: 200 bridge … unknown (N), and no proxy is spent (§9 #36)", async () => {
    const sid = newSid();
    const parked = await b.park({ sid, nat: "open" });
    for (const fingerprint of ["2B280B23E1107BB62ABFC40DDCC8824814F80B10", "CD".repeat(32)]) {
      assertText(await b.client(offerJson(), { fingerprint }), 200, UNKNOWN_BRIDGE, { cors: true });
    }
    assert.equal(await b.sessions(), 1);
    const offer = offerJson();
    const client = b.client(offer, { fingerprint: "2B280B23E1107BB62ABFC40DDCC8824814F80B03" });
    assertText(await parked.response, 200, clientMatch(offer, "unknown", { relay: "wss://imaginary-3-snowflake.torproject.org" }), { cors: true });
    assertText(await b.answer(sid, answerJson()), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answerJson()));
  });

  test("a list replaces the default bridge: clients naming none are told it is unknown, legacy clients get 500", async () => {
    const b = noDefault;
    const sid = newSid();
    const parked = await b.park({ sid, nat: "open" });
    assertText(await b.client(offerJson(), {}), 200, UNKNOWN_BRIDGE, { cors: true });
    assertText(await b.client(offerJson(), { fingerprint: "2B280B23E1107BB62ABFC40DDCC8824814F80A72" }), 200, UNKNOWN_BRIDGE, { cors: true });
    assertEmpty(await b.legacy(offerJson(), "restricted"), 500, { cors: true });
    assert.equal(await b.sessions(), 1, "no proxy spent");
    const offer = offerJson();
    const client = b.client(offer, { fingerprint: "8838024498816a039fcbbab14e6f40a0843051fa" });
    assertText(await parked.response, 200, clientMatch(offer, "unknown", { relay: "wss://02.snowflake.torproject.net" }), { cors: true });
    assertText(await b.answer(sid, answerJson()), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answerJson()));
  });
});

describe("ALLOWED_RELAY_PATTERN and DEFAULT_RELAY_PATTERN (§4.3)", () => {
  const POLL = 300;
  const configs = {
    "allowed ^snowflake.torproject.net$, default ^snowflake.torproject.net$": {
      settings: { ALLOWED_RELAY_PATTERN: "^snowflake.torproject.net$", DEFAULT_RELAY_PATTERN: "^snowflake.torproject.net$" },
      accepted: ["snowflake.torproject.net$", "^snowflake.torproject.net$", "^snowflake.torproject.net", "torproject.net$", "", undefined, null],
      refused: ["^torproject.net$", "xsnowflake.torproject.net$", "^other.example$", "^"],
    },
    "allowed testing-snowflake.torproject.net$, default snowflake.torproject.net$": {
      settings: { ALLOWED_RELAY_PATTERN: "testing-snowflake.torproject.net$", DEFAULT_RELAY_PATTERN: "snowflake.torproject.net$" },
      accepted: ["snowflake.torproject.net$", "testing-snowflake.torproject.net$", "-snowflake.torproject.net", undefined, null],
      refused: ["^testing-snowflake.torproject.net$", "other-snowflake.torproject.net$", "^snowflake.torproject.net$"],
    },
    "allowed $ (the empty pattern, R without a bridge list), default ^other.example$": {
      settings: { ALLOWED_RELAY_PATTERN: "$", DEFAULT_RELAY_PATTERN: "^other.example$" },
      accepted: ["", "$"],
      refused: ["snowflake.torproject.net$", "net", "^other.example$", undefined, null],
    },
    "allowed empty (= unset: the default snowflake.torproject.net$), default empty (= unset)": {
      settings: { ALLOWED_RELAY_PATTERN: "", DEFAULT_RELAY_PATTERN: "" },
      accepted: ["snowflake.torproject.net$", ""],
      refused: ["^snowflake.torproject.net$", undefined, null],
    },
  };
  const brokers = {};
  before(async () => {
    const started = await Promise.all(
      Object.values(configs).map(({ settings }) => startBroker({ ...settings, PROXY_POLL_TIMEOUT_MS: String(POLL) })),
    );
    Object.keys(configs).forEach((name, i) => (brokers[name] = started[i]));
  });
  after(() => Promise.all(Object.values(brokers).map((b) => b.close())));

  for (const [name, { accepted, refused }] of Object.entries(configs)) {
    test(name, async () => {
      const b = brokers[name];
      const polls = [...accepted.map((p) => [p, true]), ...refused.map((p) => [p, false])];
      const results = await Promise.all(polls.map(async ([pattern, ok]) => [pattern, ok, await b.proxy({ sid: newSid(), pattern })]));
      for (const [pattern, ok, res] of results) {
        const label = `pattern ${JSON.stringify(pattern) ?? "absent"}: ${res}`;
        assert.equal(res.text, ok ? noMatch() : BAD_PATTERN, label);
        assertText(res, 200, ok ? noMatch() : BAD_PATTERN, { cors: true });
        if (ok) assert.ok(res.ms >= POLL - 10, `${label}: held`);
        else assert.ok(res.ms < POLL, `${label}: answered at once`);
      }
    });
  }
});

describe("NEXT_POLL_MS and MAX_PARKED_POLLS", () => {
  let b;
  before(async () => {
    // MAX_PARKED_POLLS is per shard: one shard here, so 2 in all.
    b = await startBroker({ NEXT_POLL_MS: "1234", MAX_PARKED_POLLS: "2", PROXY_POLL_TIMEOUT_MS: "800", CLIENT_TIMEOUT_MS: "3000", MATCHER_SHARDS: "1" });
  });
  after(() => b?.close());

  test("NEXT_POLL_MS is the NextPoll of no match and client match; incorrect relay pattern keeps 3600000", async () => {
    assertText(await b.proxy({ sid: newSid() }), 200, noMatch(1234), { cors: true });
    await rendezvous(b, { nat: "restricted" }, { nextPoll: 1234 });
    assertText(await b.proxy({ sid: newSid(), pattern: "^x$" }), 200, BAD_PATTERN, { cors: true });
  });

  test("beyond MAX_PARKED_POLLS a poll gets no match at once with a longer NextPoll; a same-Sid replacement and matched proxies do not count", async () => {
    await b.waitIdle();
    const [s1, s2] = [newSid("one"), newSid("two")];
    const first = await b.park({ sid: s1, nat: "open" });
    const second = await b.park({ sid: s2, nat: "open" });
    const refused = await b.proxy({ sid: newSid() });
    // refused_next_poll_ms: max(3 × NEXT_POLL_MS, 30000).
    assertText(refused, 200, noMatch(30000), { cors: true });
    assert.ok(refused.ms < 500, `refused at once, not after ${refused.ms} ms`);
    assert.equal(await b.sessions(), 2);
    // Replacing s2's poll keeps the count at 2: accepted, and the old one ends.
    const replacement = b.proxy({ sid: s2, nat: "open" });
    const old = await second.response;
    assertText(old, 200, noMatch(1234), { cors: true });
    assert.ok(old.ms < 500, `ended at once, not after ${old.ms} ms`);
    await b.waitSessions(2);
    // A matched proxy is no longer parked: a new poll fits again.
    const offer = offerJson();
    const client = b.client(offer, { nat: "restricted" });
    assertText(await first.response, 200, clientMatch(offer, "restricted", { nextPoll: 1234 }), { cors: true });
    const third = b.proxy({ sid: newSid("three"), nat: "open" });
    await b.waitSessions(3);
    assertText(await b.answer(s1, answerJson()), 200, SUCCESS);
    assertText(await client, 200, clientAnswer(answerJson()));
    for (const res of await Promise.all([replacement, third])) assertText(res, 200, noMatch(1234), { cors: true });
  });
});

describe("past MAX_PARKED_POLLS, refusing costs no matcher request", () => {
  let b;
  before(async () => {
    b = await startBroker({ NEXT_POLL_MS: "1234", MAX_PARKED_POLLS: "2", PROXY_POLL_TIMEOUT_MS: "3000", MATCHER_SHARDS: "1" });
  });
  after(() => b?.close());

  /** How many /poll calls the one shard has served (snowflake_matcher_shard_requests_total). */
  async function shardPolls() {
    const text = (await b.get("/prometheus")).text;
    const line = text.split("\n").find((l) => l.startsWith('snowflake_matcher_shard_requests_total{call="poll",shard="0"} '));
    assert.ok(line, `no poll request count in\n${text}`);
    return Number(line.split(" ")[1]);
  }

  test("once the shard has said it is full, polls are refused in the Worker for a moment, with the same reply; a replacement under a parked Sid still reaches it", async () => {
    const s2 = newSid("two");
    await b.park({ sid: newSid("one"), nat: "open" });
    const second = await b.park({ sid: s2, nat: "open" });
    // Every reply from the shard (here the /prometheus read) says what it holds: full.
    const base = await shardPolls();
    // For the next second the Worker refuses by itself, byte for byte as the shard does.
    for (let i = 0; i < 6; i++) {
      const res = await b.proxy({ sid: newSid() });
      assertText(res, 200, noMatch(30000), { cors: true });
      assert.ok(res.ms < 500, `refused at once, not after ${res.ms} ms`);
    }
    assert.equal(await shardPolls(), base, "refused without a matcher request");
    // This isolate sent s2's poll: its replacement goes to the shard, which takes it.
    const replacement = b.proxy({ sid: s2, nat: "open" });
    assertText(await second.response, 200, noMatch(1234), { cors: true });
    assert.equal(await shardPolls(), base + 1);
    // Past the moment, the shard is asked again (and counts what was refused meanwhile).
    await sleep(1100);
    assertText(await b.proxy({ sid: newSid() }), 200, noMatch(30000), { cors: true });
    assert.equal(await shardPolls(), base + 2);
    assertText(await replacement, 200, noMatch(1234), { cors: true });
  });
});

describe("other settings", () => {
  let b;
  before(async () => {
    b = await startBroker({
      // wrangler also accepts numbers and booleans in [vars]: they are read as their text.
      PROXY_POLL_TIMEOUT_MS: 300,
      CLIENT_TIMEOUT_MS: 3000,
      UNSAFE_LOGGING: true,
      NEXT_POLL_MS: "  5000 ",
      TRUSTED_HOPS: "2",
      METRICS_PERIOD_SECONDS: "60",
      CLIENT_TIMEOUT_FROM: "match",
      MATCHER_SHARDS: "4",
      PROXY_POLL_INTERVAL_MS: " strict=3000,open=2000",
    });
  });
  after(() => b?.close());

  test("valid values in any [vars] form are accepted; /debug names the poll interval after R's layout", async () => {
    const res = await b.proxy({ sid: newSid() });
    assertText(res, 200, noMatch(5000), { cors: true });
    assert.ok(res.ms >= 290 && res.ms < 1000, `held ${res.ms} ms`);
    await rendezvous(b, { nat: "unrestricted" }, { nextPoll: 5000 });
    assertText(await b.client(offerJson(), {}), 200, NO_PROXIES);
    assert.equal(
      await b.debug(),
      `${EMPTY_DEBUG}\nproxy poll interval per address (PROXY_POLL_INTERVAL_MS): open 2000 ms, moderate unlimited, strict 3000 ms`,
    );
  });

  test("debugText helper sanity: the same layout as R for a populated broker", () => {
    assert.equal(
      debugText({ sessions: 1, types: { webext: 1 }, unknown: 1 }),
      "current snowflakes available: 1\n\twebext proxies: 1\n\tunknown proxies: 0\nNAT Types available:\n\trestricted: 0\n\tunrestricted: 0\n\tunknown: 1",
    );
    assert.equal(pollBody("s", { pattern: undefined }), '{"Sid":"s","Version":"1.3","Type":"standalone","NAT":"unknown","Clients":0}');
  });
});
