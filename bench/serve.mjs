// Serves the built Worker (build/entry.mjs around build/index.js + build/index_bg.wasm) on loopback with Miniflare,
// for bench/run-local.sh. It builds nothing: run `make build` first.
//
// Usage: node bench/serve.mjs [--runtime miniflare|workerd] [--port 0] [--script build/entry.mjs]
//                              [--log FILE] [--edge]
//
// --runtime miniflare (default): Miniflare 4, as `wrangler dev` and the Worker tests run it.
//   Miniflare puts its own entry Worker in front of ours (it adds `request.cf` and more), so
//   every request costs one extra in-process hop.
// --runtime workerd: the same workerd binary, started directly from a generated config
//   (tmp dir; the Matcher is SQLite-backed on local disk), with no Miniflare entry Worker in
//   front; no `request.cf` (proxy countries are unknown). Closest to docs/design.md §4's
//   "minimal matcher under `workerd serve`" measurement.
//
// --edge: put tests/support/edge.mjs in front of the broker (as Cloudflare's edge is in
//   production): it abandons a request carrying `x-test-abandon-after-ms` after that long, as
//   the edge does when the caller's connection closes (local workerd does not notice a closed
//   connection while a response is pending). loadgen's --abandon relies on it.
//
// Settings: every environment variable named in the README's settings table that is set
// (non-empty) is passed to the Worker as a string binding, under the same name as the
// wrangler [vars].
//
// WORKERD_VERBOSE=1 (with --runtime workerd) adds workerd's --verbose: its own diagnostics
// (uncaught exceptions, broken connections) go to --log beside the Worker's lines.
//
// WORKERD_V8_FLAGS="--perf-basic-prof" (with --runtime workerd) passes V8 flags to workerd;
// that one writes /tmp/perf-<pid>.map so `perf report` names JavaScript and wasm frames.
//
// WORKERD_INSPECTOR=127.0.0.1:9229 (with --runtime workerd) opens V8's inspector there, for
// heap figures and snapshots of the running isolates (bench/heap.mjs reads them).
//
// Prints one line {"event":"ready","url":"http://127.0.0.1:PORT/","pid":<pid>,"runtime":…}
// on stdout once the Worker answers (pid: the workerd process). The Worker's own output (one
// JSON line per request) goes to --log (default: discarded). SIGTERM/SIGINT stop it.

import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { parseArgs } from "node:util";
import { Miniflare, Log, LogLevel } from "miniflare";
import {
  COMPATIBILITY_DATE,
  COMPATIBILITY_FLAGS,
  DEFAULT_SCRIPT,
  REPO,
  behindEdge,
  miniflareOptions,
  settingsFromEnv,
} from "../tests/support/worker.mjs";


const root = REPO;
const { values } = parseArgs({
  options: {
    runtime: { type: "string", default: "miniflare" },
    port: { type: "string", default: "0" },
    script: { type: "string", default: DEFAULT_SCRIPT },
    log: { type: "string", default: "" },
    edge: { type: "boolean", default: false },
  },
});

if (!fs.existsSync(values.script)) {
  console.error(`serve: ${values.script} does not exist; run \`make build\` first`);
  process.exit(2);
}

const bindings = settingsFromEnv();

