// Test 1: real Go peers. Debian's unmodified snowflake-proxy and snowflake-client (bookworm's
// 2.5.1, or sid's 2.10.1 from build/snowflake-sid) rendezvous through the broker; each client
// must get its answer, open a WebRTC data channel to a real proxy, and that proxy must then
// reach the relay (relay.mjs) named by the bridge list. Everything runs in a private network
// namespace that has only `lo`; the broker is reached through forwarders, one per proxy, so
// that each proxy has an address of its own, as on the Internet.

import path from "node:path";
import { E2E_DIR, NS, FINGERPRINT, Checks, createNetns, forwardBrokerForPeer, forwardBrokerInto, proxyArgs, sleep, waitForProxyCount, PROXY_LINES, seen } from "./lib.mjs";

const RE = {
  ...PROXY_LINES,
  clientNat: /NAT Type: (\w+)/,
  answer: /Received Answer\./,
  open: /WebRTC: DataChannel\.OnOpen/,
};

// `peers`: { version, proxy, client }, the version's label and its two binaries.
export async function realPeersTest(runner, broker, { peers, proxies: nProxies = 3, clients: nClients = 3, relayPattern, requireRelay = true, timeoutMs = 60000 }) {
  const checks = new Checks(`real peers ${peers.version}`);
  // A poll left at the broker by a proxy of an earlier test could be matched with a client of
  // this one and never answer (locally a closed poll stays until its deadline): let such polls
  // expire first (this only paces the test).
  await waitForProxyCount(broker.url, (k) => k === 0, 15000);
  const tag = peers.version.replace(/\W/g, "");
  const netns = await createNetns(runner, `peers${tag}`);
  const brokerInNs = await forwardBrokerInto(runner, netns, broker);

  const stun = runner.spawn(`stun-${tag}`, "node", [path.join(E2E_DIR, "stun-server.mjs"),
    "--host", NS.stun.split(":")[0], "--port", NS.stun.split(":")[1],
    "--alt-host", NS.stunAlt.split(":")[0], "--alt-port", NS.stunAlt.split(":")[1]], { netns });
  const relay = runner.spawn(`relay-${tag}`, "node", [path.join(E2E_DIR, "relay.mjs"),
    "--host", NS.relay.split(":")[0], "--port", NS.relay.split(":")[1]], { netns });
  await Promise.all([stun.waitForEvent("ready", 10000), relay.waitForEvent("ready", 10000)]);

  // Go honours HTTPS_PROXY; pointing it at a closed loopback port makes the proxy's built-in
  // NAT probe (https://snowflake-broker.torproject.net:8443/probe) fail at once, so the proxy
  // reports NAT "unknown". Loopback requests (the broker) never use the proxy.
  const noNetEnv = { HTTPS_PROXY: "http://127.0.0.1:9", https_proxy: "http://127.0.0.1:9", HTTP_PROXY: "", http_proxy: "", NO_PROXY: "", no_proxy: "" };
  const proxies = [];
  for (let i = 1; i <= nProxies; i++) {
    const ownBroker = await forwardBrokerForPeer(runner, netns, broker, `proxy-${tag}-${i}`);
    // One client per proxy (-capacity 1), so that every proxy has to serve a client and reach the relay.
    proxies.push(runner.spawn(`proxy-${peers.version}-${i}`, peers.proxy, proxyArgs(ownBroker, relayPattern, peers), { netns, env: noNetEnv }));
  }
  const proxyNat = await Promise.all(proxies.map((p) => p.waitForLine(RE.proxyNat, 20000).then((m) => m[1], () => null)));
  runner.note(`proxies' NAT types: ${proxyNat.join(", ")}`);
  // Start the clients once every proxy's poll is waiting at the broker (a client that finds
  // no proxy is refused at once and retries only 10 s later).
  const polling = await waitForProxyCount(broker.url, (n) => n >= nProxies, 15000);
  runner.note(`broker /debug: ${polling} proxies polling`);

  const clients = [];
  for (let i = 1; i <= nClients; i++) {
    const args = `url=${brokerInNs};ice=stun:${NS.stun};max=1;fingerprint=${FINGERPRINT}`;
    const name = `client-${peers.version}-${i}`;
    clients.push(runner.spawn(name, "node", [path.join(E2E_DIR, "pt-client.mjs"),
      "--state", path.join(runner.runDir, name), "--args", args,
      "--log", path.join(runner.runDir, `${name}.log`), "--", peers.client, "-unsafe-logging"], { netns, env: noNetEnv, stdin: "pipe" }));
    await sleep(300);
  }

  const deadline = Date.now() + timeoutMs;
  // Clients and proxies are watched at once: each is stopped as soon as it has done its part.
  const [clientRes, proxyRes] = await Promise.all([Promise.all(clients.map(async (c) => {
    const socks = await c.waitForEvent("socks", 15000).catch((e) => ({ ok: false, error: e.message }));
    const answered = await seen(c, RE.answer, deadline);
    const open = answered && (await seen(c, RE.open, deadline));
    const nat = (c.lines.map((l) => RE.clientNat.exec(l)).find(Boolean) ?? [])[1] ?? "?";
    // Each client and each proxy is needed once: a client whose snowflake closes (the relay
    // here is no Tor bridge) collects another, and a proxy whose client is gone polls again.
    // Once its data has had time to reach the relay, each is stopped, so that none can take a
    // second match from a peer still waiting (with PROXY_POLL_INTERVAL_MS a 2.5.1 proxy is
    // parked less than half the time).
    if (open) await sleep(3000).then(() => runner.stop(c));
    return { socks, answered, open, nat };
  })), Promise.all(proxies.map(async (p) => {
    const offered = await seen(p, RE.offer, deadline);
    const connected = offered && (await seen(p, RE.connected, deadline));
    const relayed = connected && (requireRelay ? await seen(p, RE.relay, deadline) : p.lines.some((l) => RE.relay.test(l)));
    if (connected) await sleep(3000).then(() => runner.stop(p));
    return { offered, connected, relayed, relayUrl: (p.lines.map((l) => RE.relay.exec(l)).find(Boolean) ?? [])[1] };
  }))]);
  // Let the relay see the data the clients send through the proxies.
  await sleep(1000);

  clientRes.forEach((r, i) => {
    checks.check(`client ${i + 1}: SOCKS connection accepted by snowflake-client`, r.socks.ok, r.socks.error);
    checks.check(`client ${i + 1}: got its answer from the broker ("Received Answer.", NAT ${r.nat})`, r.answered);
    checks.check(`client ${i + 1}: WebRTC data channel to a real proxy open`, r.open);
  });
  proxyRes.forEach((r, i) => {
    checks.check(`proxy ${i + 1}: received a client's offer and connected`, r.offered && r.connected);
    const name = `proxy ${i + 1}: reached the relay${r.relayUrl ? ` (${r.relayUrl})` : ""}`;
    if (requireRelay) checks.check(name, r.relayed);
    else checks.skip(name, "E2E_REQUIRE_RELAY=0");
  });
  const relayConnects = relay.events("connect").length;
  const relayData = relay.events("data").length;
  const stunStats = stun.events("request");
  const figures = {
    "clients answered": `${clientRes.filter((r) => r.answered).length}/${nClients}`,
    "data channels open": `${clientRes.filter((r) => r.open).length}/${nClients}`,
    "proxies matched": `${proxyRes.filter((r) => r.offered).length}/${nProxies}`,
    "relays reached": `${proxyRes.filter((r) => r.relayed).length}/${nProxies}`,
    "relay WebSocket connections": `${relayConnects} (${relayData} carrying data)`,
    "client NAT types": clientRes.map((r) => r.nat).join(", "),
    "proxy NAT types": proxyNat.map((n) => n ?? "?").join(", "),
    "STUN requests answered": `${stunStats.length} (${stunStats.filter((s) => s.changeIp || s.changePort).length} change requests)`,
  };

  await Promise.all([...clients, ...proxies, stun, relay, netns.holder].map((p) => runner.stop(p)));
  return { checks: checks.list, figures };
}
