// A small STUN server (RFC 5389 binding + the RFC 5780 NAT behaviour attributes) for the
// end-to-end tests. It listens on two addresses and two ports (four UDP sockets), so that it
// can answer a CHANGE-REQUEST from the other address and/or port, as the Go snowflake client's
// NAT test (mapping test: OTHER-ADDRESS; filtering test: change port) expects.
//
// Usage: node stun-server.mjs [--host 127.0.0.1] [--alt-host 127.0.0.2] [--port 3478] [--alt-port 3479]
// It prints one JSON line {"event":"ready",...} when listening, and one per answered request.
// Only loopback addresses are accepted.

import dgram from "node:dgram";
import { parseArgs } from "node:util";

const MAGIC = 0x2112a442;
const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const ATTR = {
  MAPPED_ADDRESS: 0x0001,
  CHANGE_REQUEST: 0x0003,
  XOR_MAPPED_ADDRESS: 0x0020,
  SOFTWARE: 0x8022,
  FINGERPRINT: 0x8028,
  RESPONSE_ORIGIN: 0x802b,
  OTHER_ADDRESS: 0x802c,
};

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function ipv4Bytes(ip) {
  return Buffer.from(ip.split(".").map((x) => Number(x)));
}

function attr(type, value) {
  const pad = (4 - (value.length % 4)) % 4;
  const b = Buffer.alloc(4 + value.length + pad);
  b.writeUInt16BE(type, 0);
  b.writeUInt16BE(value.length, 2);
  value.copy(b, 4);
  return b;
}

function addressValue(ip, port) {
  const v = Buffer.alloc(8);
  v[1] = 0x01; // IPv4
  v.writeUInt16BE(port, 2);
  ipv4Bytes(ip).copy(v, 4);
  return v;
}

function xorAddressValue(ip, port) {
  const v = addressValue(ip, port);
  v.writeUInt16BE(port ^ (MAGIC >>> 16), 2);
  v.writeUInt32BE((v.readUInt32BE(4) ^ MAGIC) >>> 0, 4);
  return v;
}

// Parses a STUN message; returns null when it is not a well-formed STUN message.
export function parseStun(buf) {
  if (buf.length < 20 || (buf[0] & 0xc0) !== 0) return null;
  const type = buf.readUInt16BE(0);
  const length = buf.readUInt16BE(2);
  if (buf.readUInt32BE(4) !== MAGIC || 20 + length > buf.length) return null;
  const tid = buf.subarray(8, 20);
  const attrs = new Map();
  let off = 20;
  while (off + 4 <= 20 + length) {
    const t = buf.readUInt16BE(off);
    const l = buf.readUInt16BE(off + 2);
    if (off + 4 + l > buf.length) return null;
    if (!attrs.has(t)) attrs.set(t, buf.subarray(off + 4, off + 4 + l));
    off += 4 + l + ((4 - (l % 4)) % 4);
  }
  return { type, tid, attrs };
}

function buildResponse(tid, { mapped, origin, other }) {
  const parts = [
    attr(ATTR.XOR_MAPPED_ADDRESS, xorAddressValue(mapped.address, mapped.port)),
    attr(ATTR.MAPPED_ADDRESS, addressValue(mapped.address, mapped.port)),
    attr(ATTR.RESPONSE_ORIGIN, addressValue(origin.address, origin.port)),
    attr(ATTR.OTHER_ADDRESS, addressValue(other.address, other.port)),
    attr(ATTR.SOFTWARE, Buffer.from("snowflake-broker e2e stun")),
  ];
  let body = Buffer.concat(parts);
  const header = Buffer.alloc(20);
  header.writeUInt16BE(BINDING_SUCCESS, 0);
  header.writeUInt32BE(MAGIC, 4);
  tid.copy(header, 8);
  // FINGERPRINT: the length in the header must include it when the CRC is computed.
  header.writeUInt16BE(body.length + 8, 2);
  const crc = (crc32(Buffer.concat([header, body])) ^ 0x5354554e) >>> 0;
  const fp = Buffer.alloc(4);
  fp.writeUInt32BE(crc, 0);
  body = Buffer.concat([body, attr(ATTR.FINGERPRINT, fp)]);
  return Buffer.concat([header, body]);
}

function isLoopback(ip) {
  return /^127\.\d+\.\d+\.\d+$/.test(ip);
}

// Starts the server; resolves to { close(), stats } once all four sockets listen.
export async function startStunServer({
  host = "127.0.0.1",
  altHost = "127.0.0.2",
  port = 3478,
  altPort = 3479,
  onRequest = () => {},
} = {}) {
  if (!isLoopback(host) || !isLoopback(altHost)) throw new Error("STUN server: loopback addresses only");
  const hosts = [host, altHost];
  const ports = [port, altPort];
  const sockets = [
    [null, null],
    [null, null],
  ];
  const stats = { requests: 0, changeRequests: 0 };
  await Promise.all(
    [0, 1].flatMap((a) =>
      [0, 1].map(
        (p) =>
          new Promise((resolve, reject) => {
            const s = dgram.createSocket("udp4");
            sockets[a][p] = s;
            s.once("error", reject);
            s.on("message", (msg, rinfo) => {
              const m = parseStun(msg);
              if (!m || m.type !== BINDING_REQUEST) return;
              let changeIp = false;
              let changePort = false;
              const cr = m.attrs.get(ATTR.CHANGE_REQUEST);
              if (cr && cr.length >= 4) {
                changeIp = (cr[3] & 0x04) !== 0;
                changePort = (cr[3] & 0x02) !== 0;
                stats.changeRequests++;
              }
              stats.requests++;
              const ra = changeIp ? 1 - a : a;
              const rp = changePort ? 1 - p : p;
              const resp = buildResponse(m.tid, {
                mapped: { address: rinfo.address, port: rinfo.port },
                origin: { address: hosts[ra], port: ports[rp] },
                other: { address: hosts[1 - a], port: ports[1 - p] },
              });
              sockets[ra][rp].send(resp, rinfo.port, rinfo.address);
              onRequest({
                from: `${rinfo.address}:${rinfo.port}`,
                to: `${hosts[a]}:${ports[p]}`,
                via: `${hosts[ra]}:${ports[rp]}`,
                changeIp,
                changePort,
              });
            });
            s.bind(ports[p], hosts[a], () => {
              s.off("error", reject);
              resolve();
            });
          }),
      ),
    ),
  );
  return {
    stats,
    close() {
      for (const row of sockets) for (const s of row) s?.close();
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      host: { type: "string", default: "127.0.0.1" },
      "alt-host": { type: "string", default: "127.0.0.2" },
      port: { type: "string", default: "3478" },
      "alt-port": { type: "string", default: "3479" },
      quiet: { type: "boolean", default: false },
    },
  });
  const server = await startStunServer({
    host: values.host,
    altHost: values["alt-host"],
    port: Number(values.port),
    altPort: Number(values["alt-port"]),
    onRequest: (r) => {
      if (!values.quiet) console.log(JSON.stringify({ event: "request", ...r }));
    },
  });
  console.log(JSON.stringify({ event: "ready", host: values.host, altHost: values["alt-host"], port: Number(values.port), altPort: Number(values["alt-port"]) }));
  const stop = () => {
    server.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
