// Test 3: AMP cache rendezvous with real Go peers, run with 2.5.1 and with 2.10.1. An unmodified snowflake-client (Debian
// 2.5.1) is given the bridge-line arguments of the AMP cache channel
// (docs/protocol.md §7.3, §10.1):
//   url=https://snowflake-broker.torproject.net/   the broker, as the AMP "publisher" URL
//   ampcache=http://cdn.ampproject.org/            the cache, whose host goes into Host
//   front=127.0.0.1:8790                           where the connection really goes: amp-cache.mjs
// so it sends GET /c/s/snowflake-broker.torproject.net/amp/client/0…/… with
// Host: snowflake--broker-torproject-net.cdn.ampproject.org to the stand-in, which fetches
// /amp/client/… from the broker and passes its answer back unchanged. A real snowflake-proxy
// polls the broker as usual; the client must decode the broker's AMP armor, get the proxy's
// answer, and open a data channel to it; the proxy must then reach the relay. Nothing leaves
// the private namespace: the front is an address, so no name is ever resolved, and the
// namespace has no route anywhere.

import path from "node:path";
import { E2E_DIR, NS, FINGERPRINT, Checks, createNetns, forwardBrokerForPeer, forwardBrokerInto, proxyArgs, waitForProxyCount, PROXY_LINES, seen } from "./lib.mjs";

const PUBLISHER = "snowflake-broker.torproject.net";
const CACHE = "cdn.ampproject.org";
// The cache URL the client must build for PUBLISHER (docs/protocol.md §7.3).
const CACHE_HOST = "snowflake--broker-torproject-net.cdn.ampproject.org";
const CACHE_PATH = /^\/c\/s\/snowflake-broker\.torproject\.net\/amp\/client\/0[A-Za-z0-9_-]{12}\/[A-Za-z0-9_-]+$/;

const RE = {
  ...PROXY_LINES,
  through: /Through AMP cache at: (\S+)/,
  amp: /Negotiating via AMP cache rendezvous\.\.\./,
  http: /Negotiating via HTTP rendezvous/,
  refused: /WebRTC: no snowflake proxies currently available\s+Retrying/,
  ampStatus: /AMP cache rendezvous response: (.+)$/,
  clientNat: /NAT Type: (\w+)/,
  answer: /Received Answer\./,
  open: /WebRTC: DataChannel\.OnOpen/,
};

function parseJson(s) {
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
}

