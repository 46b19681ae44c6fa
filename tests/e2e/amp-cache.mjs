// A stand-in for the Google AMP cache, for the end-to-end AMP test. A Snowflake client with
// `ampcache=<cache>` and `front=<this server>` sends the cache's form of the broker URL
// (docs/protocol.md §7.3):
//   GET /c/[s/]<publisher host>/<publisher path>      Host: <domain prefix>.<cache host>
// This server checks that form (the Host must carry the domain prefix of the publisher host,
// computed as the AMP cache does), maps the publisher host to the broker it is given with
// --origin, fetches <broker>/<publisher path> with GET, and returns the broker's status, body,
// Content-Type and Cache-Control unchanged. (The real cache would turn a 5xx into a 404 and
// answer invalid AMP with a redirect; the broker's answers are passed through as they are so
// that the client judges the broker's own response.) Anything else is answered 404.
//
// Usage: node amp-cache.mjs --host 127.0.0.1 --port 8790 --cache-host cdn.ampproject.org
//                           --origin snowflake-broker.torproject.net=http://127.0.0.1:8787/
// It prints JSON lines: {"event":"ready",...}; per request {"event":"request",...} with what the
// client sent, then {"event":"response",...} with what the broker answered (status, headers,
// size, the decoded client poll and the decoded armored JSON), or {"event":"reject",...}.

import http from "node:http";
import crypto from "node:crypto";
import { domainToASCII, domainToUnicode } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "0" },
    "cache-host": { type: "string", default: "cdn.ampproject.org" },
    origin: { type: "string", multiple: true, default: [] },
  },
});
if (!/^127\.\d+\.\d+\.\d+$/.test(values.host)) throw new Error("amp cache: loopback addresses only");
const cacheHost = values["cache-host"].toLowerCase();
// Publisher host -> the broker's base URL (on loopback).
const origins = new Map();
for (const o of values.origin) {
  const i = o.indexOf("=");
  const base = new URL(o.slice(i + 1));
  if (!/^127\.\d+\.\d+\.\d+$/.test(base.hostname) || base.protocol !== "http:") throw new Error(`amp cache: origin ${o}: loopback http:// only`);
  origins.set(o.slice(0, i).toLowerCase(), base);
}

const say = (o) => console.log(JSON.stringify(o));

// The AMP cache's domain prefix of a publisher host (amp.dev "AMP Cache URL format";
// the client's common/amp/cache.go does the same).
function domainPrefix(host) {
  let s = domainToUnicode(host).replace(/-/g, "--").replace(/\./g, "-");
  if (s[2] === "-" && s[3] === "-") s = `0-${s}-0`;
  const ascii = domainToASCII(s);
  if (ascii && ascii.length <= 63) return ascii;
  return base32(crypto.createHash("sha256").update(host).digest()).toLowerCase();
}
function base32(buf) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const b of buf) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

// The client poll carried in /amp/client/0<cache-busting>/<base64url> (docs/protocol.md §7.1).
function decodePollPath(p) {
  const m = /^\/amp\/client\/0(?:.*\/)?([A-Za-z0-9_-]*)$/.exec(p);
  return m ? Buffer.from(m[1], "base64url").toString() : null;
}

// The JSON inside the broker's AMP armor (docs/protocol.md §7.2 "Decoder"; enough for the broker's
// own output: <pre> elements without nested tags).
function decodeArmor(html) {
  const text = [...html.matchAll(/<pre>([\s\S]*?)<\/pre>/g)].map((m) => m[1]).join("").replace(/[\t\n\f\r ]/g, "");
  if (!text.startsWith("0")) return null;
  return Buffer.from(text.slice(1), "base64").toString();
}

let n = 0;
const server = http.createServer(async (req, res) => {
  const id = ++n;
  const t0 = Date.now();
  const hostHeader = (req.headers.host ?? "").toLowerCase();
  say({ event: "request", id, method: req.method, host: req.headers.host ?? null, path: req.url, userAgent: req.headers["user-agent"] ?? null });
  const reject = (reason) => {
    say({ event: "reject", id, reason });
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end(`amp cache stand-in: ${reason}\n`);
  };
  if (req.method !== "GET") return reject(`method ${req.method}`);
  // /c/[s/]<publisher host>/<publisher path>[?query]
  const m = /^\/c\/(s\/)?([^/?]+)(\/[^?]*)?(\?.*)?$/.exec(req.url);
  if (!m) return reject("not a /c/[s/]<host>/<path> URL");
  const [, https, pubHost, pubPath = "/", query = ""] = m;
  const origin = origins.get(pubHost.toLowerCase());
  if (!origin) return reject(`unknown publisher host ${pubHost}`);
  const prefix = domainPrefix(pubHost.toLowerCase());
  const hostName = hostHeader.replace(/:\d+$/, "");
  if (hostName !== `${prefix}.${cacheHost}`) return reject(`Host ${hostHeader} is not ${prefix}.${cacheHost}`);
  const target = new URL(origin);
  target.pathname = origin.pathname.replace(/\/$/, "") + pubPath;
  target.search = query;
  let r;
  let body;
  try {
    r = await fetch(target, { headers: { "User-Agent": "amp-cache-stand-in" }, redirect: "manual" });
    body = Buffer.from(await r.arrayBuffer());
  } catch (e) {
    say({ event: "reject", id, reason: `broker: ${e.cause?.message ?? e.message}` });
    res.writeHead(502, { "Content-Type": "text/plain" });
    res.end();
    return;
  }
  const headers = {};
  for (const h of ["content-type", "cache-control", "location"]) {
    const v = r.headers.get(h);
    if (v !== null) headers[h] = v;
  }
  res.writeHead(r.status, headers);
  res.end(body);
  const html = body.toString();
  say({
    event: "response",
    id,
    scheme: https ? "https" : "http",
    publisherHost: pubHost,
    broker: target.href,
    poll: decodePollPath(pubPath),
    status: r.status,
    headers,
    bytes: body.length,
    amp: html.startsWith("<!doctype html>\n<html amp>\n"),
    json: decodeArmor(html),
    ms: Date.now() - t0,
  });
});
server.listen(Number(values.port), values.host, () => {
  const a = server.address();
  say({ event: "ready", url: `http://${a.address}:${a.port}/`, cacheHost, origins: Object.fromEntries([...origins].map(([k, v]) => [k, v.href])) });
});
const stop = () => {
  server.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
