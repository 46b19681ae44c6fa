// Test 4: SQS rendezvous with real Go peers. An unmodified snowflake-client 2.10.1 is given
// `sqsqueue=https://sqs.us-east-1.amazonaws.com/…/snowflake-broker` and `sqscreds=` and no
// broker URL: it sends its offer to that queue and reads its answer from its own queue, over
// TLS, through HTTPS_PROXY. The proxy (sqs-intercept.mjs) terminates TLS with a certificate for
// the SQS host signed by a throw-away CA (the client trusts it through SSL_CERT_FILE) and passes
// the calls to moto, the local SQS server the broker's consumer also reads (SQS_ENDPOINT). A
// real snowflake-proxy 2.10.1 polls the broker over HTTP. The client must get its answer
// through SQS and open its data channel to the proxy, which must reach the relay.

import path from "node:path";
import { E2E_DIR, NS, FINGERPRINT, Checks, createNetns, forwardBrokerForPeer, forwardInto, proxyArgs, makeCerts, waitForProxyCount, PROXY_LINES, seen } from "./lib.mjs";

export const SQS_HOST = "sqs.us-east-1.amazonaws.com";
export const SQS_QUEUE_URL = `https://${SQS_HOST}/123456789012/snowflake-broker`;
/** The client's credentials: moto checks no signature, but the client signs with them. */
const CLIENT_CREDS = { "aws-access-key-id": "AKIDCLIENTEXAMPLE", "aws-secret-key": "client-secret-example" };
const INTERCEPT = "127.0.0.1:8443";
const MOTO_IN_NS = "127.0.0.1:5000";

const RE = {
  ...PROXY_LINES,
  sqs: /Negotiating via SQS Queue rendezvous/,
  http: /Negotiating via HTTP rendezvous/,
  answer: /Received Answer\./,
  open: /WebRTC: DataChannel\.OnOpen/,
};

/** A bridge-line value, escaped as goptlib reads it (`\\`, `;`, `=`). */
const escapeArg = (s) => s.replace(/[\\;=]/g, (c) => `\\${c}`);

