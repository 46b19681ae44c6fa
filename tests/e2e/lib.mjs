// Shared plumbing for the end-to-end tests: process bookkeeping (every process is started in
// its own process group, logged to a file, and stopped at the end), private network
// namespaces, the broker (the built Worker under Miniflare, or BROKER_URL) and the forwarders
// that join the namespaces to it.

import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { freePort } from "../support/ports.mjs";

export const E2E_DIR = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(E2E_DIR, "../..");

// The fingerprint every Go client asks for by default (snowflake-01).
export const FINGERPRINT = "2B280B23E1107BB62ABFC40DDCC8824814F80A72";

// Fixed addresses inside the private namespaces. Nothing else listens there, so fixed ports
// cannot collide with anything on the machine; they also let a broker started by hand (see
// BROKER_URL in README.md) be given matching settings.
export const NS = {
  broker: "127.0.0.1:8787", // forwarder to the broker
  stun: "127.0.0.1:3478", // STUN primary address; the alternate one is 127.0.0.2:3479
  stunAlt: "127.0.0.2:3479",
  relay: "127.0.0.1:8081", // WebSocket relay (the bridge)
  page: "127.0.0.1:8300", // the browser test's page, another origin than the broker
  ampCache: "127.0.0.1:8790", // the AMP cache stand-in (amp-cache.mjs), the AMP client's front
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function isLoopbackHost(host) {
  return /^127\.\d+\.\d+\.\d+$/.test(host) || host === "localhost" || host === "[::1]" || host === "::1";
}

// One child process: output goes to a log file; lines can be awaited.
class Proc {
  constructor(runner, name, child, logFile) {
    this.runner = runner;
    this.name = name;
    this.child = child;
    this.pid = child.pid;
    this.logFile = logFile;
    this.lines = [];
    this.waiters = [];
    this.exitCode = undefined;
    this.exited = new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        this.exitCode = code ?? signal;
        resolve(this.exitCode);
        // Let readline deliver the last lines first.
        setTimeout(() => {
          for (const w of this.waiters.splice(0)) {
            w.reject(new Error(`${name} exited (${this.exitCode}) while waiting for ${w.what}; last output: ${this.tail()}`));
          }
        }, 100);
      });
    });
    child.on("error", (e) => runner.note(`${name}: ${e.message}`));
  }

  _line(line) {
    this.lines.push(line);
    for (const w of [...this.waiters]) {
      const m = w.re.exec(line);
      if (m) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  }

  tail(n = 5) {
    return this.lines.slice(-n).join(" | ");
  }

  // Resolves to the regexp match of the first output line (past or future) matching re.
  waitForLine(re, timeoutMs, what = String(re)) {
    for (const l of this.lines) {
      const m = re.exec(l);
      if (m) return Promise.resolve(m);
    }
    if (this.exitCode !== undefined) {
      return Promise.reject(new Error(`${this.name} has exited (${this.exitCode}); never saw ${what}; last output: ${this.tail()}`));
    }
    return new Promise((resolve, reject) => {
      const w = { re, what, resolve, reject };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms (log: ${this.logFile})`));
        }
      }, timeoutMs);
    });
  }

  // JSON lines printed by our helper servers.
  async waitForEvent(event, timeoutMs) {
    const m = await this.waitForLine(new RegExp(`^\\{"event":"${event}"`), timeoutMs, `event ${event}`);
    return JSON.parse(m.input);
  }

  events(event) {
    return this.lines.filter((l) => l.startsWith(`{"event":"${event}"`)).map((l) => JSON.parse(l));
  }
}

export class Runner {
  constructor({ logDir, runDir, verbose = false }) {
    this.logDir = logDir;
    this.runDir = runDir;
    this.verbose = verbose;
    this.procs = [];
    fs.mkdirSync(logDir, { recursive: true });
    fs.mkdirSync(runDir, { recursive: true });
    this.mainLog = fs.createWriteStream(path.join(logDir, "harness.log"), { flags: "a" });
  }

  note(msg) {
    const line = `${new Date().toISOString()} ${msg}`;
    this.mainLog.write(line + "\n");
    if (this.verbose) console.error(line);
  }

  // Starts cmd in its own process group (so that its children can be stopped with it).
  // opts.netns: a namespace from createNetns; opts.env: extra environment; opts.stdin: "pipe"
  // keeps stdin open (for TOR_PT_EXIT_ON_STDIN_CLOSE).
  spawn(name, cmd, args = [], opts = {}) {
    let argv = [cmd, ...args];
    if (opts.netns) argv = ["nsenter", "-t", String(opts.netns.pid), "-n", "--", ...argv];
    const logFile = path.join(this.logDir, `${name}.log`);
    const out = fs.openSync(logFile, "a");
    fs.writeSync(out, `# ${argv.join(" ")}\n`);
    const child = spawn(argv[0], argv.slice(1), {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, ...(opts.env ?? {}) },
      stdio: [opts.stdin ?? "ignore", "pipe", "pipe"],
      detached: true,
    });
    const proc = new Proc(this, name, child, logFile);
    for (const stream of [child.stdout, child.stderr]) {
      readline.createInterface({ input: stream }).on("line", (line) => {
        fs.writeSync(out, line + "\n");
        proc._line(line);
      });
    }
    proc.exited.then(() => {
      // Let readline flush what it has before closing the file.
      setTimeout(() => fs.close(out, () => {}), 200);
    });
    this.procs.push(proc);
    this.note(`started ${name} (pid ${child.pid}): ${argv.join(" ")}`);
    return proc;
  }

  // Stops one process group: SIGTERM, then SIGKILL after graceMs.
  async stop(proc, graceMs = 3000) {
    if (proc.exitCode !== undefined) return;
    const signal = (sig) => {
      try {
        process.kill(-proc.pid, sig);
      } catch {}
    };
    const t0 = Date.now();
    signal("SIGTERM");
    const t = setTimeout(() => {
      this.note(`${proc.name} did not stop within ${graceMs} ms; killing it`);
      signal("SIGKILL");
    }, graceMs);
    await proc.exited;
    clearTimeout(t);
    this.note(`stopped ${proc.name} (${proc.exitCode}) in ${Date.now() - t0} ms`);
    // Children of the group that outlived its leader.
    signal("SIGKILL");
  }

  async stopAll() {
    await Promise.all([...this.procs].reverse().map((p) => this.stop(p)));
    this.note("all processes stopped");
  }
}

// Creates a private network namespace that has only `lo` (plus, with veth: true, a veth pair
// whose both ends stay inside it, so that Chromium has a non-loopback interface to gather ICE
// host candidates on). There is no default route: no packet can leave the namespace.
// The namespace lives as long as its holder process (`sleep`).
export async function createNetns(runner, name, { veth = false } = {}) {
  const setup = ["ip link set lo up"];
  if (veth) {
    setup.push(
      "ip link add e2e0 type veth peer name e2e1",
      "ip addr add 10.255.0.1/30 dev e2e0",
      "ip addr add 10.255.0.2/30 dev e2e1",
      "ip link set e2e0 up",
      "ip link set e2e1 up",
    );
  }
  setup.push("echo netns-ready", "exec sleep 100000");
  const holder = runner.spawn(`netns-${name}`, "unshare", ["--net", "--", "sh", "-ec", setup.join("\n")]);
  await holder.waitForLine(/^netns-ready$/, 10000, "namespace set-up");
  return { name, pid: holder.pid, holder };
}

// The broker: BROKER_URL if given (it must be on loopback), otherwise the built Worker under
// Miniflare (broker.mjs) with the given settings. Also starts the root-namespace end of the
// forwarder: a Unix socket that the namespaces' forwarders connect to.
// `name` tells the brokers of one run apart (process and log names, socket path).
export async function startBroker(runner, settings, name = "broker") {
  let url = process.env.BROKER_URL;
  if (url) {
    const u = new URL(url);
    if (!isLoopbackHost(u.hostname) || u.protocol !== "http:") {
      throw new Error(`BROKER_URL must be an http:// URL on loopback, not ${url}`);
    }
    if (!url.endsWith("/")) url += "/";
    runner.note(`using the broker at ${url}; it must have been started with these settings: ${JSON.stringify(settings)}`);
  } else {
    const env = {};
    for (const [k, v] of Object.entries(settings)) env[k] = v;
    const proc = runner.spawn(name, "node", [path.join(E2E_DIR, "broker.mjs"), "--port", "0"], { env });
    url = (await proc.waitForEvent("ready", 60000)).url;
  }
  try {
    await fetch(new URL("robots.txt", url));
  } catch (e) {
    throw new Error(`the broker at ${url} does not answer: ${e.cause?.message ?? e.message}`);
  }
  const u = new URL(url);
  const sock = path.join(runner.runDir, `${name}.sock`);
  const fwd = runner.spawn(`forward-root-${name}`, "node", [
    path.join(E2E_DIR, "forward.mjs"),
    "--listen",
    `unix:${sock}`,
    "--connect",
    `${u.hostname === "localhost" ? "127.0.0.1" : u.hostname}:${u.port || 80}`,
  ]);
  await fwd.waitForEvent("ready", 10000);
  return { url, sock, target: `${u.hostname === "localhost" ? "127.0.0.1" : u.hostname}:${u.port || 80}` };
}

// Loopback addresses given to peers by forwardBrokerForPeer (127.0.0.1 and .2 are taken).
let nextPeerAddress = 40;

// Starts, inside a namespace, a path to the broker for one peer that the broker sees coming from
// an address of its own (127.0.0.N), as every proxy on the Internet has: PROXY_POLL_INTERVAL_MS
// and MAX_POLLS_PER_ADDRESS count by address, so proxies sharing one would hold each other back.
// Returns the broker URL for that peer.
export async function forwardBrokerForPeer(runner, netns, broker, name) {
  const host = `127.0.0.${nextPeerAddress++}`;
  const sock = path.join(runner.runDir, `broker-${name}.sock`);
  const root = runner.spawn(`forward-root-${name}`, "node", [
    path.join(E2E_DIR, "forward.mjs"), "--listen", `unix:${sock}`, "--connect", broker.target, "--local-address", host,
  ]);
  await root.waitForEvent("ready", 10000);
  const inside = runner.spawn(`forward-${netns.name}-${name}`, "node", [
    path.join(E2E_DIR, "forward.mjs"), "--listen", `${host}:${NS.broker.split(":")[1]}`, "--connect", `unix:${sock}`,
  ], { netns });
  await inside.waitForEvent("ready", 10000);
  return `http://${host}:${NS.broker.split(":")[1]}/`;
}

// Starts, inside a namespace, the forwarder that makes the broker reachable at NS.broker.
export async function forwardBrokerInto(runner, netns, broker) {
  const fwd = runner.spawn(`forward-${netns.name}`, "node", [
    path.join(E2E_DIR, "forward.mjs"),
    "--listen",
    NS.broker,
    "--connect",
    `unix:${broker.sock}`,
  ], { netns });
  await fwd.waitForEvent("ready", 10000);
  return `http://${NS.broker}/`;
}

// The number of proxies the broker's GET /debug counts ("current snowflakes available"), or
// null if it cannot be read.
export async function brokerProxyCount(brokerUrl) {
  try {
    const text = await (await fetch(new URL("debug", brokerUrl))).text();
    const m = /current snowflakes available: (\d+)/.exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// Waits until the broker counts a number of proxies that satisfies ok(n); returns the last
// count (null: unreadable). Only paces the tests; it asserts nothing.
export async function waitForProxyCount(brokerUrl, ok, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let n = null;
  while (Date.now() < end) {
    n = await brokerProxyCount(brokerUrl);
    if (n !== null && ok(n)) return n;
    await sleep(250);
  }
  return n;
}

// Result bookkeeping shared by the tests.
export class Checks {
  constructor(test) {
    this.test = test;
    this.list = [];
  }
  check(name, ok, detail = "") {
    this.list.push({ test: this.test, name, ok: !!ok, detail });
    return !!ok;
  }
  // A check that was not made (neither passed nor failed).
  skip(name, detail = "") {
    this.list.push({ test: this.test, name, ok: null, detail });
  }
}

export function randomSid() {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  let s = "";
  for (let i = 0; i < 22; i++) s += alphabet[Math.floor(Math.random() * alphabet.length)];
  return s;
}

// A throw-away CA and a certificate it signs for `host`, in `dir` (ca.pem, <host>.key,
// <host>.pem), made with the openssl command line; valid one day.
export function makeCerts(dir, host) {
  fs.mkdirSync(dir, { recursive: true });
  const run = (args) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
    "-subj", "/CN=snowflake-broker e2e throw-away CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
  run(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${host}.key`, "-out", `${host}.csr`, "-subj", `/CN=${host}`]);
  fs.writeFileSync(path.join(dir, `${host}.ext`), `subjectAltName=DNS:${host}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  run(["x509", "-req", "-in", `${host}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${host}.pem`, "-days", "1", "-extfile", `${host}.ext`]);
  return path.join(dir, "ca.pem");
}

// What a snowflake-proxy logs when it learns its NAT type, gets an offer, connects to a client
// and reaches the relay: 2.5.1's lines, and 2.10.1's where they differ.
export const PROXY_LINES = {
  proxyNat: /NAT type: (\w+)/,
  offer: /sdp offer successfully received\.|Received Offer From Broker:/,
  connected: /Connection successful/,
  relay: /[Cc]onnected to relay: (\S+)/,
};

// Resolves to true when `re` appears in `proc`'s output before `deadline`.
export function seen(proc, re, deadline) {
  return proc.waitForLine(re, Math.max(0, deadline - Date.now())).then(
    () => true,
    () => false,
  );
}

// The flags every test's snowflake-proxy runs with: its broker URL, the namespace's STUN server
// and relay, the run's relay pattern, verbose logs with addresses, no NAT retest, one client
// at a time; then its version's own flags (`peers.proxyFlags`).
export function proxyArgs(brokerUrl, relayPattern, peers) {
  return [
    "-broker", brokerUrl,
    "-stun", `stun:${NS.stun}`,
    "-relay", `ws://${NS.relay}/`,
    "-allowed-relay-hostname-pattern", relayPattern,
    "-allow-non-tls-relay",
    "-verbose",
    "-unsafe-logging",
    "-nat-retest-interval", "0s",
    "-capacity", "1",
    ...peers.proxyFlags,
  ];
}

// moto's SQS-compatible server (`make moto`) on loopback in the root namespace.
export async function startMoto(runner) {
  const bin = process.env.MOTO ?? path.join(E2E_DIR, "../../build/moto/bin/moto_server");
  const port = await freePort();
  const proc = runner.spawn("moto", bin, ["-H", "127.0.0.1", "-p", String(port)]);
  const endpoint = `http://127.0.0.1:${port}`;
  const end = Date.now() + 20000;
  for (;;) {
    try {
      await fetch(`${endpoint}/moto-api/`);
      return { proc, endpoint, target: `127.0.0.1:${port}` };
    } catch {
      if (Date.now() > end) throw new Error("moto did not start");
      await sleep(100);
    }
  }
}

// Makes a root-namespace TCP address reachable inside `netns` at `inside` (host:port).
export async function forwardInto(runner, netns, name, target, inside) {
  const sock = path.join(runner.runDir, `${name}.sock`);
  const root = runner.spawn(`forward-root-${name}`, "node", [path.join(E2E_DIR, "forward.mjs"), "--listen", `unix:${sock}`, "--connect", target]);
  await root.waitForEvent("ready", 10000);
  const fwd = runner.spawn(`forward-${netns.name}-${name}`, "node", [path.join(E2E_DIR, "forward.mjs"), "--listen", inside, "--connect", `unix:${sock}`], { netns });
  await fwd.waitForEvent("ready", 10000);
}
