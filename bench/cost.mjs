#!/usr/bin/env node
// What the broker costs on Cloudflare's Workers Paid price list, per million polls, per
// million rendezvous, and per month for a given load, beside a VM. Arithmetic only: every
// input is an option with the default the README uses, and the output says what was assumed.
//
//   node bench/cost.mjs                         # today's network and a 10x surge
//   node bench/cost.mjs --polls 1000 --clients 44 --shards 8
//
// Prices (docs/platform.md §1.9, checked 2026-12): Worker requests $0.30/M beyond 10 M a
// month, Worker CPU $0.02 per M CPU-ms beyond 30 M, Durable Object requests $0.15/M beyond
// 1 M, DO duration $12.50 per M GB-s beyond 400,000 (an awake object is billed at 128 MB),
// SQLite storage rows written $1.00/M beyond 50 M; base $5 a month.

import { parseArgs } from "node:util";

const { values: o } = parseArgs({
  options: {
    polls: { type: "string" }, // proxy polls per second
    clients: { type: "string" }, // client offers per second (matched or not)
    matched: { type: "string" }, // of which matched (each brings one /answer)
    shards: { type: "string" },
    "cpu-ms": { type: "string", default: "0.75" }, // CPU per request (bench/README.md, "Cost")
    "do-per-client": { type: "string", default: "1.1" }, // shards a client tries (make sim)
    "new-addresses": { type: "string", default: "135000" }, // per day (docs/protocol.md §11)
    "vm-dollars": { type: "string", default: "24" }, // a 2 vCPU / 4 GB VM a month
  },
});
const n = (v) => Number(v);
const MONTH_S = 30 * 86400;

/** Monthly bill and its parts for a load. */
function bill({ polls, clients, matched, shards }) {
  const cpuMs = n(o["cpu-ms"]);
  const workerReq = (polls + clients + matched) * MONTH_S;
  const doReq = (polls + clients * n(o["do-per-client"]) + matched) * MONTH_S;
  const cpu = workerReq * cpuMs;
  const gbS = shards * 0.125 * MONTH_S; // every shard awake all month (polls never stop)
  const rows = (n(o["new-addresses"]) + shards * 2880) * 30; // address rows + snapshots
  const over = (x, free) => Math.max(0, x - free);
  const parts = {
    "Worker requests": (over(workerReq, 10e6) / 1e6) * 0.3,
    "Worker CPU": (over(cpu, 30e6) / 1e6) * 0.02,
    "DO requests": (over(doReq, 1e6) / 1e6) * 0.15,
    "DO duration": (over(gbS, 400e3) / 1e6) * 12.5,
    "storage rows written": (over(rows, 50e6) / 1e6) * 1.0,
    base: 5,
  };
  return { parts, total: Object.values(parts).reduce((a, b) => a + b, 0) };
}

const cpuMs = n(o["cpu-ms"]);
const perMillionPolls = 0.3 + 0.15 + cpuMs * 0.02;
const perMillionRendezvous = 2 * 0.3 + (n(o["do-per-client"]) + 1) * 0.15 + 2 * cpuMs * 0.02;
console.log(`per million polls: $${perMillionPolls.toFixed(3)} (1 Worker + 1 DO request, ${cpuMs} ms CPU)`);
console.log(
  `per million rendezvous: $${perMillionRendezvous.toFixed(3)} (client + answer: 2 Worker requests, ` +
    `${n(o["do-per-client"]) + 1} DO requests, 2 × ${cpuMs} ms CPU; the matched poll is a poll)`,
);

const loads = o.polls
  ? [{ name: "given load", polls: n(o.polls), clients: n(o.clients ?? 44), matched: n(o.matched ?? o.clients ?? 44), shards: n(o.shards ?? 16) }]
  : [
      // docs/protocol.md §11: polls 1,000-4,000/s estimated, 44 matches/s on average.
      { name: "today (2,700 polls/s, 44 clients/s)", polls: 2700, clients: 44, matched: 44, shards: 16 },
      { name: "10x surge (27,000 polls/s, 440 clients/s)", polls: 27000, clients: 440, matched: 440, shards: 64 },
    ];
console.log("");
console.log("| load | shards | Worker requests | Worker CPU | DO requests | DO duration | storage | base | per month | VM |");
console.log("|---|---|---|---|---|---|---|---|---|---|");
for (const load of loads) {
  const { parts, total } = bill(load);
  const d = (x) => `$${x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(2)}`;
  const p = parts;
  // The Go broker does ~7,000 rendezvous/s on one core here (bench/README.md), so one
  // 2-vCPU VM carries today's load; the surge's polls would want about four.
  const vms = load.polls > 10000 ? 4 : 1;
  console.log(
    `| ${load.name} | ${load.shards} | ${d(p["Worker requests"])} | ${d(p["Worker CPU"])} | ${d(p["DO requests"])} | ` +
      `${d(p["DO duration"])} | ${d(p["storage rows written"])} | ${d(p.base)} | **${d(total)}** | ${d(vms * n(o["vm-dollars"]))} (${vms}) |`,
  );
}
