#!/usr/bin/env node
// Compares the floor (a minimal Worker + Durable Object matcher speaking the same protocol)
// with the broker from the reports of `BENCH_COMPARE=1 bench/run-local.sh`: per level, the
// median over rounds of matches/s, client latency p50 and p99, the server process's CPU, CPU
// per rendezvous and errors, for the floor and for the broker, and the ratios broker/floor.
//
// Usage: node bench/compare.mjs [--headline-rate R] [--quiet] DIR
//
// DIR holds the reports and runs.tsv (round, level, impl, shards, script, report: one line per
// run, written by run-local.sh). Writes DIR/compare.txt, DIR/compare.md and DIR/compare.json
// (the input of bench/plot.mjs) and prints the text. --headline-rate (default 300) is the
// sweep rate whose p99 ratio goes into the headline. Standard library only.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

function fail(msg) {
  console.error(`compare: ${msg}`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      "headline-rate": { type: "string", default: "300" },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    allowPositionals: true,
  });
} catch (e) {
  fail(e.message);
}
if (args.values.help || args.positionals.length !== 1) {
  console.error("usage: node bench/compare.mjs [--headline-rate R] [--quiet] DIR   (DIR from BENCH_COMPARE=1 bench/run-local.sh)");
  process.exit(args.values.help ? 0 : 2);
}
const dir = args.positionals[0];
const headlineRate = Number(args.values["headline-rate"]);
if (!Number.isFinite(headlineRate)) fail(`--headline-rate ${args.values["headline-rate"]}: not a number`);

// ---------------------------------------------------------------------------------------------
// The runs.

const manifest = path.join(dir, "runs.tsv");
if (!fs.existsSync(manifest)) fail(`${manifest} is missing: run BENCH_COMPARE=1 bench/run-local.sh first`);
const lines = fs.readFileSync(manifest, "utf8").split("\n").filter(Boolean);
const head = lines.shift().split("\t");
const need = ["round", "level", "impl", "shards", "report"];
for (const k of need) if (!head.includes(k)) fail(`${manifest}: no "${k}" column`);
const rows = lines.map((l) => Object.fromEntries(l.split("\t").map((v, i) => [head[i], v])));
if (rows.length === 0) fail(`${manifest} lists no runs`);

const notes = [];
const sumValues = (o) => Object.values(o ?? {}).reduce((s, v) => s + v, 0);
const num = (x) => (typeof x === "number" && Number.isFinite(x) ? x : null);
const round3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
const round1 = (x) => (x === null ? null : Math.round(x * 10) / 10);

/** What one report says, in the figures compared here. */
function figures(r) {
  const cl = r.clients ?? {};
  const proxyErrors =
    sumValues(r.polls?.http_errors) +
    sumValues(r.polls?.network_errors) +
    sumValues(r.answers?.http_errors) +
    sumValues(r.answers?.network_errors);
  const matches = num(r.rates?.matches_per_s);
  const cpu = num(r.broker_process?.cpu_pct_of_one_core_window);
  const launched = cl.launched ?? 0;
  return {
    matches_per_s: matches,
    p50_ms: num(r.latency_ms?.answered?.p50),
    p99_ms: num(r.latency_ms?.answered?.p99),
    cpu_pct: cpu,
    // Process CPU seconds over the window / rendezvous in the window.
    cpu_ms_per_rendezvous: cpu !== null && matches ? round3((cpu / 100 / matches) * 1000) : null,
    errors: (cl.errors_total ?? 0) + proxyErrors,
    client_errors: cl.errors_total ?? 0,
    proxy_errors: proxyErrors,
    denied: cl.denied_no_proxies ?? 0,
    broker_timeouts: cl.broker_timeout ?? 0,
    answered_pct: launched ? round1((100 * (cl.answered ?? 0)) / launched) : null,
    clients_per_s: num(r.rates?.clients_per_s),
    rss_mb_peak: num(r.broker_process?.rss_mb_peak),
    window_s: num(r.window_s),
    generator_elu: num(r.generator?.event_loop_utilization_window),
    cores_busy_pct: r.machine?.core_busy_pct_window ?? null,
    shards_reported: r.shards?.count ?? null,
  };
}

function parseLevel(s) {
  const [p, load] = s.split(":");
  const proxies = Number(p);
  if (load?.startsWith("c")) {
    const n = Number(load.slice(1));
    return { key: s, kind: "max", proxies, concurrency: n, rate: null, label: `${proxies} p / ${n} closed-loop` };
  }
  const rate = Number(load);
  return { key: s, kind: "rate", proxies, concurrency: null, rate, label: `${proxies} p / ${rate} c/s` };
}

