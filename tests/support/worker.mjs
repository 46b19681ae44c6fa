// How the built Worker is started locally, in one place for the Worker tests
// (tests/worker/harness.mjs), the end-to-end broker (tests/e2e/broker.mjs) and the
// benchmark server (bench/serve.mjs). Everything a deploy would take from wrangler.toml
// (compatibility date and flags, the Durable Object binding) is read from it, and the
// setting names from the README's settings table, which tests/settings_table.rs keeps
// equal to the code's.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "smol-toml";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");


const wrangler = parse(fs.readFileSync(path.join(REPO, "wrangler.toml"), "utf8"));

/** The Worker's entry module, as wrangler.toml's `main` names it (build/entry.mjs). */
export const DEFAULT_SCRIPT = path.join(REPO, wrangler.main);
/** Its file name, the same in every build directory (build/, build/fault/). */
export const ENTRY = path.basename(wrangler.main);

export const COMPATIBILITY_DATE = wrangler.compatibility_date;
export const COMPATIBILITY_FLAGS = wrangler.compatibility_flags ?? [];
/** The Durable Object bindings, as `{ NAME: className }`. */
export const DURABLE_OBJECTS = Object.fromEntries(
  (wrangler.durable_objects?.bindings ?? []).map((b) => [b.name, b.class_name]),
);

/** Every setting's name, in the README's order. */
export const SETTINGS = (() => {
  const readme = fs.readFileSync(path.join(REPO, "README.md"), "utf8");
  const section = readme.split("\n## Settings\n")[1] ?? "";
  const names = [...section.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
  if (names.length === 0) throw new Error("README.md has no settings table");
  return names;
})();

/** The settings set (non-empty) in `env`, as string bindings under their own names. */
export function settingsFromEnv(env = process.env) {
  const bindings = {};
  for (const name of SETTINGS) {
    if (env[name] !== undefined && env[name] !== "") bindings[name] = env[name];
  }
  return bindings;
}

/** Fails early, with the command to run, when the Worker has not been built. */
export function requireBuilt(script = DEFAULT_SCRIPT) {
  if (!fs.existsSync(script)) {
    throw new Error(`${script} does not exist: run \`make build\` first`);
  }
}

/**
 * Miniflare options serving the built Worker `script` (and the wasm beside it) as wrangler
 * would: same compatibility date and flags, SQLite-backed Durable Objects, `settings` as
 * `[vars]`. `extra` is merged last (host, port, log, handleRuntimeStdio, ...).
 */
export function miniflareOptions({ script = DEFAULT_SCRIPT, settings = {}, persist = false, ...extra } = {}) {
  requireBuilt(script);
  return {
    scriptPath: script,
    modulesRoot: path.dirname(script),
    modules: true,
    // build/index.js, which the entry imports, is an ES module despite its extension.
    modulesRules: [
      { type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true },
      { type: "ESModule", include: ["**/*.js"], fallthrough: true },
    ],
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: COMPATIBILITY_FLAGS,
    durableObjects: Object.fromEntries(
      Object.entries(DURABLE_OBJECTS).map(([name, className]) => [name, { className, useSQLite: true }]),
    ),
    durableObjectsPersist: persist,
    bindings: settings,
    // A fixed `request.cf`: Miniflare must not try to fetch one from the network.
    cf: { country: "CA", colo: "YYZ", asn: 64512 },
    ...extra,
  };
}

/**
 * The same broker behind tests/support/edge.mjs, which abandons a request carrying
 * `x-test-abandon-after-ms` as Cloudflare's edge does when its caller's connection closes.
 */
export function behindEdge({ scriptPath, modulesRoot, modules, modulesRules, compatibilityDate, compatibilityFlags, durableObjects, bindings, ...shared }) {
  const broker = { name: "broker", scriptPath, modulesRoot, modules, modulesRules, compatibilityDate, compatibilityFlags, durableObjects, bindings };
  const edge = {
    name: "edge",
    modules: true,
    scriptPath: path.join(REPO, "tests/support/edge.mjs"),
    compatibilityDate,
    serviceBindings: { BROKER: "broker" },
  };
  return { ...shared, workers: [edge, broker] };
}
