// Serves the built Worker (build/index.js and its wasm) locally with Miniflare, for the
// end-to-end tests. It runs in the root network namespace on 127.0.0.1; the peers reach it
// through forward.mjs.
//
// Usage: node tests/e2e/broker.mjs [--port 0] [--script build/index.js]
// Settings: every environment variable named in SETTINGS below that is set is passed to the
// Worker as a string binding (the same names as wrangler [vars]).
// It prints {"event":"ready","url":"http://127.0.0.1:PORT/"} once the Worker answers.

import path from "node:path";
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Miniflare, Log, LogLevel } from "miniflare";

export const SETTINGS = [
  "PROXY_POLL_TIMEOUT_MS",
  "CLIENT_TIMEOUT_MS",
  "CLIENT_TIMEOUT_FROM",
  "ALLOWED_RELAY_PATTERN",
  "DEFAULT_RELAY_PATTERN",
  "BRIDGE_LIST",
  "UNSAFE_LOGGING",
];

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    script: { type: "string", default: path.join(root, "build/index.js") },
  },
});

if (!fs.existsSync(values.script)) {
  console.error(`broker: ${values.script} does not exist; run \`make build\` first`);
  process.exit(2);
}

const bindings = {};
for (const name of SETTINGS) if (process.env[name] !== undefined) bindings[name] = process.env[name];

const mf = new Miniflare({
  scriptPath: values.script,
  modulesRoot: path.dirname(values.script),
  modules: true,
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
  compatibilityDate: "2026-04-20",
  durableObjects: { MATCHER: { className: "Matcher", useSQLite: true } },
  bindings,
  host: "127.0.0.1",
  port: Number(values.port),
  // A fixed `request.cf`: Miniflare must not try to fetch one from the network.
  cf: { country: "CA", colo: "YYZ", asn: 64512 },
  log: new Log(LogLevel.INFO),
});

const stop = async () => {
  try {
    await mf.dispose();
  } finally {
    process.exit(0);
  }
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

const url = await mf.ready;
console.error(`broker: settings ${JSON.stringify(bindings)}`);
console.log(JSON.stringify({ event: "ready", url: url.href }));
