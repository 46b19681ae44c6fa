// Metrics of the built Worker over HTTP: docs/protocol.md §9's metrics cases with
// countries from request.cf and from the CDN's headers, short periods closed
// by the Durable Object's alarm, Prometheus text checked by promtool, and the
// counts surviving a restart on persisted storage.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { periodBegins, startBroker } from "./harness.mjs";

const PATTERN = "snowflake.torproject.net$";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// A broker with short timeouts. The tests use its Miniflare instance directly,
/// because they set `request.cf` per request.
async function broker(bindings = {}, persist) {
  const b = await startBroker(
    { PROXY_POLL_TIMEOUT_MS: "300", CLIENT_TIMEOUT_MS: "300", ...bindings },
    { persist: persist ?? false },
  );
  return b.mf;
}

const offer = (candidateIp) =>
  JSON.stringify({
    type: "offer",
    sdp: `v=0\r\na=candidate:1 1 udp 2130706431 ${candidateIp ?? "192.168.1.2"} 3000 typ host\r\n`,
  });

function poll(mf, { sid, type, nat = "unknown", ip = "129.97.208.23", country = "CA", pattern = PATTERN }) {
  const body = { Sid: sid, Version: "1.3", NAT: nat };
  if (type !== undefined) body.Type = type;
  if (pattern !== null) body.AcceptedRelayPattern = pattern; // null: send no pattern
  return mf.dispatchFetch("http://broker/proxy", {
    method: "POST",
    cf: { country },
    headers: { "CF-Connecting-IP": ip },
    body: JSON.stringify(body),
  });
}

function client(mf, { nat = "unknown", xff, forwarded } = {}) {
  const headers = xff ? { "X-Forwarded-For": xff } : {};
  if (forwarded) headers.Forwarded = forwarded;
  return mf.dispatchFetch("http://broker/client", {
    method: "POST",
    headers,
    body: "1.0\n" + JSON.stringify({ offer: offer(), nat }),
  });
}

/// Waits until /metrics holds at least `count` closed periods and returns them.
async function periods(mf, count, timeoutMs = 8000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await (await mf.dispatchFetch("http://broker/metrics")).text();
    const blocks = text.split(/(?=snowflake-stats-end )/).filter(Boolean);
    if (blocks.length >= count) return blocks;
    if (Date.now() > deadline) assert.fail(`only ${blocks.length} periods after ${timeoutMs} ms:\n${text}`);
    await sleep(100);
  }
}

const line = (block, name) => block.split("\n").find((l) => l.split(" ")[0] === name);

test("metrics: 200 with an empty body before the first period ends, with CORS", async () => {
  const mf = await broker();
  try {
    const r = await mf.dispatchFetch("http://broker/metrics");
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.equal(r.headers.get("access-control-allow-origin"), "*");
    assert.equal(await r.text(), "");
  } finally {
    await mf.dispose();
  }
});

test("metrics #40 #43: unique proxy IPs by country, type and NAT; idle polls binned", async () => {
  const mf = await broker({ METRICS_PERIOD_SECONDS: "2" });
  try {
    await periodBegins(2);
    // Four polls from one address as four types (one untyped), all idle.
    await Promise.all(
      [undefined, "standalone", "badge", "webext"].map((type, i) => poll(mf, { sid: `s40-${i}`, type })),
    );
    const [block] = await periods(mf, 1);
    assert.match(block, /^snowflake-stats-end \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(2 s\)\nsnowflake-ips CA=1\n/);
    assert.equal(line(block, "snowflake-ips-standalone"), "snowflake-ips-standalone 1");
    assert.equal(line(block, "snowflake-ips-badge"), "snowflake-ips-badge 1");
    assert.equal(line(block, "snowflake-ips-webext"), "snowflake-ips-webext 1");
    assert.equal(line(block, "snowflake-ips-total"), "snowflake-ips-total 1");
    assert.equal(line(block, "snowflake-idle-count"), "snowflake-idle-count 8");
    assert.equal(line(block, "snowflake-proxy-poll-with-relay-url-count"), "snowflake-proxy-poll-with-relay-url-count 8");
    assert.equal(line(block, "snowflake-proxy-poll-without-relay-url-count"), "snowflake-proxy-poll-without-relay-url-count 0");
    assert.equal(line(block, "snowflake-ips-nat-unknown"), "snowflake-ips-nat-unknown 1");
    assert.ok(block.endsWith("\n"));
  } finally {
    await mf.dispose();
  }
});