// Series: the floor, and the broker once per shard count when it ran with several.
const shardsOf = (row, report) => (row.shards && row.shards !== "-" ? Number(row.shards) : report?.shards?.count ?? null);
const runs = [];
let machineReport = null;
for (const row of rows) {
  const file = path.join(dir, row.report);
  let report = null;
  try {
    report = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    notes.push(`${row.report}: no report (${e.message.split("\n")[0]}); round ${row.round} of ${row.impl} at ${row.level} left out`);
    continue;
  }
  machineReport ??= report;
  runs.push({ round: Number(row.round), level: row.level, impl: row.impl, shards: shardsOf(row, report), file: row.report, report });
}
if (runs.length === 0) fail("no report could be read");

// One series per implementation, or per implementation and shard count when its runs had
// several (a run whose count is unknown, e.g. its /prometheus read failed, joins the one known
// count if there is only one).
const implShards = new Map();
for (const r of runs) {
  if (!implShards.has(r.impl)) implShards.set(r.impl, new Set());
  if (r.shards !== null) implShards.get(r.impl).add(r.shards);
}
const seriesKey = (r) =>
  implShards.get(r.impl).size > 1 ? `${r.impl} (${r.shards ?? "?"} shard${r.shards === 1 ? "" : "s"})` : r.impl;
const series = [];
for (const r of runs) {
  const key = seriesKey(r);
  if (!series.some((s) => s.key === key)) series.push({ key, impl: r.impl, shards: r.shards });
}
// The floor first, then the broker series by shard count.
series.sort((a, b) => (a.impl === b.impl ? (a.shards ?? 0) - (b.shards ?? 0) : a.impl === "floor" ? -1 : b.impl === "floor" ? 1 : 0));
const floorKey = series.find((s) => s.impl === "floor")?.key ?? null;
if (!floorKey) notes.push("no floor runs: no ratios");

// ---------------------------------------------------------------------------------------------
// Medians per level and series.