// `peers`: { version, proxy, client, proxyFlags }, as in real-peers.mjs.
export async function ampPeersTest(runner, broker, { peers, relayPattern, requireRelay = true, timeoutMs = 40000 }) {
  const checks = new Checks(`amp cache ${peers.version}`);
  const tag = peers.version.replace(/\W/g, "");
  // A poll left at the broker by a proxy of an earlier test could be matched with this client
  // and never answer: let such polls expire first (this only paces the test).
  const before = await waitForProxyCount(broker.url, (k) => k === 0, 10000);
  runner.note(`broker /debug before the AMP test: ${before} proxies`);

  const netns = await createNetns(runner, `amp${tag}`);
  const brokerInNs = await forwardBrokerInto(runner, netns, broker);
  const [cacheIp, cachePort] = NS.ampCache.split(":");
  const stun = runner.spawn(`amp-stun-${tag}`, "node", [path.join(E2E_DIR, "stun-server.mjs"),
    "--host", NS.stun.split(":")[0], "--port", NS.stun.split(":")[1],
    "--alt-host", NS.stunAlt.split(":")[0], "--alt-port", NS.stunAlt.split(":")[1]], { netns });
  const relay = runner.spawn(`amp-relay-${tag}`, "node", [path.join(E2E_DIR, "relay.mjs"),
    "--host", NS.relay.split(":")[0], "--port", NS.relay.split(":")[1]], { netns });
  const cache = runner.spawn(`amp-cache-${tag}`, "node", [path.join(E2E_DIR, "amp-cache.mjs"),
    "--host", cacheIp, "--port", cachePort, "--cache-host", CACHE, "--origin", `${PUBLISHER}=${brokerInNs}`], { netns });
  await Promise.all([stun, relay, cache].map((p) => p.waitForEvent("ready", 10000)));

  // As in real-peers.mjs: the proxy's NAT probe fails at once, so it reports NAT "unknown".
  const noNetEnv = { HTTPS_PROXY: "http://127.0.0.1:9", https_proxy: "http://127.0.0.1:9", HTTP_PROXY: "", http_proxy: "", NO_PROXY: "", no_proxy: "" };
  const args = [
    `url=https://${PUBLISHER}/`,
    `ampcache=http://${CACHE}/`,
    `front=${NS.ampCache}`,
    `ice=stun:${NS.stun}`,
    "max=1",
    `fingerprint=${FINGERPRINT}`,
  ].join(";");
  // The client starts before any proxy polls: its first AMP request must come back as the
  // armored error "no snowflake proxies currently available", which the client has to decode
  // and treat as a refusal (it retries 10 s later, as after any failed rendezvous).
  const client = runner.spawn(`amp-client-${tag}`, "node", [path.join(E2E_DIR, "pt-client.mjs"),
    "--state", path.join(runner.runDir, `amp-client-${tag}`), "--args", args,
    "--log", path.join(runner.runDir, `amp-client-${tag}.log`), "--", peers.client, "-unsafe-logging"], { netns, env: noNetEnv, stdin: "pipe" });
  const deadline = Date.now() + timeoutMs;
  const firstResponse = await cache.waitForEvent("response", 15000).catch(() => null);
  const refusedLine = firstResponse && (await client.waitForLine(RE.refused, 5000).then((m) => m[0], () => null));

  const proxy = runner.spawn(`amp-proxy-${tag}`, peers.proxy, proxyArgs(await forwardBrokerForPeer(runner, netns, broker, `amp-proxy-${tag}`), relayPattern, peers), { netns, env: noNetEnv });
  const proxyNat = await proxy.waitForLine(RE.proxyNat, 20000).then((m) => m[1], () => null);
  const polling = await waitForProxyCount(broker.url, (k) => k >= 1, 15000);
  runner.note(`AMP test: proxy NAT ${proxyNat}; broker /debug: ${polling} proxies polling`);

  const socks = await client.waitForEvent("socks", 15000).catch((e) => ({ ok: false, error: e.message }));
  const answered = await seen(client, RE.answer, deadline);
  const open = answered && (await seen(client, RE.open, deadline));
  const offered = await seen(proxy, RE.offer, deadline);
  const connected = offered && (await seen(proxy, RE.connected, deadline));
  const relayed = connected && (requireRelay ? await seen(proxy, RE.relay, deadline) : proxy.lines.some((l) => RE.relay.test(l)));
  await new Promise((r) => setTimeout(r, 500));
  const prometheus = await fetch(new URL("prometheus", broker.url)).then((r) => r.text()).catch((e) => `unreadable: ${e.message}`);

  const lines = client.lines;
  const first = (re) => (lines.map((l) => re.exec(l)).find(Boolean) ?? [])[1];
  const requests = cache.events("request");
  const responses = cache.events("response");
  const rejects = cache.events("reject");
  const statuses = lines.map((l) => RE.ampStatus.exec(l)).filter(Boolean).map((m) => m[1]);
  const outcomes = responses.map((r) => {
    const j = parseJson(r.json);
    return j === null ? "undecodable" : j.answer ? "answer" : j.error ? `error "${j.error}"` : JSON.stringify(j);
  });
  const answeredResp = responses.filter((r) => parseJson(r.json)?.answer);
  const polls = responses.map((r) => r.poll ?? "");

  const NO_PROXIES = "no snowflake proxies currently available";
  const firstJson = parseJson(firstResponse?.json);
  // Every AMP rendezvous is counted with rendezvous_method "ampcache" (counts are rounded up
  // to a multiple of 8, so only their presence says anything).
  const promLines = prometheus.split("\n").filter((l) => l.startsWith("snowflake_rounded_client_poll_total{") && l.includes('rendezvous_method="ampcache"'));
  const relayUrl = (proxy.lines.map((l) => RE.relay.exec(l)).find(Boolean) ?? [])[1];

  checks.check("client: SOCKS connection accepted by snowflake-client", socks.ok, socks.error);
  checks.check(`client: configured for the AMP cache ("Through AMP cache at: ${first(RE.through) ?? "?"}")`, first(RE.through) === `http://${CACHE}/`, first(RE.through));
  checks.check("client: rendezvous only through the AMP cache (no HTTP rendezvous)", lines.some((l) => RE.amp.test(l)) && !lines.some((l) => RE.http.test(l)));
  checks.check(`stand-in: every request was the cache's form (Host ${CACHE_HOST}, GET /c/s/${PUBLISHER}/amp/client/0<12>/<base64url>)`,
    requests.length > 0 && rejects.length === 0 && requests.every((r) => r.method === "GET" && r.host === CACHE_HOST && CACHE_PATH.test(r.path)),
    JSON.stringify({ requests: requests.map((r) => `${r.method} ${r.host} ${r.path.slice(0, 80)}`), rejects }));
  checks.check("stand-in: the path carried the client's 1.0 poll (offer, NAT, bridge fingerprint)", polls.length > 0 && polls.every((p) => {
    const j = p.startsWith("1.0\n") ? parseJson(p.slice(4)) : null;
    return j !== null && parseJson(j.offer)?.type === "offer" && typeof j.nat === "string" && j.fingerprint === FINGERPRINT;
  }), polls.map((p) => JSON.stringify(p.slice(0, 60))).join(" | "));
  checks.check("broker: every AMP answer was 200, text/html, Cache-Control max-age=15, AMP HTML, no Location",
    responses.length > 0 && responses.every((r) => r.status === 200 && r.headers["content-type"] === "text/html" && r.headers["cache-control"] === "max-age=15" && r.amp && !r.headers.location),
    JSON.stringify(responses.map((r) => ({ status: r.status, headers: r.headers, amp: r.amp }))));
  if (before === 0) {
    checks.check(`broker: the first AMP request, before any proxy polled, got the armored error "${NO_PROXIES}"`, firstJson?.error === NO_PROXIES, firstResponse?.json);
    checks.check("client: decoded that armored error, treated it as a refusal and retried through the AMP cache", refusedLine && responses.length >= 2, refusedLine ?? `${responses.length} requests`);
  } else {
    checks.skip("broker: the first AMP request, before any proxy polled, got the armored no-proxies error", `the broker counted ${before} proxies before the test`);
  }
  checks.check("broker: the proxy's answer came back armored through the stand-in", answeredResp.length === 1, outcomes.join(", "));
  checks.check(`client: accepted every response of the cache ("AMP cache rendezvous response: ${[...new Set(statuses)].join(", ") || "?"}")`, statuses.length > 0 && statuses.every((s) => s === "200 OK"));
  checks.check(`client: got its answer from the broker through the AMP cache ("Received Answer.", NAT ${first(RE.clientNat) ?? "?"})`, answered);
  checks.check("client: WebRTC data channel to a real proxy open", open);
  checks.check("proxy: received the client's offer and connected", offered && connected);
  if (requireRelay) checks.check(`proxy: reached the relay${relayUrl ? ` (${relayUrl})` : ""}`, relayed);
  else checks.skip("proxy: reached the relay", "E2E_REQUIRE_RELAY=0");
  checks.check('broker: /prometheus counts the rendezvous with rendezvous_method="ampcache", status "matched"',
    promLines.some((l) => /status="matched"\} [1-9]/.test(l)), promLines.join(" | ") || prometheus.slice(0, 200));

  const figures = {
    "AMP requests through the stand-in": `${requests.length} (${outcomes.join(", ")})`,
    "AMP answer size": answeredResp.length ? `${answeredResp[0].bytes} bytes of HTML, ${answeredResp[0].ms} ms from request to answer at the stand-in` : "-",
    "cache URL": requests.length ? `http://${requests[0].host}${requests[0].path.replace(/(\/amp\/client\/0[^/]{12}\/).*/, "$1…")}` : "-",
    "/prometheus ampcache series": promLines.map((l) => l.replace(/^snowflake_rounded_client_poll_total/, "")).join(", ") || "-",
    "client NAT type": first(RE.clientNat) ?? "?",
    "proxy NAT type": proxyNat ?? "?",
    "relay WebSocket connections": `${relay.events("connect").length} (${relay.events("data").length} carrying data)`,
  };

  await Promise.all([client, proxy, cache, stun, relay, netns.holder].map((p) => runner.stop(p)));
  return { checks: checks.list, figures };
}