test("metrics #41 #42 #44 #45: denials by NAT, binning, NAT per IP, reset between periods", async () => {
  const mf = await broker({ METRICS_PERIOD_SECONDS: "2" });
  try {
    await periodBegins(2);
    await poll(mf, { sid: "r44", nat: "restricted", ip: "129.97.208.23" });
    await poll(mf, { sid: "u44", nat: "unrestricted", ip: "129.97.208.24", pattern: null });
    for (let i = 0; i < 9; i++) assert.match(await (await client(mf, { nat: "restricted" })).text(), /no snowflake proxies/);
    await client(mf, { nat: "unknown" });
    const [first] = await periods(mf, 1);
    // The unrestricted poll sent no pattern: counted, refused, not seen as an IP.
    assert.equal(line(first, "snowflake-proxy-rejected-for-relay-url-count"), "snowflake-proxy-rejected-for-relay-url-count 8");
    assert.equal(line(first, "snowflake-proxy-poll-without-relay-url-count"), "snowflake-proxy-poll-without-relay-url-count 8");
    assert.equal(line(first, "snowflake-ips-nat-restricted"), "snowflake-ips-nat-restricted 1");
    assert.equal(line(first, "snowflake-ips-nat-unrestricted"), "snowflake-ips-nat-unrestricted 0");
    assert.equal(line(first, "client-denied-count"), "client-denied-count 16");
    assert.equal(line(first, "client-restricted-denied-count"), "client-restricted-denied-count 16");
    assert.equal(line(first, "client-nat-unknown-denied-count"), "client-nat-unknown-denied-count 8");
    assert.equal(line(first, "client-unrestricted-denied-count"), "client-unrestricted-denied-count 0");
    const [, second] = await periods(mf, 2);
    assert.equal(line(second, "snowflake-ips"), "snowflake-ips ");
    assert.equal(line(second, "client-denied-count"), "client-denied-count 0");
  } finally {
    await mf.dispose();
  }
});

test("metrics: clients located from X-Forwarded-For (TRUSTED_HOPS) and AMP candidates", async () => {
  const mf = await broker({ METRICS_PERIOD_SECONDS: "2", TRUSTED_HOPS: "1" });
  try {
    await periodBegins(2);
    // The CDN appended the client's address; an entry before it is not trusted, and
    // neither is a `Forwarded` header (fronting CDNs write only X-Forwarded-For, so the
    // client wrote it: here it claims a US address).
    await client(mf, { xff: "8.8.8.8, 129.97.208.23", forwarded: "for=8.8.8.8" });
    const amp = "1.0\n" + JSON.stringify({ offer: offer("129.97.208.24"), nat: "unknown" });
    const path = "0aaaaaaaaaaaa/" + Buffer.from(amp).toString("base64url");
    const r = await mf.dispatchFetch(`http://broker/amp/client/${path}`);
    assert.equal(r.status, 200);
    const [block] = await periods(mf, 1);
    assert.equal(line(block, "client-http-count"), "client-http-count 8");
    assert.equal(line(block, "client-http-ips"), "client-http-ips CA=8");
    assert.equal(line(block, "client-ampcache-count"), "client-ampcache-count 8");
    assert.equal(line(block, "client-ampcache-ips"), "client-ampcache-ips CA=8");
  } finally {
    await mf.dispose();
  }
});

