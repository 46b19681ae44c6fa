#!/usr/bin/env node
// Load generator for a Snowflake broker (this Worker, or any broker speaking the same
// protocol): plays many proxies and clients against a URL and reports polls/s, matches/s,
// client outcomes and latency, errors, the broker's memory and CPU (when it runs on this
// machine), the generator's own CPU, and hops per client. `--help` lists the options.
//
// It uses only Node's standard library (Node 20). Every loop is bounded in time: the run
// lasts ramp + warm-up + duration + at most the drain time, then the process exits.

import http from "node:http";
import https from "node:https";
import fs from "node:fs";
import os from "node:os";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";

const HELP = `Usage: node bench/loadgen.mjs [options]

Plays --proxies simulated Snowflake proxies (each long-polls POST /proxy in a loop and answers
every offer it gets at once with POST /answer) and open-loop clients arriving at
--clients-per-second (each posts an offer to POST /client and waits for its answer) against a
broker, then prints what happened. With --client-concurrency N the clients are closed-loop
instead: N client slots, each posting its next offer as soon as its last one ended. Every
client checks that the answer it got is the one the proxy produced for its own offer (a
unique token travels in the SDP); a wrong one counts as a mismatch.

Target
  --url URL                   broker base URL (default http://127.0.0.1:8787/); requests go
                              to <url>proxy, <url>client, <url>answer, <url>debug
Load
  --proxies N                 concurrent simulated proxies (default 100)
  --clients-per-second R      client arrival rate, open loop (default 10; 0 = proxies only)
  --client-concurrency N      closed loop instead (default 0 = off): N client slots, each posts
                              an offer, waits for its answer (or its failure) and at once posts
                              the next, for --duration seconds; matches/s is then the broker's
                              max rendezvous rate at --proxies proxies. --clients-per-second,
                              --arrivals and --max-clients-in-flight are ignored. After a
                              network or HTTP error a slot waits --error-backoff-ms (a broker
                              refusing connections would otherwise be hammered in a hot loop)
  --duration S                measured window in seconds (default 20)
  --arrivals uniform|poisson  client inter-arrival times (default uniform)
  --proxy-nat MIX             proxies' NAT types, e.g. "unrestricted" (default) or
                              "restricted:0.6,unknown:0.38,unrestricted:0.02"
  --client-nat MIX            clients' NAT types, same syntax (default "unrestricted")
  --proxy-type T              proxies' Type field (default standalone)
  --relay-pattern P           proxies' AcceptedRelayPattern (default snowflake.torproject.net$)
  --fingerprint HEX           bridge fingerprint clients ask for (default: none sent)
  --poll-gap-ms MS            pause between one proxy's polls (default 0: re-poll at once)
  --next-poll-ms MS           the broker's NEXT_POLL_MS (default 20000); a "no match" whose
                              NextPoll is larger is a refusal (matcher full)
  --refused-wait MODE         after a refusal: "next-poll" (wait NextPoll, as real proxies
                              do; default) or a number of milliseconds
  --abandon F                 fraction (0-1) of proxy polls abandoned mid-wait, as a closed
                              browser tab abandons its poll (default 0). Sent as the header
                              x-test-abandon-after-ms, which only the edge stand-in in front
                              of the broker acts on (bench/serve.mjs --edge); such a poll
                              ends with 599, and its proxy polls again under a new Sid
  --abandon-after-ms MS       when an abandoned poll is given up (default 2000)
Attack
  --flood-polls N             N more polls at once from one address (--flood-address), each
                              re-polling at once whatever NextPoll says and never answering
                              an offer: an honest client handed one is wasted (default 0)
  --flood-address IP          the flood's CF-Connecting-IP (default 203.0.113.66)
Timing
  --ramp S                    start the proxies spread over S seconds (default 1)
  --warmup S                  proxies only, before the window opens (default 1)
  --drain S                   after the window, at most S seconds to let clients finish and
                              polls end; what is still open then is cut (default 15)
  --client-timeout-ms MS      the generator gives up on a client request (default 30000)
  --poll-timeout-ms MS        the generator gives up on a proxy poll (default 45000)
  --error-backoff-ms MS       a proxy's pause after an error (default 250)
  --max-clients-in-flight N   arrivals beyond this many open clients are skipped (default 20000)
  --fresh-client-connections  a new TCP connection for every client request (proxies keep
                              theirs alive); default: clients share keep-alive connections too
Measurement and output
  --pid PID[,PID...]          sample these processes' RSS and CPU from /proc every second
  --workerd                   find the local process listening on --url's port (workerd
                              under wrangler dev / Miniflare) and sample it
  --interval S                print a progress line every S seconds (default 5; 0 = never)
  --json                      print the final report as JSON on stdout (progress on stderr)
  --label TEXT                a label copied into the report
  --no-debug                  do not GET <url>debug before and after the run
  -h, --help                  this text

On Cloudflare every request is billed: one Worker request plus one Durable Object request
each (a rendezvous is a matched poll, a client request and an answer: three of each; the
report counts them under "requests sent"). Do not point it at a broker that real clients
use: its proxies would be matched with real clients, and real proxies with its clients.`;

// ---------------------------------------------------------------------------------------------
// Options.

function fail(msg) {
  console.error(`loadgen: ${msg}\n(see --help)`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      url: { type: "string", default: "http://127.0.0.1:8787/" },
      proxies: { type: "string", default: "100" },
      "clients-per-second": { type: "string", default: "10" },
      "client-concurrency": { type: "string", default: "0" },
      duration: { type: "string", default: "20" },
      arrivals: { type: "string", default: "uniform" },
      "proxy-nat": { type: "string", default: "unrestricted" },
      "client-nat": { type: "string", default: "unrestricted" },
      "proxy-type": { type: "string", default: "standalone" },
      "relay-pattern": { type: "string", default: "snowflake.torproject.net$" },
      fingerprint: { type: "string", default: "" },
      "poll-gap-ms": { type: "string", default: "0" },
      "next-poll-ms": { type: "string", default: "20000" },
      "refused-wait": { type: "string", default: "next-poll" },
      abandon: { type: "string", default: "0" },
      "abandon-after-ms": { type: "string", default: "2000" },
      "flood-polls": { type: "string", default: "0" },
      "flood-address": { type: "string", default: "203.0.113.66" },
      ramp: { type: "string", default: "1" },
      warmup: { type: "string", default: "1" },
      drain: { type: "string", default: "15" },
      "client-timeout-ms": { type: "string", default: "30000" },
      "poll-timeout-ms": { type: "string", default: "45000" },
      "error-backoff-ms": { type: "string", default: "250" },
      "max-clients-in-flight": { type: "string", default: "20000" },
      "fresh-client-connections": { type: "boolean", default: false },
      pid: { type: "string", default: "" },
      workerd: { type: "boolean", default: false },
      interval: { type: "string", default: "5" },
      json: { type: "boolean", default: false },
      label: { type: "string", default: "" },
      "no-debug": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  }).values;
} catch (e) {
  fail(e.message);
}
if (parsed.help) {
  console.log(HELP);
  process.exit(0);
}

