// Plays Tor's part towards the managed pluggable transport `snowflake-client`: starts it with
// the TOR_PT_* environment, reads its CMETHOD line, opens a SOCKS5 connection whose username
// carries the transport arguments (password: one NUL byte), CONNECTs, sends a few bytes and keeps
// the connection open until stopped. Run it inside the peers' network namespace.
//
// Usage: node pt-client.mjs --state DIR --log FILE --args 'url=...;ice=...;max=1;fingerprint=...' -- snowflake-client [flags]
// The transport is given `-log FILE`; this script copies that log and the transport's stdout to
// its own stdout and adds JSON lines {"event":"cmethod","port":n} and
// {"event":"socks","ok":true|false,...}.

import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { state: { type: "string" }, args: { type: "string" }, log: { type: "string" } },
});
fs.mkdirSync(values.state, { recursive: true });
fs.writeFileSync(values.log, "");

const say = (o) => console.log(JSON.stringify(o));
const pt = spawn(positionals[0], [...positionals.slice(1), "-log", values.log], {
  env: {
    ...process.env,
    TOR_PT_MANAGED_TRANSPORT_VER: "1",
    TOR_PT_CLIENT_TRANSPORTS: "snowflake",
    TOR_PT_STATE_LOCATION: values.state,
    TOR_PT_EXIT_ON_STDIN_CLOSE: "1",
  },
  stdio: ["pipe", "pipe", "inherit"],
});
pt.on("exit", (code, sig) => {
  copyLog();
  say({ event: "pt-exit", code, signal: sig });
  process.exit(code ?? 1);
});

// Copies what the transport appends to its log file.
let logPos = 0;
function copyLog() {
  try {
    const fd = fs.openSync(values.log, "r");
    const buf = Buffer.alloc(1 << 16);
    let n;
    while ((n = fs.readSync(fd, buf, 0, buf.length, logPos)) > 0) {
      process.stdout.write(buf.subarray(0, n));
      logPos += n;
    }
    fs.closeSync(fd);
  } catch {}
}
setInterval(copyLog, 100);

let out = "";
let started = false;
pt.stdout.on("data", (d) => {
  process.stdout.write(d);
  out += d;
  const m = /^CMETHOD snowflake socks5 127\.0\.0\.1:(\d+)$/m.exec(out);
  if (m && !started) {
    started = true;
    say({ event: "cmethod", port: Number(m[1]) });
    socks(Number(m[1]));
  }
  if (/^CMETHOD-ERROR/m.test(out) && !started) {
    started = true;
    say({ event: "socks", ok: false, error: "CMETHOD-ERROR" });
  }
});

function socks(port) {
  const user = Buffer.from(values.args);
  const s = net.connect(port, "127.0.0.1");
  let stage = 0;
  let buf = Buffer.alloc(0);
  s.on("connect", () => s.write(Buffer.from([5, 1, 2]))); // SOCKS5, one method: username/password
  s.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    if (stage === 0 && buf.length >= 2) {
      if (buf[0] !== 5 || buf[1] !== 2) return fail(`method reply ${buf.toString("hex")}`);
      buf = buf.subarray(2);
      stage = 1;
      // RFC 1929: version 1, username, password. The PT arguments go in the username; as Tor
      // does, arguments longer than a username's 255 bytes continue in the password (the
      // transport reads the two as one string), and a lone NUL byte is the empty password.
      const head = user.subarray(0, 255);
      const tail = user.length > 255 ? user.subarray(255) : Buffer.from([0]);
      if (tail.length > 255) return fail(`PT arguments over 510 bytes (${user.length})`);
      s.write(Buffer.concat([Buffer.from([1, head.length]), head, Buffer.from([tail.length]), tail]));
    }
    if (stage === 1 && buf.length >= 2) {
      if (buf[1] !== 0) return fail(`auth reply ${buf.toString("hex")}`);
      buf = buf.subarray(2);
      stage = 2;
      // CONNECT 127.0.0.1:9: the transport ignores the address (the bridge is chosen by
      // fingerprint), and nothing else is ever a target here.
      s.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, 0, 9]));
    }
    if (stage === 2 && buf.length >= 10) {
      if (buf[1] !== 0) return fail(`connect reply ${buf.toString("hex")}`);
      stage = 3;
      say({ event: "socks", ok: true });
      s.write("snowflake-broker e2e test data\n");
    }
  });
  s.on("error", (e) => fail(e.message));
  s.on("close", () => say({ event: "socks-closed" }));
  function fail(error) {
    say({ event: "socks", ok: false, error });
    s.destroy();
  }
}

const stop = () => {
  pt.stdin.end(); // TOR_PT_EXIT_ON_STDIN_CLOSE
  pt.kill("SIGTERM");
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
