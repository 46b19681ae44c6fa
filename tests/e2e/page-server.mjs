// Serves tests/e2e/page/ over HTTP for the browser-proxy test, on an origin that differs from
// the broker's (another loopback port), and collects what the page reports.
//
// Usage: node page-server.mjs [--host 127.0.0.1] [--port 0]
// GET /<file> serves tests/e2e/page/<file>; POST /report prints the JSON it receives as one
// line {"event":"report","report":...}. It prints {"event":"ready","url":...} once listening.

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const pageDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "page");
const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8" };

const { values } = parseArgs({
  options: { host: { type: "string", default: "127.0.0.1" }, port: { type: "string", default: "0" } },
});
if (!/^127\.\d+\.\d+\.\d+$/.test(values.host)) throw new Error("page server: loopback addresses only");

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://x");
  if (req.method === "POST" && url.pathname === "/report") {
    let body = "";
    for await (const c of req) body += c;
    let report;
    try {
      report = JSON.parse(body);
    } catch {
      report = { unparsable: body };
    }
    console.log(JSON.stringify({ event: "report", report }));
    res.writeHead(204);
    res.end();
    return;
  }
  if (req.method === "GET") {
    const name = url.pathname === "/" ? "index.html" : url.pathname.slice(1);
    const file = path.join(pageDir, path.normalize(name));
    if (file.startsWith(pageDir + path.sep) && fs.existsSync(file) && fs.statSync(file).isFile()) {
      res.writeHead(200, { "Content-Type": types[path.extname(file)] ?? "application/octet-stream", "Cache-Control": "no-store" });
      res.end(fs.readFileSync(file));
      return;
    }
  }
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("not found\n");
});
server.listen(Number(values.port), values.host, () => {
  const { port } = server.address();
  console.log(JSON.stringify({ event: "ready", url: `http://${values.host}:${port}/` }));
});
const stop = () => {
  server.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