function num(name, { min = 0, max = Infinity, integer = false } = {}) {
  const raw = parsed[name];
  const v = Number(raw);
  if (raw === "" || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    fail(`--${name} ${JSON.stringify(raw)}: expected a ${integer ? "whole " : ""}number in [${min}, ${max}]`);
  }
  return v;
}

function natMix(name) {
  const parts = parsed[name].split(",").map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) fail(`--${name} is empty`);
  const mix = parts.map((part) => {
    const [nat, w = "1"] = part.split(":");
    const weight = Number(w);
    if (!nat || !Number.isFinite(weight) || weight < 0) fail(`--${name}: bad entry ${JSON.stringify(part)}`);
    return { nat, weight };
  });
  const total = mix.reduce((s, m) => s + m.weight, 0);
  if (!(total > 0)) fail(`--${name}: weights sum to 0`);
  let acc = 0;
  return mix.map((m) => ({ nat: m.nat, share: m.weight / total, upTo: (acc += m.weight / total) }));
}

/** The NAT type of the i-th proxy or client: exact proportions, well spread, no randomness. */
function pickNat(mix, i) {
  const x = (i * 0.6180339887498949) % 1;
  return (mix.find((m) => x < m.upTo) ?? mix[mix.length - 1]).nat;
}

let base;
try {
  base = new URL(parsed.url);
  if (!base.pathname.endsWith("/")) base = new URL(base.href + "/");
  if (base.protocol !== "http:" && base.protocol !== "https:") throw new Error("not http(s)");
} catch (e) {
  fail(`--url ${JSON.stringify(parsed.url)}: ${e.message}`);
}

const opt = {
  proxies: num("proxies", { integer: true, max: 100000 }),
  rate: num("clients-per-second", { max: 100000 }),
  concurrency: num("client-concurrency", { integer: true, max: 100000 }),
  duration: num("duration", { min: 0.1, max: 86400 }),
  arrivals: parsed.arrivals,
  proxyNat: natMix("proxy-nat"),
  clientNat: natMix("client-nat"),
  proxyType: parsed["proxy-type"],
  relayPattern: parsed["relay-pattern"],
  fingerprint: parsed.fingerprint,
  pollGapMs: num("poll-gap-ms", { max: 3600000 }),
  nextPollMs: num("next-poll-ms", { max: 86400000 }),
  refusedWait: parsed["refused-wait"],
  abandon: num("abandon", { max: 1 }),
  abandonAfterMs: num("abandon-after-ms", { min: 1, max: 3600000, integer: true }),
  floodPolls: num("flood-polls", { integer: true, max: 100000 }),
  floodAddress: parsed["flood-address"],
  ramp: num("ramp", { max: 3600 }),
  warmup: num("warmup", { max: 3600 }),
  drain: num("drain", { max: 3600 }),
  clientTimeoutMs: num("client-timeout-ms", { min: 1, max: 3600000 }),
  pollTimeoutMs: num("poll-timeout-ms", { min: 1, max: 3600000 }),
  errorBackoffMs: num("error-backoff-ms", { max: 600000 }),
  maxClientsInFlight: num("max-clients-in-flight", { min: 1, integer: true }),
  interval: num("interval", { max: 3600 }),
  json: parsed.json,
  label: parsed.label,
  debug: !parsed["no-debug"],
};
if (opt.arrivals !== "uniform" && opt.arrivals !== "poisson") fail("--arrivals must be uniform or poisson");
if (opt.refusedWait !== "next-poll" && !(Number(opt.refusedWait) >= 0)) {
  fail("--refused-wait must be next-poll or a number of milliseconds");
}
const closedLoop = opt.concurrency > 0;
const progressOut = opt.json ? process.stderr : process.stdout;

// Each open request holds a socket (a file descriptor): warn when the limit is close.
try {
  const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync("/proc/self/limits", "utf8"));
  const need =
    opt.proxies + (closedLoop ? opt.concurrency : Math.ceil(opt.rate * (opt.clientTimeoutMs / 1000))) + 100;
  if (m && Number(m[1]) < opt.proxies + 100) {
    console.error(`loadgen: warning: open-file limit ${m[1]} is below ${opt.proxies} proxies; raise it (ulimit -n)`);
  } else if (m && Number(m[1]) < need) {
    console.error(`loadgen: note: if clients pile up, up to ${need} sockets may be needed (ulimit -n is ${m[1]})`);
  }
} catch {
  // not Linux
}

// ---------------------------------------------------------------------------------------------
// Processes to watch (broker RSS and CPU from /proc).

/** Pids of the processes listening on `port` on this machine (from /proc/net/tcp{,6}). */
function pidsListeningOn(port) {
  const inodes = new Set();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = fs.readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== "0A") continue; // 0A = LISTEN
      const localPort = parseInt(f[1].split(":").pop(), 16);
      if (localPort === port) inodes.add(`socket:[${f[9]}]`);
    }
  }
  const pids = [];
  if (inodes.size === 0) return pids;
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let fds;
    try {
      fds = fs.readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link;
      try {
        link = fs.readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      if (inodes.has(link)) {
        pids.push(Number(entry));
        break;
      }
    }
  }
  return pids;
}

function comm(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "?";
  }
}

let watched = [];
if (parsed.pid) {
  watched = parsed.pid.split(",").map((s) => Number(s.trim()));
  if (watched.some((p) => !Number.isInteger(p) || p <= 0)) fail(`--pid ${JSON.stringify(parsed.pid)}`);
  for (const p of watched) if (!fs.existsSync(`/proc/${p}`)) fail(`--pid ${p}: no such process`);
} else if (parsed.workerd) {
  const local = ["127.0.0.1", "localhost", "[::1]", "0.0.0.0"].includes(base.hostname);
  if (!local) fail("--workerd needs a --url on this machine (127.0.0.1 or localhost); use --pid");
  const port = Number(base.port || (base.protocol === "https:" ? 443 : 80));
  const found = pidsListeningOn(port);
  const workerd = found.filter((p) => comm(p).includes("workerd"));
  watched = workerd.length > 0 ? workerd : found;
  if (watched.length === 0) fail(`--workerd: no process of ours listens on port ${port}`);
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** { rssBytes, cpuTicks } summed over the watched processes, or null if all are gone. */
function readProc() {
  let rss = 0;
  let ticks = 0;
  let alive = 0;
  for (const pid of watched) {
    try {
      const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
      if (m) rss += Number(m[1]) * 1024;
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]); // utime + stime (fields 14 and 15)
      alive += 1;
    } catch {
      // gone
    }
  }
  return alive ? { rssBytes: rss, cpuTicks: ticks } : null;
}

