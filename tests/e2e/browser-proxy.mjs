// Test 2: a browser proxy. Debian's Chromium, headless, loads page/index.html from an origin
// that differs from the broker's (another loopback port); the page polls the broker
// cross-origin as the Snowflake browser extension does (text/plain POST /proxy, "Type":"webext"),
// answers the client's offer with a real RTCPeerConnection and POSTs /answer with version 1.0.
// The test plays the client (POST /client) and asserts that it received exactly the page's
// answer. The browser runs in a private network namespace (lo and a veth pair whose both ends
// are inside it, so that Chromium has an interface to gather ICE candidates on).

import crypto from "node:crypto";
import path from "node:path";
import { NS, FINGERPRINT, Checks, createNetns, forwardBrokerInto, randomSid, sleep, E2E_DIR } from "./lib.mjs";

const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-default-apps",
  "--disable-extensions",
  "--no-default-browser-check",
  // Real addresses in host candidates instead of mDNS names (no multicast needed).
  "--disable-features=WebRtcHideLocalIpsWithMdns",
  // Media permission without a prompt or a device (see the "media" parameter in page/proxy.js).
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
];

// A client offer as the Go client writes it: JSON {"type":"offer","sdp":...}, the SDP of a
// data-channel-only session with one server-reflexive candidate on loopback.
function makeOffer() {
  const rnd = (n, alphabet) => Array.from(crypto.randomBytes(n), (b) => alphabet[b % alphabet.length]).join("");
  const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const fp = Array.from(crypto.randomBytes(32), (b) => b.toString(16).toUpperCase().padStart(2, "0")).join(":");
  const port = 40000 + (crypto.randomBytes(2).readUInt16BE(0) % 20000);
  const sdp = [
    "v=0",
    `o=- ${crypto.randomBytes(6).readUIntBE(0, 6)} ${Math.floor(Date.now() / 1000)} IN IP4 0.0.0.0`,
    "s=-",
    "t=0 0",
    `a=fingerprint:sha-256 ${fp}`,
    "a=extmap-allow-mixed",
    "a=group:BUNDLE 0",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 0.0.0.0",
    "a=setup:actpass",
    "a=mid:0",
    "a=sendrecv",
    "a=sctp-port:5000",
    `a=ice-ufrag:${rnd(16, letters)}`,
    `a=ice-pwd:${rnd(32, letters)}`,
    `a=candidate:3835024012 1 udp 1694498815 127.0.0.1 ${port} typ srflx raddr 0.0.0.0 rport ${port}`,
    `a=candidate:3835024012 2 udp 1694498815 127.0.0.1 ${port} typ srflx raddr 0.0.0.0 rport ${port}`,
    "a=end-of-candidates",
    "",
  ].join("\r\n");
  return JSON.stringify({ type: "offer", sdp });
}

export async function browserProxyTest(runner, broker, { relayPattern, expectedRelayUrl, timeoutMs = 40000 }) {
  const checks = new Checks("browser proxy");
  const netns = await createNetns(runner, "browser", { veth: true });
  const brokerInNs = await forwardBrokerInto(runner, netns, broker);
  const pageServer = runner.spawn("page-server", "node", [path.join(E2E_DIR, "page-server.mjs"),
    "--host", NS.page.split(":")[0], "--port", NS.page.split(":")[1]], { netns });
  const pageUrl = (await pageServer.waitForEvent("ready", 10000)).url;

  const sid = randomSid();
  const query = new URLSearchParams({ broker: brokerInNs, sid, pattern: relayPattern, media: "1", deadline: String(timeoutMs) });
  const url = `${pageUrl}index.html?${query}`;
  const chromium = runner.spawn("chromium", "chromium", [
    ...CHROMIUM_FLAGS,
    `--user-data-dir=${path.join(runner.runDir, "chromium-profile")}`,
    url,
  ], { netns });

  // Play the client: POST /client until the page's poll is waiting at the broker (a client that
  // finds no proxy is told so at once).
  const offer = makeOffer();
  const body = `1.0\n${JSON.stringify({ offer, nat: "unrestricted", fingerprint: FINGERPRINT })}`;
  const deadline = Date.now() + timeoutMs;
  let clientStatus = null;
  let clientBody = null;
  let attempts = 0;
  while (Date.now() < deadline) {
    attempts++;
    try {
      const res = await fetch(new URL("client", broker.url), { method: "POST", body });
      clientStatus = res.status;
      clientBody = await res.text();
    } catch (e) {
      clientStatus = null;
      clientBody = String(e);
    }
    if (!(clientStatus === 200 && clientBody.includes("no snowflake proxies currently available"))) break;
    await sleep(250);
  }
  runner.note(`client: ${attempts} request(s); last: HTTP ${clientStatus} ${clientBody}`);

  let report = {};
  try {
    report = (await pageServer.waitForLine(/^\{"event":"report".*"final":true\}\}$/, Math.max(1000, deadline - Date.now()), "the page's final report")
      .then((m) => JSON.parse(m.input))).report;
  } catch (e) {
    const partial = pageServer.events("report").pop();
    report = partial?.report ?? {};
    report.error = report.error ?? e.message;
  }
  runner.note(`page report: ${JSON.stringify(report)}`);

  let clientAnswer = null;
  try {
    clientAnswer = JSON.parse(clientBody).answer ?? null;
  } catch {}
  const polls = report.polls ?? [];
  const brokerOrigin = new URL(brokerInNs).origin;

  checks.check("Chromium loaded the page from another origin than the broker's",
    report.origin && report.origin !== brokerOrigin, `page ${report.origin ?? "?"}, broker ${brokerOrigin}`);
  checks.check("the page's cross-origin POST /proxy polls got readable HTTP 200 responses (CORS)",
    polls.length > 0 && polls.every((p) => p.status === 200), `${polls.length} poll(s)${report.error ? `; page error: ${report.error}` : ""}`);
  checks.check("the page was matched and received exactly the client's offer",
    report.offer === offer && report.clientNAT === "unrestricted");
  if (expectedRelayUrl) checks.check("the match carried the bridge's relay URL", report.relayURL === expectedRelayUrl, `got ${JSON.stringify(report.relayURL)}`);
  checks.check("the page's POST /answer (Version 1.0) was accepted",
    report.answerResponse?.status === 200 && report.answerResponse?.body === '{"Status":"success"}',
    JSON.stringify(report.answerResponse ?? null));
  checks.check("the client received exactly the page's answer",
    clientStatus === 200 && typeof report.answer === "string" && clientAnswer === report.answer && clientBody === JSON.stringify({ answer: report.answer }),
    `client got HTTP ${clientStatus} ${String(clientBody).slice(0, 200)}`);
  let answerSdp = {};
  try {
    answerSdp = JSON.parse(report.answer);
  } catch {}
  checks.check("the answer is a real WebRTC answer with ICE candidates",
    answerSdp.type === "answer" && /a=candidate:/.test(answerSdp.sdp ?? ""));

  const figures = {
    "page polls": polls.length,
    "client requests": attempts,
    "answer candidates": (String(answerSdp.sdp ?? "").match(/a=candidate:/g) ?? []).length,
  };
  await Promise.all([chromium, pageServer, netns.holder].map((p) => runner.stop(p)));
  return { checks: checks.list, figures };
}
