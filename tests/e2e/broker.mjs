// Serves the built Worker (build/entry.mjs, build/index.js and its wasm) locally with Miniflare, for the
// end-to-end tests. It runs in the root network namespace on 127.0.0.1; the peers reach it
// through forward.mjs.
//
// Usage: node tests/e2e/broker.mjs [--port 0] [--script build/entry.mjs]
// Settings: every environment variable named in the README's settings table that is set is
// passed to the Worker as a string binding (the same names as wrangler [vars]).
// It prints {"event":"ready","url":"http://127.0.0.1:PORT/"} once the Worker answers.

import { parseArgs } from "node:util";
import { Miniflare, Log, LogLevel } from "miniflare";
import { DEFAULT_SCRIPT, miniflareOptions, settingsFromEnv } from "../support/worker.mjs";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    script: { type: "string", default: DEFAULT_SCRIPT },
  },
});

const bindings = settingsFromEnv();
let mf;
try {
  mf = new Miniflare(
    miniflareOptions({
      script: values.script,
      settings: bindings,
      host: "127.0.0.1",
      port: Number(values.port),
      log: new Log(LogLevel.INFO),
    }),
  );
} catch (e) {
  console.error(`broker: ${e.message}`);
  process.exit(2);
}
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