/** Per-core [busy, total] jiffies from /proc/stat, or null. */
function readCores() {
  try {
    return fs
      .readFileSync("/proc/stat", "utf8")
      .split("\n")
      .filter((l) => /^cpu\d+ /.test(l))
      .map((l) => {
        const f = l.trim().split(/\s+/).slice(1).map(Number);
        const idle = f[3] + (f[4] || 0); // idle + iowait
        const total = f.reduce((a, b) => a + b, 0);
        return [total - idle, total];
      });
  } catch {
    return null;
  }
}

function loadavg() {
  try {
    return fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP.

const agentOptions = { keepAlive: true, maxSockets: Infinity, maxFreeSockets: 100000, scheduling: "lifo" };
const agent = base.protocol === "https:" ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
const transport = base.protocol === "https:" ? https : http;
const clientAgent = parsed["fresh-client-connections"]
  ? new (base.protocol === "https:" ? https.Agent : http.Agent)({ keepAlive: false, maxSockets: Infinity })
  : agent;
const open = new Set(); // every request in flight, to cut them at the hard deadline

class NetError extends Error {
  constructor(code, message, reused) {
    super(message);
    this.code = code;
    this.reused = reused;
    this.ms = null; // how long after the request was sent it failed
  }
}

/**
 * POSTs (or GETs) and resolves to { status, headers, text, ms }; rejects with NetError.
 * `extra` headers are added (a simulated proxy's `CF-Connecting-IP`).
 */
function request(method, path, body, timeoutMs, via = agent, extra = {}) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const headers = { "Accept-Encoding": "identity", ...extra };
    if (body !== undefined) {
      headers["Content-Type"] = "text/plain";
      headers["Content-Length"] = Buffer.byteLength(body);
    }
    const req = transport.request(new URL(path, base), { method, agent: via, headers });
    open.add(req);
    let settled = false;
    const done = (fn, v) => {
      if (settled) return;
      settled = true;
      open.delete(req);
      fn(v);
    };
    req.setTimeout(timeoutMs, () => req.destroy(new NetError("GEN_TIMEOUT", "generator timeout", req.reusedSocket)));
    const failed = (e) => {
      const err = e instanceof NetError ? e : new NetError(e.code || "ERROR", e.message, req.reusedSocket);
      err.ms = performance.now() - started;
      done(reject, err);
    };
    req.on("error", failed);
    req.on("response", (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("error", failed);
      res.on("end", () =>
        done(resolve, {
          status: res.statusCode,
          headers: res.headers,
          text: Buffer.concat(chunks).toString("utf8"),
          ms: performance.now() - started,
        }),
      );
    });
    req.end(body);
  });
}

// ---------------------------------------------------------------------------------------------
// Messages.

const RUN = randomBytes(4).toString("hex");
const TOKEN_RE = /a=x-bench-token:(\S+)/;

function sdp(kind, token) {
  return (
    [
      "v=0",
      "o=- 4358805017720277108 2 IN IP4 192.0.2.1",
      "s=-",
      "t=0 0",
      "a=group:BUNDLE data",
      "a=msid-semantic: WMS",
      "m=application 56688 UDP/DTLS/SCTP webrtc-datachannel",
      "c=IN IP4 192.0.2.1",
      "a=candidate:3769337065 1 udp 2122260223 192.0.2.1 56688 typ host generation 0",
      "a=ice-ufrag:aMAZ",
      "a=ice-pwd:jcHb08Jjgrazp2dzjerxKnE9",
      "a=fingerprint:sha-256 C8:88:EE:B9:E7:02:2E:21:37:ED:7A:D1:EB:2B:A3:15:A2:3B:5B:1C:3D:D4:D5:1F:06:CF:52:40:03:F8:DD:66",
      `a=setup:${kind === "offer" ? "actpass" : "active"}`,
      "a=mid:data",
      "a=sctp-port:5000",
      `a=x-bench-token:${token}`,
    ].join("\r\n") + "\r\n"
  );
}

const newSid = () => randomBytes(16).toString("base64").replace(/=+$/, "");

