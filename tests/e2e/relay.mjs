// A minimal WebSocket server that stands in for the Snowflake bridge's WebSocket relay in the
// end-to-end tests. It accepts any WebSocket upgrade, records it, answers pings, and discards
// the data (the test only proves that proxies reach the relay, not Tor itself).
//
// Usage: node relay.mjs [--host 127.0.0.1] [--port 8081]
// It prints JSON lines: {"event":"ready",...}, {"event":"connect","path":...,"id":n},
// {"event":"data","id":n,"bytes":b} (first data message per connection), {"event":"close","id":n}.

import http from "node:http";
import crypto from "node:crypto";
import { parseArgs } from "node:util";

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

function frame(opcode, payload = Buffer.alloc(0)) {
  const len = payload.length;
  let header;
  if (len < 126) {
    header = Buffer.from([0x80 | opcode, len]);
  } else if (len < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(len, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([header, payload]);
}

// Splits complete frames off the front of buf; returns { frames, rest }.
function parseFrames(buf) {
  const frames = [];
  let off = 0;
  for (;;) {
    if (buf.length - off < 2) break;
    const b0 = buf[off];
    const b1 = buf[off + 1];
    let len = b1 & 0x7f;
    let pos = off + 2;
    if (len === 126) {
      if (buf.length - pos < 2) break;
      len = buf.readUInt16BE(pos);
      pos += 2;
    } else if (len === 127) {
      if (buf.length - pos < 8) break;
      len = Number(buf.readBigUInt64BE(pos));
      pos += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    let mask = null;
    if (masked) {
      if (buf.length - pos < 4) break;
      mask = buf.subarray(pos, pos + 4);
      pos += 4;
    }
    if (buf.length - pos < len) break;
    const payload = Buffer.from(buf.subarray(pos, pos + len));
    if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
    frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload });
    off = pos + len;
  }
  return { frames, rest: buf.subarray(off) };
}

function isLoopback(ip) {
  return /^127\.\d+\.\d+\.\d+$/.test(ip) || ip === "::1" || ip === "localhost";
}

export async function startRelay({ host = "127.0.0.1", port = 8081, onEvent = () => {} } = {}) {
  if (!isLoopback(host)) throw new Error("relay: loopback addresses only");
  let nextId = 1;
  const sockets = new Set();
  const stats = { connections: 0, withData: 0 };
  const server = http.createServer((req, res) => {
    res.writeHead(426, { "Content-Type": "text/plain" });
    res.end("WebSocket upgrade required\n");
  });
  server.on("upgrade", (req, socket) => {
    const key = req.headers["sec-websocket-key"];
    if (!key || String(req.headers.upgrade).toLowerCase() !== "websocket") {
      socket.end("HTTP/1.1 400 Bad Request\r\n\r\n");
      return;
    }
    const accept = crypto.createHash("sha1").update(key + WS_GUID).digest("base64");
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    const id = nextId++;
    stats.connections++;
    sockets.add(socket);
    onEvent({ event: "connect", id, path: req.url, from: `${socket.remoteAddress}:${socket.remotePort}` });
    let buf = Buffer.alloc(0);
    let sawData = false;
    socket.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const { frames, rest } = parseFrames(buf);
      buf = Buffer.from(rest);
      for (const f of frames) {
        if (f.opcode === 0x8) {
          socket.end(frame(0x8, f.payload.subarray(0, 2)));
        } else if (f.opcode === 0x9) {
          socket.write(frame(0xa, f.payload));
        } else if ((f.opcode === 0x1 || f.opcode === 0x2 || f.opcode === 0x0) && !sawData && f.payload.length) {
          sawData = true;
          stats.withData++;
          onEvent({ event: "data", id, bytes: f.payload.length });
        }
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      sockets.delete(socket);
      onEvent({ event: "close", id });
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return {
    stats,
    port: server.address().port,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8081" },
    },
  });
  const relay = await startRelay({
    host: values.host,
    port: Number(values.port),
    onEvent: (e) => console.log(JSON.stringify(e)),
  });
  console.log(JSON.stringify({ event: "ready", host: values.host, port: relay.port }));
  const stop = () => {
    relay.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
