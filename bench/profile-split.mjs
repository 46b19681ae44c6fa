// Reads `perf script -F period,ip,sym` on stdin (bench/profile.sh) and prints where the
// sampled core's time went: the share with our own code (the wasm module and its JavaScript
// glue) on the stack against the runtime's work alone (HTTP, dispatch, GC), and the busiest
// symbols. It does not split the Worker from the Durable Object: both run in one isolate,
// their futures are polled from the same microtask queue, and the optimizer merges their
// wasm functions, so symbol names cannot say which side a sample belongs to. With the load
// report it turns shares into milliseconds of CPU per rendezvous.
// Usage: perf script -F period,ip,sym … | node bench/profile-split.mjs [report.json]

import fs from "node:fs";

const OURS = /snowflake_broker|index\.js|entry\.mjs|wasm-function|JS:/;

const text = fs.readFileSync(0, "utf8");
const totals = { ours: 0, runtime: 0 };
const self = new Map();
let all = 0;
for (const sample of text.split("\n\n")) {
  const lines = sample.split("\n").map((l) => l.trim()).filter(Boolean);
  if (lines.length === 0) continue;
  // The first line holds the sample's period; its frames follow, innermost first, as "ip sym".
  const period = Number(lines[0]) || 1;
  const frames = lines.slice(1).map((f) => f.replace(/^[0-9a-f]+\s+/, ""));
  all += period;
  const leaf = frames[0] || "?";
  self.set(leaf, (self.get(leaf) ?? 0) + period);
  const ours = frames.find((f) => OURS.test(f) && !/Builtins_|Stub:/.test(f));
  totals[ours === undefined ? "runtime" : "ours"] += period;
}
if (all === 0) {
  console.error("profile-split: no samples on stdin");
  process.exit(1);
}
let perRendezvous = null;
const reportFile = process.argv[2];
if (reportFile && fs.existsSync(reportFile)) {
  const r = JSON.parse(fs.readFileSync(reportFile, "utf8"));
  const cpu = r.broker_process?.cpu_pct_of_one_core_window;
  const matches = r.rates?.matches_per_s;
  if (cpu && matches) {
    perRendezvous = (10 * cpu) / matches; // ms of CPU per rendezvous
    console.log(`load: ${matches} rendezvous/s, server CPU ${cpu}% of one core: ${perRendezvous.toFixed(2)} ms per rendezvous`);
  }
}
const pct = (n) => (100 * n) / all;
for (const [name, label] of [
  ["ours", "our code on the stack (wasm + JS glue)"],
  ["runtime", "runtime only (HTTP, dispatch, GC)"],
]) {
  const ms = perRendezvous === null ? "" : `  ${((perRendezvous * pct(totals[name])) / 100).toFixed(2)} ms/rendezvous`;
  console.log(`${label.padEnd(40)} ${pct(totals[name]).toFixed(1).padStart(5)}%${ms}`);
}
console.log("\nbusiest symbols (self time):");
for (const [name, n] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
  console.log(`${pct(n).toFixed(1).padStart(5)}%  ${name.slice(0, 110)}`);
}
