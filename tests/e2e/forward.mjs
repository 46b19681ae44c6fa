// A byte forwarder between a TCP port and a Unix socket (or the other way round). The
// end-to-end tests run the peers in a private network namespace that has only `lo`; the broker
// runs in the root namespace. A Unix socket in the file system is visible from both, so one
// forwarder in each namespace joins them:
//   root namespace:    unix:/tmp/.../broker.sock  ->  127.0.0.1:<broker port>
//   peers' namespace:  127.0.0.1:8787             ->  unix:/tmp/.../broker.sock
//
// Usage: node forward.mjs --listen <addr> --connect <addr> [--local-address 127.0.0.N]
//   where <addr> is unix:/path or host:port with a loopback host; --local-address is the
//   loopback address the connections to --connect come from (what the broker sees as the peer).
// It prints {"event":"ready",...} once listening.

import net from "node:net";
import fs from "node:fs";
import { parseArgs } from "node:util";

function parseAddr(s) {
  if (s.startsWith("unix:")) return { path: s.slice(5) };
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(s);
  if (!m) throw new Error(`bad address ${s}`);
  const host = m[1] === "localhost" ? "127.0.0.1" : m[1];
  if (!/^127\.\d+\.\d+\.\d+$/.test(host) && host !== "::1") throw new Error(`forward: loopback addresses only, not ${host}`);
  return { host, port: Number(m[2]) };
}

export async function startForwarder(listen, connect, localAddress) {
  const from = parseAddr(listen);
  const to = parseAddr(connect);
  if (localAddress) {
    if (to.path || !/^127\.\d+\.\d+\.\d+$/.test(localAddress)) throw new Error(`forward: bad --local-address ${localAddress}`);
    to.localAddress = localAddress;
  }
  if (from.path) {
    try {
      fs.unlinkSync(from.path);
    } catch {}
  }
  const conns = new Set();
  const server = net.createServer((a) => {
    const b = net.connect(to);
    conns.add(a);
    conns.add(b);
    a.pipe(b);
    b.pipe(a);
    const done = () => {
      a.destroy();
      b.destroy();
      conns.delete(a);
      conns.delete(b);
    };
    a.on("error", done);
    b.on("error", done);
    a.on("close", done);
    b.on("close", done);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    if (from.path) server.listen(from.path, resolve);
    else server.listen(from.port, from.host, resolve);
  });
  return {
    address: from.path ? `unix:${from.path}` : `${from.host}:${server.address().port}`,
    close() {
      for (const c of conns) c.destroy();
      server.close();
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { listen: { type: "string" }, connect: { type: "string" }, "local-address": { type: "string" } },
  });
  const f = await startForwarder(values.listen, values.connect, values["local-address"]);
  console.log(JSON.stringify({ event: "ready", listen: f.address, connect: values.connect }));
  const stop = () => {
    f.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
