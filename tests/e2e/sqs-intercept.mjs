// The SQS end-to-end test's way to Amazon: an HTTP proxy that a real snowflake-client reaches
// through HTTPS_PROXY. For `CONNECT sqs.<region>.amazonaws.com:443` it answers 200, then speaks
// TLS to the client with a certificate for that host signed by the test's throw-away CA (the
// client trusts it through SSL_CERT_FILE), and passes the decrypted HTTP/1.1 requests on to
// the local SQS server (moto) unchanged. Any other CONNECT is refused 403. So the client
// believes it talks to AWS over TLS, and everything stays on loopback.
//
// Usage: node sqs-intercept.mjs --listen 127.0.0.1:8443 --to 127.0.0.1:5000 --dir <cert dir>
//   <cert dir> holds ca.pem (given to the client), and <host>.key/<host>.pem made by lib.mjs.
// It prints JSON lines: {"event":"ready"}, {"event":"connect","host":…,"ok":…},
// {"event":"request","method":…,"target":…} per intercepted request.

import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import tls from "node:tls";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { listen: { type: "string" }, to: { type: "string" }, dir: { type: "string" } },
});
const [listenHost, listenPort] = values.listen.split(":");
const [toHost, toPort] = values.to.split(":");
const say = (event) => console.log(JSON.stringify(event));
const SQS_HOST = /^sqs\.[a-z0-9-]+\.amazonaws\.com$/;

// The decrypted side: every request is passed on to the SQS server as it came.
const inner = http.createServer((req, res) => {
  say({ event: "request", method: req.method, target: req.headers["x-amz-target"] ?? null, host: req.headers.host });
  const upstream = http.request(
    { host: toHost, port: Number(toPort), method: req.method, path: req.url, headers: req.headers },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  upstream.on("error", (e) => {
    res.writeHead(502);
    res.end(String(e));
  });
  req.pipe(upstream);
});

const server = http.createServer((req, res) => {
  res.writeHead(405);
  res.end("CONNECT only\n");
});
server.on("connect", (req, socket, head) => {
  const [host, port] = (req.url ?? "").split(":");
  const ok = SQS_HOST.test(host) && port === "443" && fs.existsSync(path.join(values.dir, `${host}.pem`));
  say({ event: "connect", host: req.url, ok });
  if (!ok) {
    socket.end("HTTP/1.1 403 Forbidden\r\n\r\n");
    return;
  }
  socket.write("HTTP/1.1 200 Connection Established\r\n\r\n", () => {
    if (head?.length) socket.unshift(head);
    const secure = new tls.TLSSocket(socket, {
      isServer: true,
      key: fs.readFileSync(path.join(values.dir, `${host}.key`)),
      cert: fs.readFileSync(path.join(values.dir, `${host}.pem`)),
      ALPNProtocols: ["http/1.1"],
    });
    secure.on("error", () => socket.destroy());
    inner.emit("connection", secure);
  });
});
server.listen(Number(listenPort), listenHost, () => say({ event: "ready", listen: values.listen }));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
