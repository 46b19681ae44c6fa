// Shared helpers for the Miniflare tests of the built Worker (tests/worker/*.test.mjs).
//
// Every test talks to the Worker over HTTP only (black box): it starts a fresh broker with
// `startBroker(settings)`, sends requests with the builders below and checks status, headers
// and exact bytes. This file is not a test file (no `.test.` in its name).
//
// The Worker is the one `make build` produces (build/entry.mjs, build/index.js, build/index_bg.wasm).
// WORKER_BUILD_DIR=<dir> points the tests at another build of it.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net from "node:net";
import path from "node:path";
import readline from "node:readline";
import { Miniflare } from "miniflare";
import { ENTRY, REPO, behindEdge, miniflareOptions } from "../support/worker.mjs";

export { REPO };
export const BUILD_DIR = path.resolve(process.env.WORKER_BUILD_DIR ?? path.join(REPO, "build"));
/** The test-only build with the `fault-injection` feature (`make build-fault`). */
export const FAULT_BUILD_DIR = path.join(REPO, "build/fault");

export const TEXT_PLAIN = "text/plain; charset=utf-8";
export const DEFAULT_FP = "2B280B23E1107BB62ABFC40DDCC8824814F80A72";
export const DEFAULT_RELAY = "wss://snowflake.torproject.net/";
export const GO_PROXY_PATTERN = "snowflake.torproject.net$";
export const READ_LIMIT = 100000;
export const DEFAULT_NEXT_POLL = 20000;
export const BAD_PATTERN_NEXT_POLL = 3600000;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Starting and stopping a broker.

/**
 * Starts a fresh broker (its own Worker and matcher Durable Object) with these settings as
 * wrangler `[vars]` bindings. Values are passed as given (normally strings). `persist` names
 * a directory for the Durable Object's storage, so that a later broker can continue from it.
 */
export async function startBroker(settings = {}, { persist = false, edge = false, build = BUILD_DIR } = {}) {
  const script = path.join(build, ENTRY);
  // TEST_MATCHER_SHARDS runs a whole suite on that many shards (`make test-worker` runs the
  // HTTP suite so a second time); a test that sets MATCHER_SHARDS itself keeps its own.
  if (process.env.TEST_MATCHER_SHARDS && settings.MATCHER_SHARDS === undefined) {
    settings = { ...settings, MATCHER_SHARDS: process.env.TEST_MATCHER_SHARDS };
  }
  // The Worker's console output, line by line; echoed when WORKER_TEST_LOGS is set.
  const logs = [];
  const collect = (stream, echo) => {
    readline.createInterface({ input: stream }).on("line", (line) => {
      logs.push(line);
      if (process.env.WORKER_TEST_LOGS) echo.write(`${line}\n`);
    });
  };
  const options = miniflareOptions({
    script,
    settings,
    persist,
    handleRuntimeStdio(stdout, stderr) {
      collect(stdout, process.stdout);
      collect(stderr, process.stderr);
    },
  });
  const mf = new Miniflare(edge ? behindEdge(options) : options);
  const url = await mf.ready;
  return new Broker(mf, url, logs);
}

/** One HTTP response, fully read. */
export class Res {
  constructor(response, bytes, ms) {
    this.status = response.status;
    this.headers = response.headers;
    this.bytes = bytes;
    this.text = bytes.toString("utf8");
    this.ms = ms;
  }
  header(name) {
    return this.headers.get(name);
  }
  json() {
    return JSON.parse(this.text);
  }
  toString() {
    const headers = [...this.headers].filter(([k]) => !k.startsWith("mf-"));
    return `${this.status} ${JSON.stringify(headers)} ${JSON.stringify(this.text.slice(0, 400))} (${this.ms} ms)`;
  }
}

export class Broker {
  constructor(mf, url, logs) {
    this.mf = mf;
    this.url = url; // the local HTTP server in front of the Worker
    this.logs = logs; // the Worker's console output so far, one entry per line
  }

  async close() {
    await this.mf.dispose();
  }