/** The token in an offer or answer string `{"type":…,"sdp":…}`, or null. */
function tokenOf(description) {
  try {
    const m = TOKEN_RE.exec(JSON.parse(description).sdp);
    return m ? m[1] : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Counters.

const bump = (obj, key, n = 1) => {
  obj[key] = (obj[key] ?? 0) + n;
};
/** The name a network error is counted under; resets on reused keep-alive sockets are also
 *  counted apart (c.resetsOnReusedSocket): a few may be the usual keep-alive race rather than
 *  the broker resetting connections. */
const netErrorMs = []; // when network errors happened, ms after their request was sent
const netKey = (e, endpoint) => {
  if (e.code === "ECONNRESET" && e.reused) c.resetsOnReusedSocket += 1;
  if (!firstNetError && e.code !== "CUT_AT_END") {
    firstNetError = {
      t_s: Math.round(now() / 100) / 10,
      endpoint,
      code: e.code,
      after_ms: e.ms === null ? null : Math.round(e.ms),
      open_polls: pollsInFlight,
      open_clients: clientsInFlight,
      open_answers: answersInFlight,
    };
  }
  if (e.ms !== null && e.code !== "CUT_AT_END") netErrorMs.push(e.ms);
  return e.code;
};

const c = {
  polls: 0, // poll responses of any kind, errors included
  pollMatch: 0,
  pollNoMatch: 0,
  pollRefused: 0,
  pollBadPattern: 0,
  pollOther: {},
  pollAbandoned: 0,
  pollHttp: {},
  floodPolls: 0,
  floodMatched: 0,
  floodRefused: 0,
  floodNoMatch: 0,
  floodErrors: 0,
  pollNet: {},
  foreignOffers: 0,
  answers: 0,
  answerSuccess: 0,
  answerGone: 0,
  answerOther: {},
  answerHttp: {},
  answerNet: {},
  clientsLaunched: 0,
  clientsSkipped: 0,
  clientsDone: 0,
  answered: 0,
  mismatch: 0,
  denied: 0,
  brokerTimeout: 0,
  genTimeout: 0,
  clientOtherError: {},
  clientHttp: {},
  clientNet: {},
  resetsOnReusedSocket: 0,
  hopsSeen: 0,
  hopsSum: 0,
  hopsMax: 0,
  hopsHeader: "",
};
let pollsInFlight = 0;
let clientsInFlight = 0;
let answersInFlight = 0;
let firstNetError = null; // the moment the first network error happened, and what was open
const latAnswered = []; // ms, answered clients
const latAll = []; // ms, every client that got an HTTP response
// ms, polls answered "no match" at their deadline, and refused at once (matcher full): how
// well deadlines hold and how cheap refusals are under load.
const latPollNoMatch = [];
const latPollRefused = [];
let intervalLat = []; // ms, answered clients since the last progress line

// ---------------------------------------------------------------------------------------------
// Phases and stopping.

const t0 = performance.now();
const startedAt = new Date().toISOString();
const now = () => performance.now() - t0; // ms since start
const windowStart = (opt.ramp + opt.warmup) * 1000;
const windowEnd = windowStart + opt.duration * 1000;
const hardDeadline = windowEnd + opt.drain * 1000;
let proxiesStopping = false;
const sleepers = new Set(); // pending proxy sleeps, ended at once when proxies must stop
const delay = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** A proxy's pause: never past the hard deadline, and cut short when proxies stop. */
function sleep(ms) {
  if (proxiesStopping) return Promise.resolve();
  const wait = Math.max(0, Math.min(ms, hardDeadline - now()));
  return new Promise((resolve) => {
    const entry = { resolve, timer: null };
    entry.timer = setTimeout(() => {
      sleepers.delete(entry);
      resolve();
    }, wait);
    sleepers.add(entry);
  });
}

function stopProxies() {
  proxiesStopping = true;
  for (const s of sleepers) {
    clearTimeout(s.timer);
    s.resolve();
  }
  sleepers.clear();
}

// ---------------------------------------------------------------------------------------------
// Proxies.

/**
 * Simulated proxy `i`'s address, as Cloudflare would report it in `CF-Connecting-IP`: one
 * IPv6 /64 of the documentation range each, as real proxies have addresses of their own
 * (the broker holds at most MAX_POLLS_PER_ADDRESS sessions per address).
 */
function proxyAddress(i) {
  return `2001:db8:${(i >> 16) & 0xffff}:${i & 0xffff}::1`;
}

async function proxyLoop(i) {
  const nat = pickNat(opt.proxyNat, i);
  const from = { "CF-Connecting-IP": proxyAddress(i) };
  const abandoning = { ...from, "x-test-abandon-after-ms": String(opt.abandonAfterMs) };
  let sid = newSid();
  while (!proxiesStopping && now() < hardDeadline) {
    const body = JSON.stringify({
      Sid: sid,
      Version: "1.3",
      Type: opt.proxyType,
      NAT: nat,
      Clients: 0,
      AcceptedRelayPattern: opt.relayPattern,
    });
    pollsInFlight += 1;
    let res;
    try {
      const abandon = opt.abandon > 0 && Math.random() < opt.abandon;
      res = await request("POST", "proxy", body, opt.pollTimeoutMs, agent, abandon ? abandoning : from);
    } catch (e) {
      if (e.code === "CUT_AT_END") {
        pollsInFlight -= 1;
        return;
      }
      c.polls += 1;
      bump(c.pollNet, netKey(e, "/proxy")); // (counts this poll as open)
      pollsInFlight -= 1;
      await sleep(opt.errorBackoffMs);
      continue;
    }
    pollsInFlight -= 1;
    c.polls += 1;
    if (res.status === 599 && res.text.startsWith("abandoned")) {
      // The edge gave the poll up; a new tab would be a new session.
      c.pollAbandoned += 1;
      sid = newSid();
      continue;
    }
    if (res.status !== 200) {
      bump(c.pollHttp, String(res.status));
      await sleep(opt.errorBackoffMs);
      continue;
    }
    let msg;
    try {
      msg = JSON.parse(res.text);
    } catch {
      bump(c.pollOther, "unparseable body");
      await sleep(opt.errorBackoffMs);
      continue;
    }
    const status = msg.Status ?? msg.status;
    if (status === "client match") {
      c.pollMatch += 1;
      const answerSid = sid;
      sid = newSid(); // a new session after a match, as the Go proxy does
      const token = tokenOf(msg.Offer ?? "");
      if (token === null) {
        c.foreignOffers += 1; // not one of ours: never answer it
      } else {
        await answer(answerSid, token, from);
      }
    } else if (status === "no match") {
      const next = Number(msg.NextPoll);
      if (Number.isFinite(next) && next > opt.nextPollMs) {
        c.pollRefused += 1;
        latPollRefused.push(res.ms);
        await sleep(opt.refusedWait === "next-poll" ? next : Number(opt.refusedWait));
        continue;
      }
      c.pollNoMatch += 1;
      latPollNoMatch.push(res.ms);
    } else if (status === "incorrect relay pattern") {
      c.pollBadPattern += 1;
      await sleep(Math.max(1000, opt.errorBackoffMs));
      continue;
    } else {
      bump(c.pollOther, String(status));
      await sleep(opt.errorBackoffMs);
      continue;
    }
    if (opt.pollGapMs > 0) await sleep(opt.pollGapMs);
  }
}

/**
 * One poll of the flood: from one address, re-polling at once whatever the broker says, and
 * never answering the offers it is handed.
 */
async function floodLoop(j) {
  const from = { "CF-Connecting-IP": opt.floodAddress };
  while (!proxiesStopping && now() < hardDeadline) {
    const body = JSON.stringify({
      Sid: `flood-${RUN}-${j}-${c.floodPolls}`,
      Version: "1.3",
      Type: opt.proxyType,
      NAT: "unrestricted",
      Clients: 0,
      AcceptedRelayPattern: opt.relayPattern,
    });
    c.floodPolls += 1;
    let res;
    try {
      res = await request("POST", "proxy", body, opt.pollTimeoutMs, agent, from);
    } catch (e) {
      if (e.code === "CUT_AT_END") return;
      c.floodErrors += 1;
      await sleep(opt.errorBackoffMs);
      continue;
    }
    let msg = {};
    try {
      msg = JSON.parse(res.text);
    } catch {
      // counted below
    }
    if (msg.Status === "client match") c.floodMatched += 1;
    else if (msg.Status === "no match" && Number(msg.NextPoll) > opt.nextPollMs) c.floodRefused += 1;
    else if (msg.Status === "no match") c.floodNoMatch += 1;
    else {
      c.floodErrors += 1;
      await sleep(opt.errorBackoffMs);
    }
  }
}

/** A proxy's answer, from the proxy's address (`from`), as real proxies answer. */
async function answer(sid, token, from) {
  const body = JSON.stringify({
    Version: "1.3",
    Sid: sid,
    Answer: JSON.stringify({ type: "answer", sdp: sdp("answer", token) }),
  });
  let res;
  answersInFlight += 1;
  try {
    res = await request("POST", "answer", body, opt.pollTimeoutMs, undefined, from);
  } catch (e) {
    if (e.code !== "CUT_AT_END") {
      c.answers += 1;
      bump(c.answerNet, netKey(e, "/answer"));
    }
    answersInFlight -= 1;
    return;
  }
  answersInFlight -= 1;
  c.answers += 1;
  if (res.status !== 200) {
    bump(c.answerHttp, String(res.status));
    return;
  }
  let status;
  try {
    status = JSON.parse(res.text).Status;
  } catch {
    status = "unparseable body";
  }
  if (status === "success") c.answerSuccess += 1;
  else if (status === "client gone") c.answerGone += 1;
  else bump(c.answerOther, String(status));
}

// ---------------------------------------------------------------------------------------------
// Clients.

/** One client; resolves to "error" after a network or HTTP error, else to "done". */
async function client(i) {
  const token = `${RUN}-${i}`;
  const nat = pickNat(opt.clientNat, i);
  const message = { offer: JSON.stringify({ type: "offer", sdp: sdp("offer", token) }), nat };
  if (opt.fingerprint) message.fingerprint = opt.fingerprint;
  const body = "1.0\n" + JSON.stringify(message);
  clientsInFlight += 1;
  let res;
  try {
    res = await request("POST", "client", body, opt.clientTimeoutMs, clientAgent);
  } catch (e) {
    if (e.code !== "CUT_AT_END") {
      // (a cut client is counted as unfinished)
      c.clientsDone += 1;
      if (e.code === "GEN_TIMEOUT") c.genTimeout += 1;
      else bump(c.clientNet, netKey(e, "/client"));
    }
    clientsInFlight -= 1;
    return e.code === "GEN_TIMEOUT" ? "done" : "error";
  }
  clientsInFlight -= 1;
  c.clientsDone += 1;
  latAll.push(res.ms);
  for (const [name, value] of Object.entries(res.headers)) {
    if (/hops/i.test(name) && /^\d+$/.test(String(value).trim())) {
      const h = Number(value);
      c.hopsHeader = name;
      c.hopsSeen += 1;
      c.hopsSum += h;
      c.hopsMax = Math.max(c.hopsMax, h);
    }
  }
  if (res.status !== 200) {
    bump(c.clientHttp, String(res.status));
    return "error";
  }
  let msg;
  try {
    msg = JSON.parse(res.text);
  } catch {
    bump(c.clientOtherError, "unparseable body");
    return "done";
  }
  if (typeof msg.answer === "string" && msg.answer !== "") {
    if (tokenOf(msg.answer) === token) {
      c.answered += 1;
      latAnswered.push(res.ms);
      intervalLat.push(res.ms);
    } else {
      c.mismatch += 1;
    }
  } else if (msg.error === "no snowflake proxies currently available") {
    c.denied += 1;
  } else if (msg.error === "timed out waiting for answer!") {
    c.brokerTimeout += 1;
  } else {
    bump(c.clientOtherError, String(msg.error ?? res.text.slice(0, 80)));
  }
  return "done";
}

async function arrivals() {
  if (closedLoop) {
    closedLoopSlots();
    return;
  }
  if (opt.rate <= 0) return;
  const gap = () => (opt.arrivals === "poisson" ? -Math.log(1 - Math.random()) : 1) * (1000 / opt.rate);
  let next = windowStart;
  let i = 0;
  for (;;) {
    // Every arrival due by now (all of the window's, once it is over: a late timer must
    // not drop arrivals).
    const t = Math.min(now(), windowEnd);
    while (next <= t && next < windowEnd) {
      if (clientsInFlight >= opt.maxClientsInFlight) c.clientsSkipped += 1;
      else {
        c.clientsLaunched += 1;
        client(i);
      }
      i += 1;
      next += gap();
    }
    if (next >= windowEnd) break;
    await delay(Math.max(1, Math.min(5, next - now())));
  }
}

/**
 * Closed loop: --client-concurrency slots, each launching its next client as soon as the last
 * one ended, while the window is open (the last one of each slot ends in the drain, as late
 * open-loop clients do). Started, not awaited: the window closes on time.
 */
let nextClient = 0;
function closedLoopSlots() {
  const slot = async () => {
    while (now() < windowEnd) {
      c.clientsLaunched += 1;
      const outcome = await client(nextClient++);
      if (outcome === "error" && opt.errorBackoffMs > 0) {
        await delay(Math.min(opt.errorBackoffMs, windowEnd - now()));
      }
    }
  };
  for (let k = 0; k < opt.concurrency; k++) slot();
}

// ---------------------------------------------------------------------------------------------
// Sampling: broker processes, the generator's CPU, progress lines.

const samples = []; // { t, rss, cpuPct } of the watched processes
let lastProc = watched.length ? readProc() : null;
let lastProcT = now();
let lastCpu = process.cpuUsage();
let lastCpuT = now();
let genCpuPct = 0;
let brokerCpuPct = null;

function sample() {
  const t = now();
  const cpu = process.cpuUsage();
  genCpuPct = ((cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000 / (t - lastCpuT)) * 100;
  lastCpu = cpu;
  lastCpuT = t;
  if (watched.length) {
    const p = readProc();
    if (p && lastProc) {
      brokerCpuPct = ((p.cpuTicks - lastProc.cpuTicks) / CLK_TCK / ((t - lastProcT) / 1000)) * 100;
      samples.push({ t, rss: p.rssBytes, cpuPct: brokerCpuPct });
    }
    if (p) lastProc = p;
    lastProcT = t;
  }
}

const pct = (sorted, p) =>
  sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
const r1 = (x) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10) / 10);
const sum = (obj) => Object.values(obj).reduce((s, v) => s + v, 0);
/** MB per minute, the least-squares slope of RSS over `points` ({ t ms, rss bytes }). */
function rssSlope(points) {
  if (points.length < 2) return null;
  const n = points.length;
  const mt = points.reduce((a, p) => a + p.t, 0) / n;
  const mr = points.reduce((a, p) => a + p.rss, 0) / n;
  const num = points.reduce((a, p) => a + (p.t - mt) * (p.rss - mr), 0);
  const den = points.reduce((a, p) => a + (p.t - mt) ** 2, 0);
  return den > 0 ? Math.round((num / den) * 60000 / 1048576 * 100) / 100 : null;
}

const mb = (b) => (b === null || b === undefined ? null : Math.round((b / 1048576) * 10) / 10);

let lastProgress = { t: 0, polls: 0, match: 0, launched: 0, answered: 0, denied: 0, timeout: 0, errors: 0 };
function clientErrors() {
  return c.mismatch + c.genTimeout + sum(c.clientHttp) + sum(c.clientNet) + sum(c.clientOtherError);
}
function progress() {
  const t = now();
  const dt = (t - lastProgress.t) / 1000;
  const sorted = intervalLat.sort((a, b) => a - b);
  intervalLat = [];
  const errs = clientErrors();
  const pollErrs = sum(c.pollHttp) + sum(c.pollNet) + sum(c.answerHttp) + sum(c.answerNet);
  const phase = t < windowStart ? "warm-up" : t < windowEnd ? "load" : "drain";
  const line =
    `[${(t / 1000).toFixed(1).padStart(5)}s ${phase.padEnd(7)}] ` +
    `polls/s ${((c.polls - lastProgress.polls) / dt).toFixed(0)}  ` +
    `matches/s ${((c.pollMatch - lastProgress.match) / dt).toFixed(0)}  ` +
    `clients +${c.clientsLaunched - lastProgress.launched} ` +
    `answered +${c.answered - lastProgress.answered} ` +
    `denied +${c.denied - lastProgress.denied} ` +
    `timeout +${c.brokerTimeout - lastProgress.timeout} ` +
    `errors +${errs - lastProgress.errors} (proxy-side errors ${pollErrs})  ` +
    `p50 ${r1(pct(sorted, 50)) ?? "-"} p99 ${r1(pct(sorted, 99)) ?? "-"} ms  ` +
    `open polls ${pollsInFlight} clients ${clientsInFlight}` +
    (samples.length ? `  broker rss ${mb(samples[samples.length - 1].rss)} MB cpu ${r1(brokerCpuPct)}%` : "") +
    `  gen cpu ${r1(genCpuPct)}%`;
  progressOut.write(line + "\n");
  lastProgress = {
    t,
    polls: c.polls,
    match: c.pollMatch,
    launched: c.clientsLaunched,
    answered: c.answered,
    denied: c.denied,
    timeout: c.brokerTimeout,
    errors: errs,
  };
}

// ---------------------------------------------------------------------------------------------
// /debug (the broker's own view: sessions held, warnings such as MATCHER_SHARDS).

async function debugInfo() {
  if (!opt.debug) return null;
  try {
    const res = await request("GET", "debug", undefined, 10000);
    if (res.status !== 200) return { error: `HTTP ${res.status}` };
    const m = /^current snowflakes available: (\d+)/.exec(res.text);
    return {
      sessions: m ? Number(m[1]) : null,
      notes: res.text.split("\n").filter((l) => /warning|error|unavailable|shard/i.test(l)).map((l) => l.trim()),
    };
  } catch (e) {
    return { error: e.code };
  }
}

// /prometheus's per-shard counters: requests by call (snowflake_matcher_shard_requests_total) and
// offers each shard decided (snowflake_matcher_shard_offers_ended_total): how the load spreads
// over the shards, and how many Durable Object requests a client costs.

async function shardRequests() {
  try {
    const res = await request("GET", "prometheus", undefined, 10000);
    if (res.status !== 200) return null;
    const per = [];
    const at = (i) => (per[i] ??= { total: 0, offer: 0, ended: 0 });
    for (const m of res.text.matchAll(/^snowflake_matcher_shard_requests_total\{call="(\w+)",shard="(\d+)"\} (\d+)$/gm)) {
      const s = at(Number(m[2]));
      s.total += Number(m[3]);
      if (m[1] === "offer") s.offer += Number(m[3]);
    }
    for (const m of res.text.matchAll(/^snowflake_matcher_shard_offers_ended_total\{shard="(\d+)"\} (\d+)$/gm)) {
      at(Number(m[1])).ended += Number(m[2]);
    }
    return per.length ? per : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// The run.

const debugBefore = await debugInfo();
const proxyStart = now();
const procAtStart = watched.length ? readProc() : null;

const sampler = setInterval(sample, 1000);
const progressTimer = opt.interval > 0 ? setInterval(progress, opt.interval * 1000) : null;

const proxyTasks = [];
for (let i = 0; i < opt.proxies; i++) {
  const startAt = opt.proxies > 1 ? (opt.ramp * 1000 * i) / opt.proxies : 0;
  proxyTasks.push(sleep(startAt - (now() - proxyStart)).then(() => proxyLoop(i)));
}
for (let j = 0; j < opt.floodPolls; j++) {
  const startAt = opt.floodPolls > 1 ? (opt.ramp * 1000 * j) / opt.floodPolls : 0;
  proxyTasks.push(sleep(startAt - (now() - proxyStart)).then(() => floodLoop(j)));
}

// The window: counters at its two ends give the rates.
await delay(windowStart - now());
// CPU and /proc are read at the window's very edges, before the /prometheus reads: under
// overload those wait seconds behind the broker's queue, which would stretch the CPU interval
// past the window (CPU above 100% of a pinned core).
const snapStart = { polls: c.polls, match: c.pollMatch, answers: c.answers, clients: c.clientsLaunched, t: now() };
const cpuStart = process.cpuUsage();
const eluStart = performance.eventLoopUtilization();
const procStart = watched.length ? readProc() : null;
const coresStart = readCores();
const loadStart = loadavg();
const arriving = arrivals(); // (starts the clients at once; the /prometheus read runs beside)
const shardsStart = await shardRequests();
await arriving;
await delay(windowEnd - now());
const snapEnd = { polls: c.polls, match: c.pollMatch, answers: c.answers, clients: c.clientsLaunched, t: now() };
const cpuEnd = process.cpuUsage(cpuStart);
const elu = performance.eventLoopUtilization(eluStart);
const procEnd = watched.length ? readProc() : null;
const coresEnd = readCores();
const loadEnd = loadavg();
const shardsEnd = await shardRequests();

// Drain: proxies keep polling while clients still wait, then stop polling; their open polls
// end by themselves (the broker's poll timeout) unless the hard deadline comes first.
while (clientsInFlight > 0 && now() < hardDeadline) await delay(20);
stopProxies();
await Promise.race([Promise.all(proxyTasks), delay(hardDeadline - now())]);
const cut = open.size;
for (const req of open) req.destroy(new NetError("CUT_AT_END", "cut at the end of the run"));
const clientsUnfinished = clientsInFlight;
clearInterval(sampler);
if (progressTimer) clearInterval(progressTimer);
sample();
if (opt.interval > 0) progress();
const debugAfter = await debugInfo();
agent.destroy();
clientAgent.destroy();

// ---------------------------------------------------------------------------------------------
// The report.

const win = (snapEnd.t - snapStart.t) / 1000;
latAnswered.sort((a, b) => a - b);
latAll.sort((a, b) => a - b);
const lat = (arr) => ({
  n: arr.length,
  p50: r1(pct(arr, 50)),
  p90: r1(pct(arr, 90)),
  p99: r1(pct(arr, 99)),
  max: r1(arr.length ? arr[arr.length - 1] : null),
});
const windowSamples = samples.filter((s) => s.t >= snapStart.t && s.t <= snapEnd.t + 1000);
const shardNote = [debugBefore, debugAfter]
  .flatMap((d) => d?.notes ?? [])
  .find((l) => /MATCHER_SHARDS/.test(l));

const report = {
  label: opt.label || undefined,
  url: base.href,
  started_at: startedAt,
  settings: {
    proxies: opt.proxies,
    // "open-loop": clients arrive at clients_per_second; "closed-loop": client_concurrency
    // slots each post their next offer as soon as the last one ended (clients_per_second null).
    client_mode: closedLoop ? "closed-loop" : "open-loop",
    client_concurrency: closedLoop ? opt.concurrency : null,
    clients_per_second: closedLoop ? null : opt.rate,
    duration_s: opt.duration,
    arrivals: closedLoop ? "closed-loop" : opt.arrivals,
    proxy_nat: Object.fromEntries(opt.proxyNat.map((m) => [m.nat, r1(m.share * 100) / 100])),
    client_nat: Object.fromEntries(opt.clientNat.map((m) => [m.nat, r1(m.share * 100) / 100])),
    fresh_client_connections: parsed["fresh-client-connections"],
    ramp_s: opt.ramp,
    warmup_s: opt.warmup,
    drain_s: opt.drain,
  },
  // The measured window; longer than --duration when the generator's timers ran late (its
  // event loop was busy, e.g. handling thousands of resets at once).
  window_s: r1(win),
  rates: {
    polls_per_s: r1((snapEnd.polls - snapStart.polls) / win),
    matches_per_s: r1((snapEnd.match - snapStart.match) / win),
    answers_per_s: r1((snapEnd.answers - snapStart.answers) / win),
    // Arrivals follow a schedule over exactly --duration seconds, even when timers run late;
    // closed-loop clients are launched while the window is open.
    clients_per_s: r1(closedLoop ? c.clientsLaunched / win : (c.clientsLaunched + c.clientsSkipped) / opt.duration),
    answered_per_s: r1(c.answered / win),
  },
  polls: {
    total: c.polls,
    client_match: c.pollMatch,
    no_match: c.pollNoMatch,
    refused_matcher_full: c.pollRefused,
    incorrect_relay_pattern: c.pollBadPattern,
    other_status: c.pollOther,
    http_errors: c.pollHttp,
    network_errors: c.pollNet,
    foreign_offers: c.foreignOffers,
    abandoned_by_edge: c.pollAbandoned,
    honest_refused_fraction: r1((c.pollRefused / Math.max(1, c.polls - c.pollAbandoned)) * 1000) / 1000,
  },
  flood: opt.floodPolls
    ? {
        address: opt.floodAddress,
        concurrent: opt.floodPolls,
        polls: c.floodPolls,
        refused: c.floodRefused,
        no_match: c.floodNoMatch,
        handed_a_client: c.floodMatched,
        errors: c.floodErrors,
      }
    : undefined,
  answers: {
    total: c.answers,
    success: c.answerSuccess,
    client_gone: c.answerGone,
    other_status: c.answerOther,
    http_errors: c.answerHttp,
    network_errors: c.answerNet,
  },
  clients: {
    launched: c.clientsLaunched,
    skipped_too_many_open: c.clientsSkipped,
    answered: c.answered,
    denied_no_proxies: c.denied,
    broker_timeout: c.brokerTimeout,
    generator_timeout: c.genTimeout,
    mismatches: c.mismatch,
    other_error: c.clientOtherError,
    http_errors: c.clientHttp,
    network_errors: c.clientNet,
    unfinished_at_end: clientsUnfinished,
    errors_total: clientErrors(),
  },
  latency_ms: {
    answered: lat(latAnswered),
    all_responses: lat(latAll),
    network_errors_after: lat(netErrorMs.sort((a, b) => a - b)),
    poll_no_match: lat(latPollNoMatch.sort((a, b) => a - b)),
    poll_refused: lat(latPollRefused.sort((a, b) => a - b)),
  },
  first_network_error: firstNetError,
  requests_sent: {
    proxy: c.polls,
    answer: c.answers,
    client: c.clientsDone,
    debug: (debugBefore ? 1 : 0) + (debugAfter ? 1 : 0),
    total: c.polls + c.answers + c.clientsDone + (debugBefore ? 1 : 0) + (debugAfter ? 1 : 0),
    note: "on Cloudflare each is one billed Worker request and one billed Durable Object request",
  },
  shards: shardFigures(),
  hops_per_client: c.hopsSeen
    ? { mean: r1(c.hopsSum / c.hopsSeen), max: c.hopsMax, source: `response header ${c.hopsHeader}` }
    : {
        mean: 1,
        max: 1,
        source: "not reported by the broker in a header: see shards.do_requests_per_client",
        broker_note: shardNote,
      },
  broker_process: watched.length
    ? {
        pids: watched,
        rss_mb_at_start: mb(procAtStart?.rssBytes),
        rss_mb_avg_window: mb(windowSamples.length ? windowSamples.reduce((s, x) => s + x.rss, 0) / windowSamples.length : null),
        rss_mb_peak: mb(samples.length ? Math.max(...samples.map((s) => s.rss)) : null),
        rss_mb_at_end: mb(samples.length ? samples[samples.length - 1].rss : null),
        rss_mb_window_first: mb(windowSamples.length ? windowSamples[0].rss : null),
        // Least-squares slope of RSS over the window: how flat memory stayed.
        rss_mb_per_minute_window: rssSlope(windowSamples),
        cpu_pct_of_one_core_window:
          procStart && procEnd ? r1(((procEnd.cpuTicks - procStart.cpuTicks) / CLK_TCK / win) * 100) : null,
        cpu_pct_peak_1s: samples.length ? r1(Math.max(...samples.map((s) => s.cpuPct))) : null,
      }
    : null,
  generator: {
    cpu_pct_of_one_core_window: r1(((cpuEnd.user + cpuEnd.system) / 1000 / (win * 1000)) * 100),
    event_loop_utilization_window: Math.round(elu.utilization * 100) / 100,
    requests_cut_at_end: cut,
    resets_on_reused_keepalive_sockets: c.resetsOnReusedSocket,
  },
  machine: {
    // Busy share of each core during the window, all processes included: compare with the
    // broker's and the generator's own CPU to see what else ran (other work, shared hosts).
    core_busy_pct_window:
      coresStart && coresEnd && coresStart.length === coresEnd.length
        ? coresEnd.map(([b, t], i) => r1((100 * (b - coresStart[i][0])) / Math.max(1, t - coresStart[i][1])))
        : null,
    loadavg_at_window_start: loadStart,
    loadavg_at_window_end: loadEnd,
    cores: os.cpus().length,
    cpu_model: os.cpus()[0]?.model?.trim() ?? null,
  },
  broker_debug: { before: debugBefore, after: debugAfter },
};

// Requests per shard per second over the window, and Durable Object requests per client: the
// shards' offer requests over the offers they decided (a client's last shard decides it).
function shardFigures() {
  if (!shardsStart || !shardsEnd) return null;
  const n = shardsEnd.length;
  const delta = (key) => shardsEnd.map((v, i) => (v?.[key] ?? 0) - (shardsStart[i]?.[key] ?? 0));
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  const secs = (snapEnd.t - snapStart.t) / 1000;
  const total = delta("total");
  const ended = sum(delta("ended"));
  return {
    count: n,
    requests_per_shard_per_s: { mean: r1(sum(total) / n / secs), max: r1(Math.max(...total) / secs) },
    do_requests_per_client: ended > 0 ? Math.round((sum(delta("offer")) / ended) * 1000) / 1000 : null,
  };
}

function fmtMap(m) {
  const e = Object.entries(m);
  return e.length ? e.map(([k, v]) => `${k}: ${v}`).join(", ") : "none";
}

if (opt.json) {
  console.log(JSON.stringify(report, null, 2));
} else {
  const R = report;
  const L = R.latency_ms;
  const out = [];
  out.push(`snowflake broker load test${R.label ? ` (${R.label})` : ""}: ${R.url}`);
  const clientsWhat = closedLoop
    ? `${opt.concurrency} closed-loop clients (each posts its next offer as soon as its last one ended)`
    : `${opt.rate} clients/s ${opt.arrivals}`;
  out.push(
    `  ${opt.proxies} proxies (NAT ${parsed["proxy-nat"]}), ${clientsWhat} (NAT ${parsed["client-nat"]}); ` +
      `window ${R.window_s} s after ${opt.ramp + opt.warmup} s ramp/warm-up`,
  );
  out.push(
    `proxy polls      ${R.rates.polls_per_s}/s  (client match ${c.pollMatch}, no match ${c.pollNoMatch}, ` +
      `refused: matcher full ${c.pollRefused}, incorrect relay pattern ${c.pollBadPattern}, other ${fmtMap(c.pollOther)}; ` +
      `abandoned by the edge ${c.pollAbandoned}; ` +
      `HTTP errors ${fmtMap(c.pollHttp)}; network errors ${fmtMap(c.pollNet)})`,
  );
  out.push(
    `matches          ${R.rates.matches_per_s}/s` +
      (closedLoop
        ? `  (closed loop, ${opt.concurrency} client slots: the broker's max rendezvous rate at ${opt.proxies} proxies)`
        : ""),
  );
  if (R.flood) {
    out.push(
      `flood            ${R.flood.concurrent} polls at once from ${R.flood.address}: ${R.flood.polls} polls, ` +
        `refused ${R.flood.refused}, no match ${R.flood.no_match}, handed an honest client ${R.flood.handed_a_client}, ` +
        `errors ${R.flood.errors}; honest polls refused ${r1(R.polls.honest_refused_fraction * 100)}%`,
    );
  }
  out.push(
    `answers          ${R.rates.answers_per_s}/s  (success ${c.answerSuccess}, client gone ${c.answerGone}, ` +
      `other ${fmtMap(c.answerOther)}; HTTP errors ${fmtMap(c.answerHttp)}; network errors ${fmtMap(c.answerNet)})`,
  );
  out.push(
    `clients          ${c.clientsLaunched} launched (${R.rates.clients_per_s}/s): answered ${c.answered}, ` +
      `denied "no snowflake proxies" ${c.denied}, broker timeout ${c.brokerTimeout}, ` +
      `generator timeout ${c.genTimeout}, mismatches ${c.mismatch}, ` +
      `other errors ${fmtMap(c.clientOtherError)}, HTTP errors ${fmtMap(c.clientHttp)}, ` +
      `network errors ${fmtMap(c.clientNet)}, skipped ${c.clientsSkipped}, unfinished ${clientsUnfinished}`,
  );
  out.push(
    `client latency   answered: p50 ${L.answered.p50} p90 ${L.answered.p90} p99 ${L.answered.p99} max ${L.answered.max} ms ` +
      `(all responses: p50 ${L.all_responses.p50} p99 ${L.all_responses.p99} max ${L.all_responses.max} ms)`,
  );
  out.push(
    `poll latency     no match: p50 ${L.poll_no_match.p50} p99 ${L.poll_no_match.p99} max ${L.poll_no_match.max} ms; ` +
      `refused (full): p50 ${L.poll_refused.p50} p99 ${L.poll_refused.p99} max ${L.poll_refused.max} ms`,
  );
  if (L.network_errors_after.n) {
    const E = L.network_errors_after;
    const F = R.first_network_error;
    out.push(
      `network errors   ${E.n}, after p50 ${E.p50} p99 ${E.p99} max ${E.max} ms (time from sending the request); ` +
        `first at ${F.t_s} s (${F.code} on ${F.endpoint}) with ${F.open_polls} polls, ${F.open_clients} clients and ` +
        `${F.open_answers} answers open`,
    );
  }
  out.push(
    `requests sent    ${R.requests_sent.total} (${R.requests_sent.proxy} /proxy, ${R.requests_sent.client} /client, ` +
      `${R.requests_sent.answer} /answer, ${R.requests_sent.debug} /debug): on Cloudflare, as many Worker and Durable Object requests`,
  );
  if (R.shards) {
    out.push(
      `matcher shards   ${R.shards.count}: requests per shard ${R.shards.requests_per_shard_per_s.mean}/s mean, ` +
        `${R.shards.requests_per_shard_per_s.max}/s busiest; DO requests per client ${R.shards.do_requests_per_client}`,
    );
  } else {
    out.push(`hops per client  ${R.hops_per_client.mean} (${R.hops_per_client.source})`);
  }
  if (R.broker_process) {
    const B = R.broker_process;
    out.push(
      `broker process   pids ${B.pids.join(",")}: RSS start ${B.rss_mb_at_start} MB, avg ${B.rss_mb_avg_window} MB, ` +
        `peak ${B.rss_mb_peak} MB, end ${B.rss_mb_at_end} MB, slope over the window ${B.rss_mb_per_minute_window} MB/min; CPU ${B.cpu_pct_of_one_core_window}% of one core ` +
        `(peak 1 s: ${B.cpu_pct_peak_1s}%)`,
    );
  } else {
    out.push("broker process   not sampled (give --pid or --workerd when the broker runs on this machine)");
  }
  out.push(
    `generator        CPU ${R.generator.cpu_pct_of_one_core_window}% of one core, event-loop utilisation ` +
      `${R.generator.event_loop_utilization_window}${R.generator.event_loop_utilization_window > 0.9 ? " (the generator itself is saturated: figures are a lower bound)" : ""}` +
      `; requests cut at the end ${cut}`,
  );
  if (R.window_s > opt.duration * 1.05) {
    out.push(`note             the window lasted ${R.window_s} s instead of ${opt.duration} s: the generator's timers ran late`);
  }
  if (R.machine.core_busy_pct_window) {
    out.push(
      `machine          cores busy ${R.machine.core_busy_pct_window.map((x) => `${x}%`).join(" / ")} during the window ` +
        `(every process); load average ${R.machine.loadavg_at_window_start?.[0]} -> ${R.machine.loadavg_at_window_end?.[0]}`,
    );
  }
  if (debugAfter && debugAfter.sessions !== undefined) {
    out.push(`broker /debug    sessions after the run: ${debugAfter.sessions ?? debugAfter.error}`);
  }
  console.log(out.join("\n"));
}
process.exit(0);