const median = (xs) => {
  const v = xs.filter((x) => x !== null).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const range = (xs) => {
  const v = xs.filter((x) => x !== null);
  return v.length ? [Math.min(...v), Math.max(...v)] : null;
};
const ratio = (b, f) => (b !== null && f !== null && f !== 0 ? Math.round((b / f) * 100) / 100 : null);

const MEDIAN_KEYS = ["matches_per_s", "p50_ms", "p99_ms", "cpu_pct", "cpu_ms_per_rendezvous", "errors", "answered_pct", "clients_per_s", "rss_mb_peak"];
const levelKeys = [...new Set(runs.map((r) => r.level))];
const levels = levelKeys.map((lk) => {
  const level = parseLevel(lk);
  const bySeries = {};
  for (const s of series) {
    const mine = runs.filter((r) => r.level === lk && seriesKey(r) === s.key).sort((a, b) => a.round - b.round);
    if (mine.length === 0) continue;
    const rounds = mine.map((r) => ({ round: r.round, file: r.file, ...figures(r.report) }));
    const med = Object.fromEntries(MEDIAN_KEYS.map((k) => [k, round3(median(rounds.map((x) => x[k])))]));
    bySeries[s.key] = {
      n: rounds.length,
      median: med,
      range: {
        matches_per_s: range(rounds.map((x) => x.matches_per_s)),
        p50_ms: range(rounds.map((x) => x.p50_ms)),
        p99_ms: range(rounds.map((x) => x.p99_ms)),
      },
      errors_total: rounds.reduce((a, x) => a + x.errors, 0),
      rounds,
    };
    for (const x of rounds) {
      if (x.generator_elu !== null && x.generator_elu > 0.9) {
        notes.push(`${x.file}: the generator was saturated (event-loop utilisation ${x.generator_elu}): figures are a lower bound`);
      }
      const busy0 = x.cores_busy_pct?.[0];
      if (typeof busy0 === "number" && x.cpu_pct !== null && busy0 - x.cpu_pct > 25) {
        notes.push(`${x.file}: core 0 was ${busy0}% busy, the server used ${x.cpu_pct}%: other work shared its core`);
      }
    }
  }
  const ratios = {};
  const F = floorKey && bySeries[floorKey]?.median;
  if (F) {
    for (const s of series) {
      if (s.key === floorKey || !bySeries[s.key]) continue;
      const B = bySeries[s.key].median;
      ratios[s.key] = {
        matches_per_s: ratio(B.matches_per_s, F.matches_per_s),
        p50_ms: ratio(B.p50_ms, F.p50_ms),
        p99_ms: ratio(B.p99_ms, F.p99_ms),
        cpu_pct: ratio(B.cpu_pct, F.cpu_pct),
        cpu_ms_per_rendezvous: ratio(B.cpu_ms_per_rendezvous, F.cpu_ms_per_rendezvous),
      };
    }
  }
  return { ...level, series: bySeries, ratios };
});
// The max-rate level(s) first, then the sweep by proxies and rate.
levels.sort((a, b) => (a.kind !== b.kind ? (a.kind === "max" ? -1 : 1) : a.proxies - b.proxies || (a.rate ?? a.concurrency) - (b.rate ?? b.concurrency)));

// ---------------------------------------------------------------------------------------------
// The headline: max rendezvous/s, p99 at the headline rate, CPU per rendezvous.

const maxLevel = levels.find((l) => l.kind === "max") ?? null;
const hlLevel = levels.find((l) => l.kind === "rate" && l.rate === headlineRate) ?? null;
if (!hlLevel && levels.some((l) => l.kind === "rate")) notes.push(`no sweep level at ${headlineRate} clients/s: no p99 headline`);
const headline = { max_level: maxLevel?.key ?? null, p99_level: hlLevel?.key ?? null, by_series: {} };
for (const s of series) {
  const M = maxLevel?.series[s.key]?.median;
  const H = hlLevel?.series[s.key]?.median;
  headline.by_series[s.key] = {
    max_rendezvous_per_s: M?.matches_per_s ?? null,
    cpu_ms_per_rendezvous_at_max: M?.cpu_ms_per_rendezvous ?? null,
    p99_ms_at_headline_rate: H?.p99_ms ?? null,
    ratio_to_floor:
      s.key !== floorKey && floorKey
        ? {
            max_rendezvous_per_s: maxLevel?.ratios[s.key]?.matches_per_s ?? null,
            cpu_ms_per_rendezvous_at_max: maxLevel?.ratios[s.key]?.cpu_ms_per_rendezvous ?? null,
            p99_ms_at_headline_rate: hlLevel?.ratios[s.key]?.p99_ms ?? null,
          }
        : undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// The machine and the run, from run-local.sh's settings.txt and the reports.

let settingsLines = [];
try {
  settingsLines = fs.readFileSync(path.join(dir, "settings.txt"), "utf8").split("\n").filter(Boolean);
} catch {
  notes.push("no settings.txt beside the reports");
}
const setting = (prefix) => settingsLines.find((l) => l.startsWith(prefix))?.slice(prefix.length).trim() ?? null;
const date =
  /(\d{4}-\d\d-\d\dT[\d:]+Z)/.exec(settingsLines[0] ?? "")?.[1] ?? machineReport?.started_at ?? null;
// run-local.sh's line: "pinning: broker '…', generator '…'; 2 cores; node v20…".
const [pinning = null, coresText = "", nodeText = ""] = (setting("pinning:") ?? "").split(";").map((x) => x.trim());
const machine = {
  date,
  cores: machineReport?.machine?.cores ?? (Number(/(\d+) cores/.exec(coresText)?.[1]) || os.cpus().length),
  cpu_model: setting("cpu:") || machineReport?.machine?.cpu_model || null,
  pinning: pinning || null,
  node: nodeText.replace(/^node\s*/, "") || null,
  workerd: setting("workerd:")?.replace(/^workerd\s+/, "") ?? null,
  floor_build: setting("floor:"),
  broker_build: setting("broker:"),
  broker_settings: setting("broker settings:"),
};
const rounds = Math.max(...runs.map((r) => r.round));
const durations = [...new Set(runs.map((r) => r.report.settings?.duration_s))];

const result = {
  generated_at: new Date().toISOString(),
  source_dir: path.resolve(dir),
  rounds,
  duration_s: durations.length === 1 ? durations[0] : durations,
  headline_rate: headlineRate,
  machine,
  settings: settingsLines,
  series,
  floor_series: floorKey,
  headline,
  levels,
  notes: [...new Set(notes)],
};

// ---------------------------------------------------------------------------------------------
// Text and Markdown.

const fmt = (x, digits = null) => {
  if (x === null || x === undefined) return "-";
  if (digits !== null) return x.toFixed(digits);
  const a = Math.abs(x);
  return a >= 100 ? String(Math.round(x)) : a >= 10 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
};
const fmtRange = (r) => (r ? `${fmt(r[0])}-${fmt(r[1])}` : "-");
const fmtRatio = (x) => (x === null || x === undefined ? "-" : `${x.toFixed(2)}x`);

const header = [
  "level",
  "series",
  "rounds",
  "matches/s",
  "(range)",
  "p50 ms",
  "p99 ms",
  "(range)",
  "CPU %",
  "CPU ms/rdv",
  "errors med/total",
  "answered %",
];
const table = [];
for (const L of levels) {
  let first = true;
  for (const s of series) {
    const S = L.series[s.key];
    if (!S) continue;
    const M = S.median;
    table.push([
      first ? L.label : "",
      s.key,
      String(S.n),
      fmt(M.matches_per_s),
      fmtRange(S.range.matches_per_s),
      fmt(M.p50_ms),
      fmt(M.p99_ms),
      fmtRange(S.range.p99_ms),
      fmt(M.cpu_pct),
      fmt(M.cpu_ms_per_rendezvous),
      `${fmt(M.errors, 0)}/${S.errors_total}`,
      fmt(M.answered_pct, 1),
    ]);
    first = false;
  }
  for (const [key, R] of Object.entries(L.ratios)) {
    table.push([
      "",
      `${key}/floor`,
      "",
      fmtRatio(R.matches_per_s),
      "",
      fmtRatio(R.p50_ms),
      fmtRatio(R.p99_ms),
      "",
      fmtRatio(R.cpu_pct),
      fmtRatio(R.cpu_ms_per_rendezvous),
      "",
      "",
    ]);
  }
}

const about = [
  `${rounds} round(s) of ${Array.isArray(result.duration_s) ? result.duration_s.join("/") : result.duration_s} s per level, medians over rounds; plain workerd, a fresh server per run`,
  `machine: ${machine.date ?? "?"}; ${machine.cores} cores${machine.cpu_model ? ` (${machine.cpu_model})` : ""}; pinning ${machine.pinning ?? "?"}; ` +
    `node ${machine.node ?? "?"}; workerd ${machine.workerd ?? "?"}`,
  machine.broker_settings ? `settings: ${machine.broker_settings}` : null,
  machine.floor_build ? `floor: ${machine.floor_build}` : null,
  machine.broker_build ? `broker: ${machine.broker_build}` : null,
].filter(Boolean);

const headlineLines = [];
for (const s of series) {
  if (s.key === floorKey) continue;
  const B = headline.by_series[s.key];
  const F = floorKey ? headline.by_series[floorKey] : null;
  const R = B.ratio_to_floor ?? {};
  if (maxLevel) {
    headlineLines.push(
      `max rendezvous/s (${maxLevel.label}): floor ${fmt(F?.max_rendezvous_per_s)}, ${s.key} ${fmt(B.max_rendezvous_per_s)}: ` +
        `${s.key}/floor ${fmtRatio(R.max_rendezvous_per_s)}`,
    );
    headlineLines.push(
      `CPU per rendezvous at the max rate: floor ${fmt(F?.cpu_ms_per_rendezvous_at_max)} ms, ${s.key} ${fmt(B.cpu_ms_per_rendezvous_at_max)} ms: ` +
        `${s.key}/floor ${fmtRatio(R.cpu_ms_per_rendezvous_at_max)}`,
    );
  }
  if (hlLevel) {
    headlineLines.push(
      `p99 at ${hlLevel.label}: floor ${fmt(F?.p99_ms_at_headline_rate)} ms, ${s.key} ${fmt(B.p99_ms_at_headline_rate)} ms: ` +
        `${s.key}/floor ${fmtRatio(R.p99_ms_at_headline_rate)}`,
    );
  }
}

const legend =
  "matches/s: rendezvous per second (closed-loop level: the max rate); p50/p99: answered clients' latency; " +
  "CPU %: the server process (workerd), % of one core over the window; CPU ms/rdv: its CPU time over the window / " +
  "rendezvous in the window (idle polls included); errors: client + proxy-side HTTP and connection errors, median " +
  "per round / total over rounds; ranges: min-max over rounds; ratios: broker median / floor median.";

function textTable(hdr, body) {
  const width = hdr.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (vals) => vals.map((v, i) => (i < 2 ? v.padEnd(width[i]) : v.padStart(width[i]))).join("  ").trimEnd();
  return [line(hdr), ...body.map(line)].join("\n");
}

const text = [
  "floor vs broker",
  ...about.map((l) => `  ${l}`),
  "",
  ...headlineLines,
  "",
  textTable(header, table),
  "",
  legend,
  ...result.notes.map((n) => `note: ${n}`),
].join("\n");

const mdCell = (v) => v.replace(/\|/g, "\\|");
const markdown = [
  "## Floor vs broker",
  "",
  ...about.map((l) => `- ${l}`),
  "",
  ...headlineLines.map((l) => `- **${l}**`),
  "",
  `| ${header.join(" | ")} |`,
  `|${header.map((_, i) => (i < 2 ? "---" : "---:")).join("|")}|`,
  ...table.map((r) => `| ${r.map(mdCell).join(" | ")} |`),
  "",
  legend,
  ...(result.notes.length ? ["", ...result.notes.map((n) => `- note: ${n}`)] : []),
  "",
].join("\n");

fs.writeFileSync(path.join(dir, "compare.txt"), text + "\n");
fs.writeFileSync(path.join(dir, "compare.md"), markdown);
fs.writeFileSync(path.join(dir, "compare.json"), JSON.stringify(result, null, 2) + "\n");
if (!args.values.quiet) console.log(text);
