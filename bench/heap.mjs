// Reads the JavaScript heap of each isolate of a workerd started by bench/serve.mjs with
// WORKERD_INSPECTOR=ADDR, through V8's inspector protocol: used and total heap, before and
// after a full garbage collection. What survives a full collection is what the isolate keeps;
// if that grows with the requests served, something is retained per request.
//
// Usage: node bench/heap.mjs [--inspector 127.0.0.1:9229] [--no-gc] [--snapshot PREFIX]
//                            [--every SECONDS --count N]
//
// --snapshot PREFIX writes PREFIX-<target>.heapsnapshot (after the collection), for Chrome's
// DevTools (Memory tab, "Load") or any heap-snapshot reader.
// Prints one JSON line per isolate and reading.

import fs from "node:fs";
import { parseArgs } from "node:util";
import WebSocket from "ws";

const { values } = parseArgs({
  options: {
    inspector: { type: "string", default: "127.0.0.1:9229" },
    "no-gc": { type: "boolean", default: false },
    snapshot: { type: "string", default: "" },
    every: { type: "string", default: "0" },
    count: { type: "string", default: "1" },
  },
});

const CALL_MS = 60_000;

/** One inspector session: `call(method, params)` resolves with the result. */
async function session(url) {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 2 ** 31 });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${url}: no connection within ${CALL_MS} ms`)), CALL_MS);
    ws.once("open", () => (clearTimeout(timer), resolve()));
    ws.once("error", (e) => (clearTimeout(timer), reject(e)));
  });
  let next = 1;
  const pending = new Map();
  const chunks = [];
  ws.on("message", (data) => {
    const msg = JSON.parse(data.toString());
    if (msg.method === "HeapProfiler.addHeapSnapshotChunk") chunks.push(msg.params.chunk);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(`${msg.error.message}`));
      else resolve(msg.result);
    }
  });
  // Bounded: an inspector that never answers (it was seen to, once) must not hang the run.
  const call = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`${method}: no answer from the inspector within ${CALL_MS} ms`));
      }, CALL_MS);
      const settle = (f) => (v) => {
        clearTimeout(timer);
        f(v);
      };
      pending.set(id, { resolve: settle(resolve), reject: settle(reject) });
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { call, chunks, close: () => ws.close() };
}

const mb = (n) => Math.round((n / 1048576) * 10) / 10;

async function reading() {
  const targets = await (await fetch(`http://${values.inspector}/json/list`, { signal: AbortSignal.timeout(CALL_MS) })).json();
  for (const [i, target] of targets.entries()) {
    const s = await session(target.webSocketDebuggerUrl);
    try {
      const before = await s.call("Runtime.getHeapUsage");
      const line = { at: new Date().toISOString(), target: target.title ?? target.id, usedMB: mb(before.usedSize), totalMB: mb(before.totalSize) };
      if (!values["no-gc"]) {
        const t0 = Date.now();
        await s.call("HeapProfiler.collectGarbage");
        const after = await s.call("Runtime.getHeapUsage");
        Object.assign(line, { afterGcUsedMB: mb(after.usedSize), afterGcTotalMB: mb(after.totalSize), gcMs: Date.now() - t0 });
      }
      if (values.snapshot) {
        await s.call("HeapProfiler.enable");
        await s.call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
        const file = `${values.snapshot}-${i}.heapsnapshot`;
        fs.writeFileSync(file, s.chunks.join(""));
        line.snapshot = file;
      }
      console.log(JSON.stringify(line));
    } finally {
      s.close();
    }
  }
}

const count = Number(values.count);
for (let n = 0; n < count; n++) {
  if (n > 0) await new Promise((r) => setTimeout(r, Number(values.every) * 1000));
  await reading();
}
