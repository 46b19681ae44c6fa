// Prints a table of `loadgen.mjs --json` reports, one row per load level, and says at which
// level things first degraded. Usage: node bench/table.mjs report1.json report2.json ...
// (`--markdown` prints a Markdown table instead of aligned text.)

import fs from "node:fs";

const args = process.argv.slice(2);
const markdown = args.includes("--markdown");
const files = args.filter((a) => a !== "--markdown");
if (files.length === 0) {
  console.error("usage: node bench/table.mjs [--markdown] report.json ...");
  process.exit(2);
}

const sum = (o) => Object.values(o ?? {}).reduce((s, v) => s + v, 0);
const rows = [];
const notes = [];
for (const file of files) {
  let r;
  try {
    r = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    notes.push(`${file}: no report (${e.message.split("\n")[0]})`);
    continue;
  }
  const cl = r.clients;
  const launched = cl.launched || 0;
  const proxyErrors =
    sum(r.polls.http_errors) + sum(r.polls.network_errors) + sum(r.answers.http_errors) + sum(r.answers.network_errors);
  const clientErrors = cl.errors_total;
  const answeredPct = launched ? (100 * cl.answered) / launched : null;
  const b = r.broker_process ?? {};
  // bench/run-local.sh keeps the Worker's log beside the report: count what reached it.
  let unlogged = "-";
  const logFile = file.replace(/\.json$/, ".worker.log");
  if (logFile !== file && fs.existsSync(logFile)) {
    const text = fs.readFileSync(logFile, "utf8");
    const logged = (text.match(/"endpoint":"\/client"/g) ?? []).length;
    // A server that logs no request lines at all (the floor) leaves "-".
    if (/"endpoint":/.test(text)) unlogged = Math.max(0, launched - logged);
  }
  const row = {
    // Closed-loop runs (loadgen --client-concurrency N): N clients in flight instead of a rate.
    level:
      r.settings.client_mode === "closed-loop"
        ? `${r.settings.proxies} p / ${r.settings.client_concurrency} closed-loop`
        : `${r.settings.proxies} p / ${r.settings.clients_per_second} c/s`,
    shards: r.shards?.count ?? "-",
    "polls/s": r.rates.polls_per_s,
    "matches/s": r.rates.matches_per_s,
    clients: launched,
    "answered %": answeredPct === null ? "-" : answeredPct.toFixed(1),
    denied: cl.denied_no_proxies,
    "broker t/o": cl.broker_timeout,
    "client err": clientErrors,
    "proxy err": proxyErrors,
    "client gone": r.answers.client_gone,
    "clients not in log": unlogged,
    "p50 ms": r.latency_ms.answered.p50 ?? "-",
    "p90 ms": r.latency_ms.answered.p90 ?? "-",
    "p99 ms": r.latency_ms.answered.p99 ?? "-",
    "max ms": r.latency_ms.answered.max ?? "-",
    "broker CPU %": b.cpu_pct_of_one_core_window ?? "-",
    "RSS avg/peak MB": b.rss_mb_peak !== undefined ? `${b.rss_mb_avg_window}/${b.rss_mb_peak}` : "-",
    "gen CPU %": r.generator.cpu_pct_of_one_core_window,
    "cores busy %": r.machine?.core_busy_pct_window ? r.machine.core_busy_pct_window.map(Math.round).join("/") : "-",
    "req/shard/s": r.shards ? `${r.shards.requests_per_shard_per_s.mean}/${r.shards.requests_per_shard_per_s.max}` : "-",
    "DO/client": r.shards?.do_requests_per_client ?? r.hops_per_client.mean,
  };
  rows.push(row);
  const errKinds = {
    ...Object.fromEntries(Object.entries(cl.network_errors ?? {}).map(([k, v]) => [`client ${k}`, v])),
    ...Object.fromEntries(Object.entries(cl.http_errors ?? {}).map(([k, v]) => [`client HTTP ${k}`, v])),
    ...(cl.generator_timeout ? { "client generator timeout": cl.generator_timeout } : {}),
    ...(cl.mismatches ? { "client MISMATCH": cl.mismatches } : {}),
    ...Object.fromEntries(Object.entries(r.polls.network_errors ?? {}).map(([k, v]) => [`poll ${k}`, v])),
    ...Object.fromEntries(Object.entries(r.polls.http_errors ?? {}).map(([k, v]) => [`poll HTTP ${k}`, v])),
    ...Object.fromEntries(Object.entries(r.answers.network_errors ?? {}).map(([k, v]) => [`answer ${k}`, v])),
    ...Object.fromEntries(Object.entries(r.answers.http_errors ?? {}).map(([k, v]) => [`answer HTTP ${k}`, v])),
  };
  const degraded = [];
  if (answeredPct !== null && answeredPct < 99) degraded.push(`only ${answeredPct.toFixed(1)}% answered`);
  if (clientErrors + proxyErrors > 0) {
    degraded.push(`errors: ${Object.entries(errKinds).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  }
  const F = r.first_network_error;
  if (F) {
    degraded.push(
      `first network error at ${F.t_s} s (${F.code} on ${F.endpoint}, ${F.after_ms} ms after sending) with ` +
        `${F.open_polls} polls, ${F.open_clients} clients, ${F.open_answers} answers open`,
    );
  }
  if (cl.broker_timeout > 0) degraded.push(`${cl.broker_timeout} broker timeouts`);
  if (r.polls.refused_matcher_full > 0) degraded.push(`${r.polls.refused_matcher_full} polls refused (matcher full)`);
  // (A closed-loop level is meant to saturate the broker: its core being busy is no symptom.)
  const closedLoop = r.settings.client_mode === "closed-loop";
  if (!closedLoop && typeof b.cpu_pct_of_one_core_window === "number" && b.cpu_pct_of_one_core_window >= 90) {
    degraded.push(`broker at ${b.cpu_pct_of_one_core_window}% of its core`);
  }
  if (r.generator.event_loop_utilization_window > 0.9) degraded.push("generator saturated (lower bound)");
  const offered = r.settings.clients_per_second; // null in closed loop: nothing is offered
  if (offered && r.rates.matches_per_s < 0.95 * offered) {
    degraded.push(`matches/s ${r.rates.matches_per_s} < offered ${offered} clients/s`);
  }
  if (r.window_s > r.settings.duration_s * 1.05) {
    degraded.push(`window lasted ${r.window_s} s (generator timers late)`);
  }
  row.degraded = degraded;
}

const cols = Object.keys(rows[0] ?? {}).filter((k) => k !== "degraded");
if (rows.length) {
  if (markdown) {
    console.log(`| ${cols.join(" | ")} |`);
    console.log(`|${cols.map(() => "---").join("|")}|`);
    for (const r of rows) console.log(`| ${cols.map((k) => r[k]).join(" | ")} |`);
  } else {
    const width = cols.map((k) => Math.max(k.length, ...rows.map((r) => String(r[k]).length)));
    const line = (vals) => vals.map((v, i) => String(v).padStart(width[i])).join("  ");
    console.log(line(cols));
    for (const r of rows) console.log(line(cols.map((k) => r[k])));
  }
  console.log("");
  let first = null;
  for (const r of rows) {
    if (r.degraded.length) {
      console.log(`${r.level}: ${r.degraded.join("; ")}`);
      first ??= r.level;
    }
  }
  console.log(first ? `first degraded level: ${first}` : "no level degraded (no errors, >= 99% answered)");
}
for (const n of notes) console.log(n);