export async function sqsPeersTest(runner, broker, moto, { peers, relayPattern, requireRelay = true, timeoutMs = 60000 }) {
  const checks = new Checks("sqs");
  await waitForProxyCount(broker.url, (k) => k === 0, 15000);
  const netns = await createNetns(runner, "sqs");
  const stun = runner.spawn("sqs-stun", "node", [path.join(E2E_DIR, "stun-server.mjs"),
    "--host", NS.stun.split(":")[0], "--port", NS.stun.split(":")[1],
    "--alt-host", NS.stunAlt.split(":")[0], "--alt-port", NS.stunAlt.split(":")[1]], { netns });
  const relay = runner.spawn("sqs-relay", "node", [path.join(E2E_DIR, "relay.mjs"),
    "--host", NS.relay.split(":")[0], "--port", NS.relay.split(":")[1]], { netns });
  await forwardInto(runner, netns, "moto", moto.target, MOTO_IN_NS);
  const certs = path.join(runner.runDir, "sqs-certs");
  const ca = makeCerts(certs, SQS_HOST);
  const intercept = runner.spawn("sqs-intercept", "node", [path.join(E2E_DIR, "sqs-intercept.mjs"),
    "--listen", INTERCEPT, "--to", MOTO_IN_NS, "--dir", certs], { netns });
  await Promise.all([stun, relay, intercept].map((p) => p.waitForEvent("ready", 10000)));

  const noNetEnv = { HTTPS_PROXY: "http://127.0.0.1:9", https_proxy: "http://127.0.0.1:9", HTTP_PROXY: "", http_proxy: "", NO_PROXY: "", no_proxy: "" };
  const proxy = runner.spawn("sqs-proxy", peers.proxy, proxyArgs(await forwardBrokerForPeer(runner, netns, broker, "sqs-proxy"), relayPattern, peers), { netns, env: noNetEnv });
  const proxyNat = await proxy.waitForLine(RE.proxyNat, 20000).then((m) => m[1], () => null);
  const polling = await waitForProxyCount(broker.url, (k) => k >= 1, 15000);
  runner.note(`SQS test: proxy NAT ${proxyNat}; broker /debug: ${polling} proxies polling`);

  const creds = Buffer.from(JSON.stringify(CLIENT_CREDS)).toString("base64");
  const args = [
    `sqsqueue=${escapeArg(SQS_QUEUE_URL)}`,
    `sqscreds=${escapeArg(creds)}`,
    `ice=stun:${NS.stun}`,
    "max=1",
    `fingerprint=${FINGERPRINT}`,
  ].join(";");
  // The client's only way out is the intercepting proxy, and it trusts only the test's CA (Go
  // reads SSL_CERT_FILE; the AWS SDK replaces it with AWS_CA_BUNDLE when that is set).
  const clientEnv = { ...noNetEnv, HTTPS_PROXY: `http://${INTERCEPT}`, https_proxy: `http://${INTERCEPT}`, SSL_CERT_FILE: ca, AWS_CA_BUNDLE: ca };
  const client = runner.spawn("sqs-client", "node", [path.join(E2E_DIR, "pt-client.mjs"),
    "--state", path.join(runner.runDir, "sqs-client"), "--args", args,
    "--log", path.join(runner.runDir, "sqs-client.log"), "--", peers.client, "-unsafe-logging"], { netns, env: clientEnv, stdin: "pipe" });
  const deadline = Date.now() + timeoutMs;
  const socks = await client.waitForEvent("socks", 15000).catch((e) => ({ ok: false, error: e.message }));
  const [clientRes, proxyRes] = await Promise.all([
    (async () => {
      const answered = await seen(client, RE.answer, deadline);
      const open = answered && (await seen(client, RE.open, deadline));
      return { answered, open };
    })(),
    (async () => {
      const offered = await seen(proxy, RE.offer, deadline);
      const connected = offered && (await seen(proxy, RE.connected, deadline));
      const relayed = connected && (requireRelay ? await seen(proxy, RE.relay, deadline) : proxy.lines.some((l) => RE.relay.test(l)));
      return { offered, connected, relayed };
    })(),
  ]);
  await new Promise((r) => setTimeout(r, 1000));
  const prometheus = await fetch(new URL("prometheus", broker.url)).then((r) => r.text()).catch((e) => `unreadable: ${e.message}`);

  const connects = intercept.events("connect");
  const targets = intercept.events("request").map((r) => r.target);
  const sqsLines = prometheus.split("\n").filter((l) => l.includes('rendezvous_method="sqs"'));
  checks.check("client: SOCKS connection accepted by snowflake-client", socks.ok, socks.error);
  checks.check("client: rendezvous only through SQS (no HTTP rendezvous)", client.lines.some((l) => RE.sqs.test(l)) && !client.lines.some((l) => RE.http.test(l)));
  checks.check(`client: reached SQS only over TLS to ${SQS_HOST}, through the intercepting proxy`,
    connects.length > 0 && connects.every((c) => c.ok && c.host === `${SQS_HOST}:443`), JSON.stringify(connects));
  checks.check("client: sent its offer (SendMessage) and read its own queue (GetQueueUrl, ReceiveMessage)",
    ["AmazonSQS.SendMessage", "AmazonSQS.GetQueueUrl", "AmazonSQS.ReceiveMessage"].every((t) => targets.includes(t)), targets.join(", "));
  checks.check('client: got its answer through SQS ("Received Answer.")', clientRes.answered);
  checks.check("client: WebRTC data channel to a real proxy open", clientRes.open);
  checks.check("proxy: received the client's offer and connected", proxyRes.offered && proxyRes.connected);
  if (requireRelay) checks.check("proxy: reached the relay", proxyRes.relayed);
  else checks.skip("proxy: reached the relay", "E2E_REQUIRE_RELAY=0");
  checks.check('broker: /prometheus counts the rendezvous with rendezvous_method="sqs", status "matched"',
    sqsLines.some((l) => l.includes('status="matched"')), sqsLines.join(", ") || prometheus.slice(0, 200));
  const figures = {
    "client version": peers.version,
    "SQS calls through the intercepting proxy": `${targets.length} (${[...new Set(targets)].map((t) => t?.replace("AmazonSQS.", "")).join(", ")})`,
    "TLS connections intercepted": String(connects.length),
    "/prometheus sqs series": sqsLines.map((l) => l.replace("snowflake_rounded_client_poll_total", "")).join(", "),
    "relay WebSocket connections": `${relay.events("connect").length} (${relay.events("data").length} carrying data)`,
  };
  await Promise.all([client, proxy, stun, relay, intercept, netns.holder].map((p) => runner.stop(p)));
  return { checks: checks.list, figures };
}
