#!/usr/bin/env node
// Draws client latency (p50 solid, p99 dashed; ms, log scale) against offered load
// (clients/s) for the floor and the broker, from bench/compare.mjs's compare.json: one colour
// per series (the floor, the broker, or the broker once per shard count when it ran with
// several), each point the median over rounds with a whisker from the lowest to the highest
// round. Hand-written SVG, standard library only.
//
// Usage: node bench/plot.mjs compare.json [-o latency.svg] [--title TEXT]
// (default output: latency.svg beside compare.json)

import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

let args;
try {
  args = parseArgs({
    options: {
      out: { type: "string", short: "o", default: "" },
      title: { type: "string", default: "" },
      help: { type: "boolean", short: "h", default: false },
    },
    allowPositionals: true,
  });
} catch (e) {
  console.error(`plot: ${e.message}`);
  process.exit(2);
}
if (args.values.help || args.positionals.length !== 1) {
  console.error("usage: node bench/plot.mjs compare.json [-o latency.svg] [--title TEXT]");
  process.exit(args.values.help ? 0 : 2);
}
const input = args.positionals[0];
const outFile = args.values.out || path.join(path.dirname(input), "latency.svg");
let C;
try {
  C = JSON.parse(fs.readFileSync(input, "utf8"));
} catch (e) {
  console.error(`plot: ${input}: ${e.message.split("\n")[0]}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// The data: per series, one point per sweep level (open loop), sorted by offered rate.

const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#db2777", "#0891b2"];
const seriesList = (C.series ?? []).map((s, i) => ({
  ...s,
  colour: s.impl === "floor" ? "#2563eb" : PALETTE[1 + ((i - (C.floor_series ? 1 : 0)) % (PALETTE.length - 1))],
}));
const sweep = (C.levels ?? []).filter((l) => l.kind === "rate");
const proxyCounts = [...new Set(sweep.map((l) => l.proxies))];
const points = new Map(); // series key -> [{ x, p50, p99, range, bad, n, proxies }]
for (const s of seriesList) {
  const pts = [];
  for (const L of sweep) {
    const S = L.series?.[s.key];
    if (!S) continue;
    pts.push({
      x: L.rate,
      proxies: L.proxies,
      n: S.n,
      p50: S.median.p50_ms,
      p99: S.median.p99_ms,
      r50: S.range?.p50_ms ?? null,
      r99: S.range?.p99_ms ?? null,
      matches: S.median.matches_per_s,
      // Hollow marker: the level degraded (errors, or under 99% of clients answered).
      bad: S.errors_total > 0 || (S.median.answered_pct !== null && S.median.answered_pct < 99),
      errors: S.errors_total,
      answered: S.median.answered_pct,
    });
  }
  pts.sort((a, b) => a.x - b.x);
  points.set(s.key, pts);
}

// ---------------------------------------------------------------------------------------------
// Geometry and scales.

const W = 1000;
const H = 620;
const M = { left: 78, right: 270, top: 92, bottom: 128 };
const PW = W - M.left - M.right;
const PH = H - M.top - M.bottom;

const all = [...points.values()].flat();
const xs = all.map((p) => p.x);
const ys = all.flatMap((p) => [p.p50, p.p99, ...(p.r50 ?? []), ...(p.r99 ?? [])]).filter((y) => typeof y === "number" && y > 0);

function niceStep(span, target) {
  const raw = span / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}
const xMaxData = xs.length ? Math.max(...xs) : 1;
const xStep = niceStep(xMaxData, 6);
const xMax = Math.ceil((xMaxData * 1.04) / (xStep / 2)) * (xStep / 2); // room for the last marker
const sx = (x) => M.left + (x / xMax) * PW;

const yLo = ys.length ? 10 ** Math.floor(Math.log10(Math.min(...ys))) : 1;
const yHi = ys.length ? 10 ** Math.ceil(Math.log10(Math.max(...ys) * 1.0001)) : 1000;
const yHiEff = yHi <= yLo ? yLo * 10 : yHi;
const ly = (y) => Math.log10(Math.max(y, yLo));
const sy = (y) => M.top + PH - ((ly(y) - Math.log10(yLo)) / (Math.log10(yHiEff) - Math.log10(yLo))) * PH;
const decades = Math.round(Math.log10(yHiEff / yLo));

// ---------------------------------------------------------------------------------------------
// SVG.

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const f1 = (x) => Math.round(x * 10) / 10;
const fmtMs = (ms) => (ms >= 1000 ? `${f1(ms / 1000)} s` : ms >= 10 ? `${Math.round(ms)} ms` : `${f1(ms)} ms`);
const tickMs = (ms) => (ms >= 1000 ? `${+(ms / 1000).toPrecision(3)} s` : `${+ms.toPrecision(3)} ms`);
const fmtNum = (x) => (x === null || x === undefined ? "-" : Math.abs(x) >= 100 ? String(Math.round(x)) : String(f1(x)));
const out = [];
const el = (s) => out.push(s);

el(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif" font-size="12" fill="#1f2937">`);
el(`<style>
  .grid { stroke: #e5e7eb; stroke-width: 1; }
  .minor { stroke: #f3f4f6; stroke-width: 1; }
  .axis { stroke: #6b7280; stroke-width: 1; }
  .tick { fill: #4b5563; font-size: 11px; }
  .label { fill: #374151; font-size: 12px; }
  .note { fill: #6b7280; font-size: 11px; }
  .p50 { fill: none; stroke-width: 2.2; stroke-linejoin: round; stroke-linecap: round; }
  .p99 { fill: none; stroke-width: 2.2; stroke-dasharray: 7 5; stroke-linejoin: round; }
  .whisker { stroke-width: 1.2; opacity: 0.55; }
  circle:hover, rect.mk:hover { stroke-width: 3; }
</style>`);
el(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);

// Title and subtitle.
const impls = [...new Set(seriesList.map((s) => s.impl))].join(" vs ");
const perShards = seriesList.length > new Set(seriesList.map((s) => s.impl)).size ? ", by shard count" : "";
const title = args.values.title || `Client latency against offered load: ${impls || "no series"}${perShards}`;
el(`<text x="${M.left}" y="34" font-size="19" font-weight="600">${esc(title)}</text>`);
const sub =
  `${proxyCounts.length === 1 ? `${proxyCounts[0]} proxies` : proxyCounts.length ? `${Math.min(...proxyCounts)}-${Math.max(...proxyCounts)} proxies` : ""}` +
  `${proxyCounts.length ? ", " : ""}open-loop clients; each point the median of ${C.rounds ?? "?"} round(s) of ${C.duration_s ?? "?"} s, ` +
  "whiskers min-max over rounds; answered clients only";
el(`<text x="${M.left}" y="56" class="label">${esc(sub)}</text>`);

// Plot frame and grid.
el(`<rect x="${M.left}" y="${M.top}" width="${PW}" height="${PH}" fill="#fcfcfd" stroke="#d1d5db"/>`);
for (let d = 0; d <= decades; d++) {
  const v = yLo * 10 ** d;
  if (d < decades) {
    for (const m of [2, 5]) {
      const vm = v * m;
      const y = sy(vm);
      el(`<line class="minor" x1="${M.left}" x2="${M.left + PW}" y1="${f1(y)}" y2="${f1(y)}"/>`);
      if (decades <= 3) el(`<text class="tick" x="${M.left - 8}" y="${f1(y + 4)}" text-anchor="end" opacity="0.75">${esc(tickMs(+vm.toPrecision(3)))}</text>`);
    }
  }
  const y = sy(v);
  el(`<line class="grid" x1="${M.left}" x2="${M.left + PW}" y1="${f1(y)}" y2="${f1(y)}"/>`);
  el(`<text class="tick" x="${M.left - 8}" y="${f1(y + 4)}" text-anchor="end">${esc(tickMs(+v.toPrecision(3)))}</text>`);
}
for (let x = 0; x <= xMax + 1e-9; x += xStep) {
  const px = sx(x);
  el(`<line class="grid" x1="${f1(px)}" x2="${f1(px)}" y1="${M.top}" y2="${M.top + PH}"/>`);
  el(`<line class="axis" x1="${f1(px)}" x2="${f1(px)}" y1="${M.top + PH}" y2="${M.top + PH + 5}"/>`);
  el(`<text class="tick" x="${f1(px)}" y="${M.top + PH + 19}" text-anchor="middle">${esc(+x.toPrecision(6))}</text>`);
}
el(`<line class="axis" x1="${M.left}" x2="${M.left + PW}" y1="${M.top + PH}" y2="${M.top + PH}"/>`);
el(`<line class="axis" x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + PH}"/>`);
el(`<text class="label" x="${M.left + PW / 2}" y="${M.top + PH + 42}" text-anchor="middle">offered load (clients/s)</text>`);
el(`<text class="label" x="${M.left - 56}" y="${M.top + PH / 2}" text-anchor="middle" transform="rotate(-90 ${M.left - 56} ${M.top + PH / 2})">client latency (log scale)</text>`);

if (all.length === 0) {
  el(`<text x="${M.left + PW / 2}" y="${M.top + PH / 2}" text-anchor="middle" class="label">no open-loop sweep levels in ${esc(path.basename(input))}</text>`);
}

// Series: whiskers, lines, markers. Series are nudged apart horizontally so whiskers do not
// hide each other.
const nudge = (i) => (i - (seriesList.length - 1) / 2) * 5;
seriesList.forEach((s, i) => {
  const pts = points.get(s.key) ?? [];
  const dx = nudge(i);
  el(`<g data-series="${esc(s.key)}">`);
  for (const [q, rk] of [
    ["p50", "r50"],
    ["p99", "r99"],
  ]) {
    for (const p of pts) {
      if (!p[rk] || p[rk][0] === p[rk][1]) continue;
      const x = f1(sx(p.x) + dx);
      const [a, b] = [sy(Math.max(p[rk][0], yLo)), sy(p[rk][1])];
      el(`<line class="whisker" stroke="${s.colour}" x1="${x}" x2="${x}" y1="${f1(a)}" y2="${f1(b)}"/>`);
      el(`<line class="whisker" stroke="${s.colour}" x1="${x - 3}" x2="${x + 3}" y1="${f1(a)}" y2="${f1(a)}"/>`);
      el(`<line class="whisker" stroke="${s.colour}" x1="${x - 3}" x2="${x + 3}" y1="${f1(b)}" y2="${f1(b)}"/>`);
    }
    const drawn = pts.filter((p) => typeof p[q] === "number" && p[q] > 0);
    if (drawn.length > 1) {
      const d = drawn.map((p, k) => `${k ? "L" : "M"}${f1(sx(p.x) + dx)},${f1(sy(p[q]))}`).join(" ");
      el(`<path class="${q}" stroke="${s.colour}" d="${d}"/>`);
    }
    for (const p of drawn) {
      const x = f1(sx(p.x) + dx);
      const y = f1(sy(p[q]));
      const tip =
        `${s.key} ${q} at ${p.x} clients/s (${p.proxies} proxies): ${fmtMs(p[q])}` +
        (p[rk] ? ` (rounds ${fmtMs(p[rk][0])} to ${fmtMs(p[rk][1])})` : "") +
        `; ${fmtNum(p.matches)} matches/s; answered ${p.answered ?? "-"}%; errors ${p.errors} over ${p.n} round(s)`;
      const fill = p.bad ? "#ffffff" : s.colour;
      if (q === "p50") {
        el(`<circle cx="${x}" cy="${y}" r="4" fill="${fill}" stroke="${s.colour}" stroke-width="1.8"><title>${esc(tip)}</title></circle>`);
      } else {
        el(`<rect class="mk" x="${f1(x - 3.6)}" y="${f1(y - 3.6)}" width="7.2" height="7.2" fill="${fill}" stroke="${s.colour}" stroke-width="1.8"><title>${esc(tip)}</title></rect>`);
      }
    }
  }
  el(`</g>`);
});

// Legend, right of the plot.
const LX = M.left + PW + 24;
let LY = M.top + 6;
el(`<text x="${LX}" y="${LY}" font-weight="600" class="label">series</text>`);
LY += 20;
for (const s of seriesList) {
  el(`<text x="${LX}" y="${LY}" font-weight="600" fill="${s.colour}">${esc(s.key)}</text>`);
  LY += 18;
  el(`<line class="p50" stroke="${s.colour}" x1="${LX}" x2="${LX + 34}" y1="${LY - 4}" y2="${LY - 4}"/>`);
  el(`<circle cx="${LX + 17}" cy="${LY - 4}" r="4" fill="${s.colour}" stroke="${s.colour}" stroke-width="1.8"/>`);
  el(`<text x="${LX + 44}" y="${LY}" class="label">p50</text>`);
  LY += 18;
  el(`<line class="p99" stroke="${s.colour}" x1="${LX}" x2="${LX + 34}" y1="${LY - 4}" y2="${LY - 4}"/>`);
  el(`<rect x="${LX + 13.4}" y="${LY - 7.6}" width="7.2" height="7.2" fill="${s.colour}" stroke="${s.colour}" stroke-width="1.8"/>`);
  el(`<text x="${LX + 44}" y="${LY}" class="label">p99</text>`);
  LY += 24;
}
el(`<circle cx="${LX + 17}" cy="${LY - 4}" r="4" fill="#ffffff" stroke="#6b7280" stroke-width="1.8"/>`);
el(`<text x="${LX + 44}" y="${LY}" class="note">hollow: errors, or</text>`);
LY += 14;
el(`<text x="${LX + 44}" y="${LY}" class="note">&lt; 99% answered</text>`);
LY += 26;

// The max-rate level beside the legend: the one figure a latency plot cannot show.
const maxL = (C.levels ?? []).find((l) => l.kind === "max");
if (maxL) {
  el(`<text x="${LX}" y="${LY}" font-weight="600" class="label">max rendezvous/s</text>`);
  LY += 16;
  el(`<text x="${LX}" y="${LY}" class="note">${esc(maxL.label)}</text>`);
  LY += 18;
  for (const s of seriesList) {
    const S = maxL.series?.[s.key];
    if (!S) continue;
    const r = maxL.ratios?.[s.key]?.matches_per_s;
    el(
      `<text x="${LX}" y="${LY}" fill="${s.colour}">${esc(s.key)}: <tspan font-weight="600">${esc(fmtNum(S.median.matches_per_s))}/s</tspan>` +
        `${r !== null && r !== undefined ? `<tspan class="note"> (${r.toFixed(2)}x floor)</tspan>` : ""}</text>`,
    );
    LY += 17;
  }
}

// The date and machine note, under the plot.
const Mc = C.machine ?? {};
const noteLines = [
  `${Mc.date ? Mc.date.replace("T", " ").replace(/:\d\dZ$/, " UTC").replace(/Z$/, " UTC") : "date unknown"}; ` +
    `${Mc.cores ?? "?"} cores${Mc.cpu_model ? ` (${Mc.cpu_model})` : ""}${Mc.pinning ? `; pinning: ${Mc.pinning}` : ""}`,
  `plain workerd ${Mc.workerd ?? ""}, node ${Mc.node ?? "?"}; a fresh server per run, floor and broker interleaved, order alternating per round`,
  Mc.broker_settings ? `settings: ${Mc.broker_settings}` : null,
  `source: ${C.source_dir ?? path.dirname(path.resolve(input))}`,
].filter(Boolean);
noteLines.forEach((l, k) => {
  el(`<text x="${M.left}" y="${M.top + PH + 64 + k * 15}" class="note">${esc(l)}</text>`);
});
el(`</svg>`);

fs.writeFileSync(outFile, out.join("\n") + "\n");