/** The workerd child Miniflare started (the process that serves the requests). */
function workerdPid() {
  try {
    const children = fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8");
    for (const pid of children.trim().split(/\s+/).filter(Boolean)) {
      if (fs.readFileSync(`/proc/${pid}/comm`, "utf8").includes("workerd")) return Number(pid);
    }
  } catch {
    // not Linux, or no children file
  }
  return process.pid;
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const capnpString = (s) => JSON.stringify(String(s)); // capnp text literals escape like JSON

async function serveWorkerd() {
  const binary = path.join(root, "node_modules/@cloudflare/workerd-linux-64/bin/workerd");
  if (!fs.existsSync(binary)) {
    console.error(`serve: ${binary} not found (npm ci installs it with wrangler/miniflare)`);
    process.exit(2);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "snowflake-bench-"));
  fs.mkdirSync(path.join(dir, "do"));
  const built = path.dirname(path.resolve(values.script));
  fs.symlinkSync(path.resolve(values.script), path.join(dir, "entry.mjs"));
  fs.symlinkSync(path.join(built, "index.js"), path.join(dir, "index.js"));
  fs.symlinkSync(path.join(built, "index_bg.wasm"), path.join(dir, "index_bg.wasm"));
  fs.symlinkSync(path.join(root, "tests/support/edge.mjs"), path.join(dir, "edge.mjs"));
  const port = Number(values.port) || (await freePort());
  // e.g. WORKERD_V8_FLAGS="--perf-basic-prof" for `perf record` (bench/README.md, "Profiling").
  const v8Flags = (process.env.WORKERD_V8_FLAGS ?? "").split(/\s+/).filter(Boolean);
  const vars = Object.entries(bindings).map(([k, v]) => `    (name = ${capnpString(k)}, text = ${capnpString(v)}),\n`).join("");
  fs.writeFileSync(
    path.join(dir, "config.capnp"),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = ${values.edge ? ".edge" : ".broker"}),
    (name = "broker", worker = .broker),
    (name = "do-disk", disk = (path = ${capnpString(path.join(dir, "do"))}, writable = true)),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
  v8Flags = [${v8Flags.map(capnpString).join(", ")}],
);
const edge :Workerd.Worker = (
  modules = [ (name = "edge.mjs", esModule = embed "edge.mjs") ],
  compatibilityDate = ${capnpString(COMPATIBILITY_DATE)},
  bindings = [ (name = "BROKER", service = "broker") ],
);
const broker :Workerd.Worker = (
  modules = [
    (name = "entry.mjs", esModule = embed "entry.mjs"),
    (name = "index.js", esModule = embed "index.js"),
    (name = "index_bg.wasm", wasm = embed "index_bg.wasm"),
  ],
  compatibilityDate = ${capnpString(COMPATIBILITY_DATE)},
  compatibilityFlags = [${COMPATIBILITY_FLAGS.map(capnpString).join(", ")}],
  bindings = [
    (name = "MATCHER", durableObjectNamespace = "Matcher"),
${vars}  ],
  durableObjectNamespaces = [
    (className = "Matcher", uniqueKey = "snowflake-broker-bench-matcher", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "do-disk"),
);
`,
  );
  const out = values.log ? fs.openSync(values.log, "w") : "ignore";
  const extra = [
    ...(process.env.WORKERD_VERBOSE ? ["--verbose"] : []),
    ...(process.env.WORKERD_INSPECTOR ? [`--inspector-addr=${process.env.WORKERD_INSPECTOR}`] : []),
  ];
  const child = spawn(binary, ["serve", path.join(dir, "config.capnp"), "--experimental", ...extra], {
    cwd: dir,
    stdio: ["ignore", out, out],
  });
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    child.kill("SIGTERM");
    setTimeout(() => {
      child.kill("SIGKILL");
      cleanup();
      process.exit(0);
    }, 3000).unref();
  };
  child.on("exit", (code, signal) => {
    cleanup();
    if (!stopping) console.error(`serve: workerd exited (${code ?? signal})`);
    process.exit(stopping ? 0 : 1);
  });
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  const url = `http://127.0.0.1:${port}/`;
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      const res = await fetch(url + "robots.txt");
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      console.error("serve: workerd did not answer within 30 s");
      stop();
      return new Promise(() => {});
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  console.error(`serve: settings ${JSON.stringify(bindings)}`);
  console.log(JSON.stringify({ event: "ready", url, pid: child.pid, runtime: "workerd" }));
  return new Promise(() => {}); // serve until signalled
}

if (values.runtime === "workerd") {
  await serveWorkerd();
} else if (values.runtime !== "miniflare") {
  console.error(`serve: --runtime must be miniflare or workerd`);
  process.exit(2);
}

const logStream = values.log ? fs.createWriteStream(values.log) : null;
const sink = (stream) => {
  if (logStream) stream.pipe(logStream, { end: false });
  else stream.resume();
};

const options = miniflareOptions({
  script: values.script,
  settings: bindings,
  host: "127.0.0.1",
  port: Number(values.port),
  log: new Log(LogLevel.WARN),
  handleRuntimeStdio(stdout, stderr) {
    sink(stdout);
    sink(stderr);
  },
});
const mf = new Miniflare(values.edge ? behindEdge(options) : options);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  // Never hang on the way out.
  setTimeout(() => process.exit(0), 5000).unref();
  try {
    await mf.dispose();
  } finally {
    process.exit(0);
  }
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

const url = await mf.ready;
console.error(`serve: settings ${JSON.stringify(bindings)}`);
console.log(JSON.stringify({ event: "ready", url: url.href, pid: workerdPid(), runtime: "miniflare" }));