test("prometheus: N's families, rounded counters, no CORS, and promtool accepts it", async () => {
  const promtool = process.env.PROMTOOL;
  assert.ok(promtool, "PROMTOOL must name promtool (make test-worker sets it)");
  const mf = await broker();
  try {
    await poll(mf, { sid: "p1", nat: "unrestricted", type: "webext" });
    await client(mf, { nat: "restricted", xff: "129.97.208.23" });
    const r = await mf.dispatchFetch("http://broker/prometheus");
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    assert.equal(r.headers.get("access-control-allow-origin"), null);
    const text = await r.text();
    assert.match(text, /^# HELP snowflake_available_proxies The number of currently available snowflake proxies\n# TYPE snowflake_available_proxies gauge\n/);
    assert.match(text, /\nsnowflake_rounded_proxy_poll_total\{nat="unrestricted",status="idle",type="webext"\} 8\n/);
    assert.match(text, /\nsnowflake_rounded_client_poll_total\{cc="CA",nat="restricted",rendezvous_method="http",status="denied"\} 8\n/);
    assert.match(text, /\nsnowflake_proxy_total\{cc="CA",nat="unrestricted",type="webext"\} 1\n/);
    // Exits non-zero (and the test fails) on any problem it reports.
    execFileSync(promtool, ["check", "metrics"], { input: text, stdio: ["pipe", "pipe", "pipe"] });
  } finally {
    await mf.dispose();
  }
});

test("metrics: counts continue after a restart mid-period on persisted storage", async () => {
  const dir = mkdtempSync(join(tmpdir(), "do-"));
  const settings = { METRICS_PERIOD_SECONDS: "6" }; // saves every 750 ms
  try {
    let mf = await broker(settings, dir);
    await periodBegins(6);
    await poll(mf, { sid: "before", ip: "129.97.208.23" });
    for (let i = 0; i < 3; i++) await client(mf, { nat: "restricted" });
    await sleep(1500); // at least one save
    await mf.dispose();

    mf = await broker(settings, dir);
    try {
      // The same proxy again (still one unique IP) and a new one; more denials.
      await poll(mf, { sid: "after", ip: "129.97.208.23" });
      await poll(mf, { sid: "new", ip: "129.97.208.24", country: "DE" });
      for (let i = 0; i < 7; i++) await client(mf, { nat: "restricted" });
      const [block] = await periods(mf, 1, 12000);
      assert.equal(line(block, "snowflake-ips"), "snowflake-ips CA=1,DE=1");
      assert.equal(line(block, "snowflake-ips-total"), "snowflake-ips-total 2");
      // 3 before + 7 after = 10, binned to 16: the first 3 were not lost.
      assert.equal(line(block, "client-denied-count"), "client-denied-count 16");
      assert.equal(line(block, "snowflake-idle-count"), "snowflake-idle-count 8");
    } finally {
      await mf.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("metrics: what was counted just before a lull survives an eviction right after it (saved within ~1 s, not 30 s)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "do-"));
  try {
    // The default period saves every 30 s while requests are parked.
    let mf = await broker({}, dir);
    for (let i = 0; i < 9; i++) await client(mf, { nat: "restricted" });
    await sleep(1500); // idle: the save comes within a second
    await mf.dispose();
    mf = await broker({}, dir);
    try {
      const text = await (await mf.dispatchFetch("http://broker/prometheus")).text();
      // 9 denials, rounded up to 16.
      assert.match(text, /\nsnowflake_rounded_client_poll_total\{cc="\?\?",nat="restricted",rendezvous_method="http",status="denied"\} 16\n/, text);
    } finally {
      await mf.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("metrics: 2,000 proxy addresses are saved as rows and read back after a restart", async () => {
  const dir = mkdtempSync(join(tmpdir(), "do-"));
  const settings = { METRICS_PERIOD_SECONDS: "16" }; // idle: saved within a second
  const ip = (i) => `10.0.${i >> 8}.${i & 255}`;
  const polls = (mf, from, to) =>
    Promise.all(Array.from({ length: to - from }, (_, k) => poll(mf, { sid: `rows-${from + k}-${Math.random()}`, ip: ip(from + k) })));
  try {
    let mf = await broker(settings, dir);
    await periodBegins(16);
    const began = Date.now();
    await polls(mf, 0, 2000);
    await sleep(1500);
    await mf.dispose();
    mf = await broker(settings, dir);
    try {
      // 500 addresses seen before the restart and 500 new ones.
      await polls(mf, 1500, 2500);
      assert.ok(Date.now() - began < 15000, "the workload took longer than a period");
      const [block] = await periods(mf, 1, 15000);
      assert.equal(line(block, "snowflake-ips-total"), "snowflake-ips-total 2500");
      assert.equal(line(block, "snowflake-ips"), "snowflake-ips CA=2500");
    } finally {
      await mf.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
