// Acts as the Snowflake browser-extension proxy (snowflake-webext broker.js) does towards the
// broker: cross-origin POST /proxy with a text/plain JSON body and "Type":"webext", then, on
// "client match", a real WebRTC answer to the client's offer, sent with POST /answer and
// "Version":"1.0". Everything it sees is reported to this page's own origin (POST /report).
//
// Query parameters: broker (base URL, ending in "/"), sid, pattern (AcceptedRelayPattern),
// ice (STUN URL for the RTCPeerConnection, optional), deadline (ms, default 30000).
"use strict";

(async () => {
  const params = new URLSearchParams(location.search);
  const broker = params.get("broker");
  const sid = params.get("sid");
  const pattern = params.get("pattern") ?? "";
  const ice = params.get("ice");
  const deadline = Date.now() + Number(params.get("deadline") ?? 30000);
  const report = { origin: location.origin, broker, sid, polls: [], events: [] };
  const logEl = document.getElementById("log");
  const note = (msg) => {
    report.events.push(`${new Date().toISOString()} ${msg}`);
    logEl.textContent += msg + "\n";
  };
  const send = (final) =>
    fetch("/report", { method: "POST", body: JSON.stringify({ ...report, final }) }).catch(() => {});

  try {
    // 1. Poll until a client is matched with us (the broker holds each poll open).
    let match = null;
    while (!match && Date.now() < deadline) {
      const body = JSON.stringify({
        Version: "1.3",
        Sid: sid,
        Type: "webext",
        NAT: "unrestricted",
        Clients: 0,
        AcceptedRelayPattern: pattern,
      });
      // A string body makes this a CORS "simple" request (text/plain), as the extension's XHR is.
      const res = await fetch(new URL("proxy", broker), { method: "POST", body });
      const text = await res.text();
      report.polls.push({ status: res.status, body: text });
      note(`poll: HTTP ${res.status} ${text.slice(0, 120)}`);
      if (res.status !== 200) throw new Error(`poll: HTTP ${res.status}`);
      const json = JSON.parse(text);
      if (json.Status === "client match") match = json;
      else if (json.Status !== "no match") throw new Error(`poll: unexpected Status ${json.Status}`);
      send(false);
    }
    if (!match) throw new Error("no client matched before the deadline");
    report.offer = match.Offer;
    report.relayURL = match.RelayURL;
    report.clientNAT = match.NAT;

    // 2. Answer the offer with a real RTCPeerConnection, waiting for ICE gathering as the
    //    extension does (it sends the answer with its candidates).
    const offer = JSON.parse(match.Offer);
    if (params.get("media") === "1") {
      // Chromium gathers host candidates only on the default-route interface unless the page
      // has media permission. The test's network namespace has no default route (nothing may
      // leave it), so the test grants fake media permission to let Chromium enumerate the
      // namespace's private veth interface instead.
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      stream.getTracks().forEach((t) => t.stop());
    }
    const pc = new RTCPeerConnection({ iceServers: ice ? [{ urls: ice }] : [] });
    pc.ondatachannel = () => note("data channel from client");
    const gathered = new Promise((resolve) => {
      pc.onicecandidate = (e) => {
        if (!e.candidate) resolve();
      };
      setTimeout(resolve, 5000);
    });
    await pc.setRemoteDescription(offer);
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered;
    const answer = JSON.stringify({ type: pc.localDescription.type, sdp: pc.localDescription.sdp });
    report.answer = answer;
    note(`answer created, ${(answer.match(/a=candidate/g) || []).length} candidates`);

    // 3. Send the answer, protocol version 1.0 as the extension does.
    const res = await fetch(new URL("answer", broker), {
      method: "POST",
      body: JSON.stringify({ Version: "1.0", Sid: sid, Answer: answer }),
    });
    report.answerResponse = { status: res.status, body: await res.text() };
    note(`answer: HTTP ${res.status} ${report.answerResponse.body}`);
    report.ok = true;
    pc.close();
  } catch (e) {
    report.error = String(e && e.stack ? e.stack : e);
    note(`error: ${report.error}`);
  }
  await send(true);
})();