  /**
   * Sends one request. `body` may be a string, a Buffer/Uint8Array or a ReadableStream.
   * By default the request says `Accept-Encoding: identity`, so that Content-Length is
   * visible; pass `encoding: "gzip"` to see what a Go client (which asks for gzip) gets.
   */
  async request(method, urlPath, { body, headers = {}, encoding = "identity", signal } = {}) {
    const init = { method, redirect: "manual", headers: { "Accept-Encoding": encoding, ...headers } };
    if (body !== undefined) {
      init.body = body;
      if (body instanceof ReadableStream) init.duplex = "half";
    }
    if (signal) init.signal = signal;
    const started = Date.now();
    const response = await this.mf.dispatchFetch(`http://broker.test${urlPath}`, init);
    const bytes = Buffer.from(await response.arrayBuffer());
    return new Res(response, bytes, Date.now() - started);
  }

  /**
   * Sends `head` (request line and headers, CRLF-separated, no final blank line) over a raw
   * HTTP/1.1 connection, for request targets fetch() would rewrite (such as dot segments).
   * Resolves to { status, headers (lower-case names), body } of the response.
   */
  raw(head) {
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(this.url.port), this.url.hostname, () => {
        socket.write(`${head}\r\nHost: broker.test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      });
      let data = Buffer.alloc(0);
      let done = false;
      const finish = (force) => {
        const end = data.indexOf("\r\n\r\n");
        if (done || end < 0) return;
        const [statusLine, ...lines] = data.subarray(0, end).toString("latin1").split("\r\n");
        const headers = {};
        for (const line of lines) {
          const at = line.indexOf(":");
          headers[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
        }
        const body = data.subarray(end + 4);
        const length = headers["content-length"];
        // A HEAD response has no body whatever its Content-Length says.
        const expected = head.startsWith("HEAD ") ? 0 : Number(length);
        if (!force && (length === undefined || body.length < expected)) return;
        done = true;
        socket.destroy();
        resolve({ status: Number(statusLine.split(" ")[1]), headers, body: body.toString("utf8") });
      };
      socket.on("data", (d) => {
        data = Buffer.concat([data, d]);
        finish(false);
      });
      socket.on("error", (e) => done || reject(e));
      socket.on("end", () => finish(true));
    });
  }

  post(urlPath, body, opts = {}) {
    return this.request("POST", urlPath, { ...opts, body });
  }

  get(urlPath, opts = {}) {
    return this.request("GET", urlPath, opts);
  }

  /**
   * POST /proxy; `poll` is a body string or the options of `pollBody` (with `sid`). Each
   * poll comes from an address of its own (`CF-Connecting-IP`, which Cloudflare sets), as
   * real proxies do, unless `opts.headers` names one: one address may hold only
   * `MAX_POLLS_PER_ADDRESS` sessions.
   */
  proxy(poll, opts = {}) {
    const body = typeof poll === "string" || poll instanceof Uint8Array ? poll : pollBody(poll.sid, poll);
    const headers = { "CF-Connecting-IP": proxyAddress(), ...(opts.headers ?? {}) };
    return this.post("/proxy", body, { ...opts, headers });
  }

  /** POST /client with a 1.0 body built from `offer` and `fields` (see `clientBody`). */
  client(offer, fields = {}, opts = {}) {
    return this.post("/client", clientBody(offer, fields), opts);
  }

  /** POST /client with a legacy body; `nat` goes into `Snowflake-NAT-Type` unless undefined. */
  legacy(body, nat, opts = {}) {
    const headers = nat === undefined ? {} : { "Snowflake-NAT-Type": nat };
    return this.post("/client", body, { ...opts, headers: { ...headers, ...(opts.headers ?? {}) } });
  }

  /** POST /answer. */
  answer(sid, answer, version = "1.3", opts = {}) {
    return this.post("/answer", answerBody(sid, answer, version), opts);
  }

  async debug() {
    const res = await this.get("/debug");
    assert.equal(res.status, 200, `/debug: ${res}`);
    return res.text;
  }

  /** The number on /debug's first line: parked polls plus matched proxies still answering. */
  async sessions() {
    const text = await this.debug();
    const m = /^current snowflakes available: (\d+)\n/.exec(text);
    assert.ok(m, `unexpected /debug text ${JSON.stringify(text)}`);
    return Number(m[1]);
  }

  /** Waits until /debug counts exactly `n` sessions (e.g. until polls are parked). */
  async waitSessions(n, timeoutMs = 3000) {
    const deadline = Date.now() + timeoutMs;
    let last;
    for (;;) {
      last = await this.sessions();
      if (last === n) return;
      if (Date.now() > deadline) assert.fail(`expected ${n} sessions on /debug, still ${last}`);
      await sleep(5);
    }
  }

  /** Waits until the broker holds nothing (every earlier test's request has ended). */
  waitIdle(timeoutMs = 3000) {
    return this.waitSessions(0, timeoutMs);
  }

  /**
   * Starts a proxy poll and waits until the broker has parked it (one more session).
   * Resolves to `{ response }`, `response` being the poll's pending response (wrapped, so
   * that awaiting `park` does not wait for the poll to end).
   */
  async park(poll) {
    const before = await this.sessions();
    const response = this.proxy(poll);
    response.catch(() => {});
    await this.waitSessions(before + 1);
    return { response };
  }
}

// ---------------------------------------------------------------------------------------------
// Identifiers and SDP fixtures.

let addresses = 0;
/** A fresh proxy address (IPv6 documentation range, one /64 each), unique per call. */
export function proxyAddress() {
  addresses += 1;
  return `2001:db8:${(addresses >> 16) & 0xffff}:${addresses & 0xffff}::1`;
}

let counter = 0;
/** A fresh Sid like the Go proxy's (22 chars of base64 without padding), unique per call. */
export function newSid(prefix = "") {
  counter += 1;
  const random = randomBytes(16).toString("base64").replace(/=+$/, "");
  return prefix ? `${prefix}-${counter}-${random.slice(0, 8)}` : random;
}

/** A realistic SDP with one candidate; `tag` makes it unique and traceable. */
export function sdp(kind = "offer", tag = "t", { candidate = true } = {}) {
  const lines = [
    "v=0",
    `o=- 4358805017720277108 2 IN IP4 8.8.8.8`,
    "s=-",
    "t=0 0",
    "a=group:BUNDLE data",
    "a=msid-semantic: WMS",
    "m=application 56688 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 8.8.8.8",
  ];
  if (candidate) {
    lines.push("a=candidate:3769337065 1 udp 2122260223 8.8.8.8 56688 typ host generation 0");
  }
  lines.push(
    "a=ice-ufrag:aMAZ",
    "a=ice-pwd:jcHb08Jjgrazp2dzjerxKnE9",
    "a=fingerprint:sha-256 C8:88:EE:B9:E7:02:2E:21:37:ED:7A:D1:EB:2B:A3:15:A2:3B:5B:1C:3D:D4:D5:1F:06:CF:52:40:03:F8:DD:66",
    `a=setup:${kind === "offer" ? "actpass" : "active"}`,
    "a=mid:data",
    "a=sctp-port:5000",
    `a=x-test:${tag}`,
  );
  return lines.join("\r\n") + "\r\n";
}

/** A client offer as the Go client puts it in `offer`: JSON `{"type":"offer","sdp":…}`. */
export function offerJson(tag = "t", opts) {
  return JSON.stringify({ type: "offer", sdp: sdp("offer", tag, opts) });
}

/** A proxy answer as the Go proxy puts it in `Answer`: JSON `{"type":"answer","sdp":…}`. */
export function answerJson(tag = "t", opts) {
  return JSON.stringify({ type: "answer", sdp: sdp("answer", tag, opts) });
}

// ---------------------------------------------------------------------------------------------
// Request builders.

/**
 * A /proxy body in the Go proxy's field order. Options: version ("1.3"), type ("standalone"),
 * nat ("unknown"), clients (0), pattern ("snowflake.torproject.net$"); a field set to
 * `undefined` explicitly (e.g. `{pattern: undefined}`) is left out.
 */
export function pollBody(sid, opts = {}) {
  const pick = (key, dflt) => (key in opts ? opts[key] : dflt);
  const msg = {
    Sid: sid,
    Version: pick("version", "1.3"),
    Type: pick("type", "standalone"),
    NAT: pick("nat", "unknown"),
    Clients: pick("clients", 0),
    AcceptedRelayPattern: pick("pattern", GO_PROXY_PATTERN),
  };
  return JSON.stringify(msg); // JSON.stringify drops undefined members
}

/** A 1.0 /client body: `1.0\n` + `{"offer":…,"nat":…,"fingerprint":…}` (undefined left out). */
export function clientBody(offer, { nat, fingerprint } = {}) {
  return "1.0\n" + JSON.stringify({ offer, nat, fingerprint });
}

/** An /answer body in the Go proxy's field order. */
export function answerBody(sid, answer, version = "1.3") {
  return JSON.stringify({ Version: version, Sid: sid, Answer: answer });
}

// ---------------------------------------------------------------------------------------------
// Expected bodies, byte for byte.

/** `s` as Go 1.21's json.Marshal writes a string (HTML-safe, \u0008/\u000c, U+2028/9). */
export function goString(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "<" || ch === ">" || ch === "&" || c === 0x2028 || c === 0x2029 || c < 0x20) {
      out += "\\u" + c.toString(16).padStart(4, "0");
    } else out += ch;
  }
  return out + '"';
}

/** A proxy poll response in N's field order. */
export function pollResponse(status, { offer = "", nat = "", nextPoll = DEFAULT_NEXT_POLL, relay = "" } = {}) {
  return (
    `{"Status":${goString(status)},"Offer":${goString(offer)},"NAT":${goString(nat)},` +
    `"NextPoll":${nextPoll},"RelayURL":${goString(relay)}}`
  );
}

export const noMatch = (nextPoll = DEFAULT_NEXT_POLL) => pollResponse("no match", { nextPoll });
export const BAD_PATTERN = pollResponse("incorrect relay pattern", { nextPoll: BAD_PATTERN_NEXT_POLL });
export const clientMatch = (offer, nat, { nextPoll = DEFAULT_NEXT_POLL, relay = DEFAULT_RELAY } = {}) =>
  pollResponse("client match", { offer, nat, nextPoll, relay });

export const clientError = (text) => `{"error":${goString(text)}}`;
export const clientAnswer = (answer) => `{"answer":${goString(answer)}}`;
export const NO_PROXIES = clientError("no snowflake proxies currently available");
export const TIMED_OUT = clientError("timed out waiting for answer!");
export const UNKNOWN_BRIDGE = clientError("bridge with requested fingerprint is unknown to the broker");
export const SUCCESS = '{"Status":"success"}';
export const CLIENT_GONE = '{"Status":"client gone"}';
export const NOT_FOUND = "404 page not found\n";
export const ROBOTS = "User-agent: *\nDisallow: /\n";

export const EMPTY_DEBUG =
  "current snowflakes available: 0\n\tunknown proxies: 0\nNAT Types available:\n" +
  "\trestricted: 0\n\tunrestricted: 0\n\tunknown: 0";

// ---------------------------------------------------------------------------------------------
// Assertions.

/** CORS headers present (both, exact) or absent (both). Never an Allow-Methods header. */
export function assertCors(res, expected = true) {
  const origin = res.header("access-control-allow-origin");
  const allow = res.header("access-control-allow-headers");
  if (expected) {
    assert.equal(origin, "*", `Access-Control-Allow-Origin: ${res}`);
    assert.equal(allow, "Origin, X-Session-ID", `Access-Control-Allow-Headers: ${res}`);
  } else {
    assert.equal(origin, null, `unexpected Access-Control-Allow-Origin: ${res}`);
    assert.equal(allow, null, `unexpected Access-Control-Allow-Headers: ${res}`);
  }
  assert.equal(res.header("access-control-allow-methods"), null, `unexpected Allow-Methods: ${res}`);
}

function assertLength(res) {
  // Only identity responses carry a length; a gzip one is chunked.
  const length = res.header("content-length");
  if (length !== null) assert.equal(Number(length), res.bytes.length, `Content-Length: ${res}`);
}

/**
 * A text response: this status, `Content-Type: text/plain; charset=utf-8` and exactly this
 * body (a string, or a RegExp the whole body must match). `cors` says whether the CORS
 * headers must be there (true) or must not be (false).
 */
export function assertText(res, status, body, { cors, contentType = TEXT_PLAIN } = {}) {
  assert.equal(res.status, status, `status: ${res}`);
  assert.equal(res.header("content-type"), contentType, `Content-Type: ${res}`);
  if (body instanceof RegExp) assert.match(res.text, body, `body: ${res}`);
  else assert.equal(res.text, body, `body: ${res}`);
  assertLength(res);
  if (cors !== undefined) assertCors(res, cors);
}

/** A bodyless response: this status, no Content-Type, empty body, Content-Length 0. */
export function assertEmpty(res, status, { cors } = {}) {
  assert.equal(res.status, status, `status: ${res}`);
  assert.equal(res.header("content-type"), null, `Content-Type: ${res}`);
  assert.equal(res.bytes.length, 0, `body: ${res}`);
  const length = res.header("content-length");
  if (length !== null) assert.equal(length, "0", `Content-Length: ${res}`);
  if (cors !== undefined) assertCors(res, cors);
}

/**
 * /metrics as R serves it with --metrics-log (docs/protocol.md §1.6): 200 text/plain with the
 * CORS headers and the whole log, which is empty until the first period ends.
 */
export function assertMetricsResponse(res) {
  assertCors(res, true);
  assertText(res, 200, /^(snowflake-stats-end \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+ s\)\n([a-z0-9-]+ [^\n]*\n)+)*$/);
}

/**
 * /prometheus (docs/protocol.md §1.7): 200 in the Prometheus text format, never with CORS.
 */
export function assertPrometheusResponse(res) {
  assertCors(res, false);
  assertText(res, 200, /^(# (HELP|TYPE) [^\n]*\n|snowflake_[a-z_]+(\{[^}]*\})? [0-9.e+-]+\n)*$/, {
    contentType: "text/plain; version=0.0.4; charset=utf-8",
  });
}

/** `ms` is within [lo, hi]. */
export function assertBetween(ms, lo, hi, what = "time") {
  assert.ok(ms >= lo && ms <= hi, `${what}: ${ms} ms is outside [${lo}, ${hi}] ms`);
}

/** The /debug text for these counts (types in the fixed order; only types with n > 0). */
// `nNames` ({ strict, moderate, open }): N's layout, used once a proxy said one of them.
export function debugText({ sessions = 0, types = {}, unknownTypes = 0, restricted = 0, unrestricted = 0, unknown = 0, nNames = null, problems = [] } = {}) {
  let out = `current snowflakes available: ${sessions}\n`;
  for (const t of ["standalone", "webext", "badge", "iptproxy", "bloco"]) {
    if (types[t]) out += `\t${t} proxies: ${types[t]}\n`;
  }
  out += `\tunknown proxies: ${unknownTypes}\nNAT Types available:\n`;
  out += `\trestricted: ${restricted}\n\tunrestricted: ${unrestricted}\n`;
  if (nNames) out += `\tstrict: ${nNames.strict ?? 0}\n\tmoderate: ${nNames.moderate ?? 0}\n\topen: ${nNames.open ?? 0}\n`;
  out += `\tunknown: ${unknown}`;
  for (const p of problems) out += `\n${p}`;
  return out;
}

/** A body of exactly `size` bytes: `text` padded with trailing spaces (JSON allows them). */
export function padTo(text, size) {
  const bytes = Buffer.byteLength(text);
  assert.ok(bytes <= size, `text is already ${bytes} bytes`);
  return text + " ".repeat(size - bytes);
}

/** A ReadableStream that sends `head`, waits `ms`, then sends `tail`: a slow upload. */
export function slowBody(head, ms, tail) {
  const enc = new TextEncoder();
  return new ReadableStream({
    async start(controller) {
      controller.enqueue(enc.encode(head));
      await sleep(ms);
      controller.enqueue(enc.encode(tail));
      controller.close();
    },
  });
}

/**
 * One whole rendezvous on an otherwise idle broker `b`: a proxy (NAT `proxyNat`) parks, a
 * client's offer (NAT `clientNat`, traceable by `tag`) reaches exactly it, and its answer
 * exactly that client.
 */
export async function assertRendezvous(b, tag, { proxyNat = "unrestricted", clientNat = "unrestricted" } = {}) {
  const sid = newSid(tag);
  // The proxy answers from the address it polled from, as real ones do.
  const from = { headers: { "CF-Connecting-IP": proxyAddress() } };
  const poll = b.proxy({ sid, nat: proxyNat }, from);
  await b.waitSessions(1);
  const offer = offerJson(tag);
  const client = b.client(offer, { nat: clientNat });
  assertText(await poll, 200, clientMatch(offer, clientNat), { cors: true });
  assertText(await b.answer(sid, answerJson(tag), "1.3", from), 200, SUCCESS);
  assertText(await client, 200, clientAnswer(answerJson(tag)));
}

/**
 * Metrics periods are aligned to the epoch (every shard must close the same ones): waits until
 * one of `seconds` has just begun, so that a test's events all fall in one period.
 */
export async function periodBegins(seconds) {
  const ms = seconds * 1000;
  await sleep(ms - (Date.now() % ms) + 50);
}
