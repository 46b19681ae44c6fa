// Routing as Go's ServeMux does it, CORS headers and the OPTIONS short-circuit, /robots.txt,
// /debug, /metrics, /prometheus, 404s and 301s, and the edge's gzip.
// docs/protocol.md §1 (table, CORS, Content-Type, unknown paths, path normalisation), §1.1,
// §1.5-§1.7, §9 #48-#51.

import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  EMPTY_DEBUG,
  NOT_FOUND,
  ROBOTS,
  TEXT_PLAIN,
  assertCors,
  assertEmpty,
  assertMetricsResponse,
  assertPrometheusResponse,
  assertText,
  clientBody,
  debugText,
  newSid,
  noMatch,
  offerJson,
  pollBody,
  startBroker,
} from "./harness.mjs";

let b;

before(async () => {
  b = await startBroker({ PROXY_POLL_TIMEOUT_MS: "600", CLIENT_TIMEOUT_MS: "600" });
});
after(() => b?.close());
beforeEach(() => b.waitIdle());

const CORS_PATHS = ["/proxy", "/client", "/answer", "/debug", "/metrics", "/amp/client/", "/amp/client/0abc/MS4w"];

function assertNotFound(res, { cors = false } = {}) {
  assertText(res, 404, NOT_FOUND, { cors });
  assert.equal(res.header("x-content-type-options"), "nosniff", `nosniff: ${res}`);
}

describe("CORS and OPTIONS", () => {
  test("OPTIONS on every wrapped path: 200, empty, no Content-Type, both CORS headers, no Allow-Methods (§9 #49)", async () => {
    for (const path of CORS_PATHS) {
      for (const headers of [{}, { Origin: "https://example.org", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "X-Session-ID" }]) {
        const res = await b.request("OPTIONS", path, { headers });
        assert.equal(res.status, 200, `${path}: ${res}`);
        assertEmpty(res, 200, { cors: true });
      }
    }
  });

  test("OPTIONS short-circuits before the handler: a valid poll body is not parked, a bad one is not refused", async () => {
    const res = await b.request("OPTIONS", "/proxy", { body: pollBody(newSid()) });
    assertEmpty(res, 200, { cors: true });
    assertEmpty(await b.request("OPTIONS", "/answer", { body: "garbage" }), 200, { cors: true });
    assertEmpty(await b.request("OPTIONS", "/client", { body: "1.0\n{}" }), 200, { cors: true });
    assert.equal(await b.sessions(), 0);
  });

  test("OPTIONS on paths without the wrapper gets their normal answer, without CORS", async () => {
    assertText(await b.request("OPTIONS", "/robots.txt"), 200, ROBOTS, { cors: false });
    assertPrometheusResponse(await b.request("OPTIONS", "/prometheus"));
    assertNotFound(await b.request("OPTIONS", "/"));
    assertNotFound(await b.request("OPTIONS", "/proxy/"));
  });

  test("CORS headers are on every wrapped response, whatever the request's Origin, including 400s", async () => {
    const origin = { headers: { Origin: "https://evil.example" } };
    assertEmpty(await b.post("/proxy", "x", origin), 400, { cors: true });
    assertEmpty(await b.post("/answer", "x", origin), 400, { cors: true });
    assertEmpty(await b.post("/client", Buffer.alloc(100001), origin), 400, { cors: true });
    assertText(await b.post("/client", "x", origin), 200, '{"error":"unsupported message version"}', { cors: true });
    assertText(await b.get("/debug", origin), 200, EMPTY_DEBUG, { cors: true });
    assertMetricsResponse(await b.get("/metrics", origin));
    // The AMP subtree is wrapped whatever its handler answers (docs/protocol.md §1.8).
    assertCors(await b.get("/amp/client/0abc/MS4w", origin), true);
  });
});

describe("fixed endpoints", () => {
  test("/robots.txt for any method: 200 text/plain, exactly User-agent: *\\nDisallow: /\\n, no CORS (§9 #48)", async () => {
    for (const method of ["GET", "POST", "PUT", "DELETE", "PATCH"]) {
      const res = await b.request(method, "/robots.txt", method === "GET" ? {} : { body: "ignored" });
      assertText(res, 200, ROBOTS, { cors: false });
      assert.equal(res.bytes.length, 26);
    }
    assertText(await b.get("/robots.txt?x=1"), 200, ROBOTS, { cors: false });
    const head = await b.request("HEAD", "/robots.txt");
    assert.equal(head.status, 200);
    assert.equal(head.header("content-type"), TEXT_PLAIN);
    assert.equal(head.bytes.length, 0);
  });

  test("HEAD gets the headers GET would, Content-Length included, and no body (as Go)", async () => {
    for (const path of ["/robots.txt", "/debug", "/metrics", "/nothing-here"]) {
      const get = await b.raw(`GET ${path} HTTP/1.1`);
      const head = await b.raw(`HEAD ${path} HTTP/1.1`);
      assert.equal(head.status, get.status, path);
      assert.deepEqual(head.headers, get.headers, path);
      assert.equal(head.headers["content-length"], String(Buffer.byteLength(get.body)), path);
      assert.equal(head.body, "", path);
    }
  });

  test("/debug on an empty broker: R's exact text, no trailing newline, for any method (§9 #51)", async () => {
    for (const method of ["GET", "POST"]) {
      assertText(await b.request(method, "/debug"), 200, EMPTY_DEBUG, { cors: true });
    }
    assertText(await b.get("/debug?verbose=1"), 200, EMPTY_DEBUG, { cors: true });
  });

  test("/debug lists known types in a fixed order, only those present, and shows N's NAT names in N's layout", async () => {
    const polls = [
      { type: "bloco", nat: "strict" },
      { type: "iptproxy", nat: "moderate" },
      { type: "badge", nat: "open" },
      { type: "webext", nat: "unrestricted" },
      { type: "webext", nat: "restricted" },
      { type: "standalone", nat: "unknown" },
      { type: "snowflake-go", nat: "open" },
    ];
    const pending = polls.map((p) => b.proxy({ sid: newSid(), ...p }));
    await b.waitSessions(polls.length);
    assert.equal(
      await b.debug(),
      debugText({
        sessions: 7,
        types: { standalone: 1, webext: 2, badge: 1, iptproxy: 1, bloco: 1 },
        unknownTypes: 1,
        restricted: 1,
        unrestricted: 1,
        unknown: 1,
        nNames: { strict: 1, moderate: 1, open: 2 },
      }),
    );
    // Types with no proxy are left out, and so is every line of a type that is gone.
    assert.equal(
      (await b.debug()).split("\n").slice(0, 7).join("\n"),
      "current snowflakes available: 7\n\tstandalone proxies: 1\n\twebext proxies: 2\n\tbadge proxies: 1\n\tiptproxy proxies: 1\n\tbloco proxies: 1\n\tunknown proxies: 1",
    );
    for (const res of await Promise.all(pending)) assertText(res, 200, noMatch(), { cors: true });
    assert.equal(await b.debug(), EMPTY_DEBUG);
  });

  test("/metrics: R's answer (404 page not found before descriptors are published, or the log) WITH the CORS headers (§1.6, §9 #50)", async () => {
    for (const method of ["GET", "POST"]) assertMetricsResponse(await b.request(method, "/metrics"));
  });

  test("/prometheus: no CORS headers (§1.7)", async () => {
    assertPrometheusResponse(await b.get("/prometheus"));
  });
});

describe("routing", () => {
  test("every other path: 404 page not found, nosniff, no CORS, for any method", async () => {
    const paths = [
      "/", "/proxy/", "/client/x", "/answer/", "/debug/", "/metrics/", "/prometheus/", "/robots.txt/",
      "/PROXY", "/Client", "/Debug", "/amp", "/amp/", "/amp/clientx", "/amp/Client/", "/index.html",
      "/health", "/version", "/.well-known/acme-challenge/x", "/proxy%2F", "/proxy%20", "/proxy.json",
    ];
    for (const path of paths) {
      for (const method of ["GET", "POST"]) {
        const res = await b.request(method, path, method === "POST" ? { body: pollBody(newSid()) } : {});
        assert.equal(res.status, 404, `${method} ${path}: ${res}`);
        assertNotFound(res);
      }
    }
    assert.equal(await b.sessions(), 0);
  });

  test("paths match after percent-decoding", async () => {
    assertText(await b.get("/%72obots.txt"), 200, ROBOTS, { cors: false });
    assertText(await b.get("/debu%67"), 200, EMPTY_DEBUG, { cors: true });
    const pending = b.post("/pro%78y", pollBody(newSid()));
    await b.waitSessions(1);
    assertText(await pending, 200, noMatch(), { cors: true });
    assertText(await b.post("/%63lient", clientBody(offerJson())), 200, '{"error":"no snowflake proxies currently available"}', { cors: true });
  });

  test("unclean paths get a 301 to the cleaned path, keeping the query; HTML body for GET only; no CORS (Go ServeMux)", async () => {
    const cases = [
      ["//proxy", "/proxy"],
      ["//proxy?a=1&b", "/proxy?a=1&b"],
      ["/proxy//", "/proxy/"],
      ["//", "/"],
      ["//robots.txt", "/robots.txt"],
      ["/amp/client//0abc/MS4w", "/amp/client/0abc/MS4w"],
      ["/amp//client/", "/amp/client/"],
    ];
    for (const [path, location] of cases) {
      const get = await b.get(path);
      assertText(get, 301, `<a href="${location.replace(/&/g, "&amp;")}">Moved Permanently</a>.\n\n`, { cors: false, contentType: "text/html; charset=utf-8" });
      assert.equal(get.header("location"), location, `${path}: ${get}`);
      const post = await b.post(path, pollBody(newSid()));
      assertEmpty(post, 301, { cors: false });
      assert.equal(post.header("location"), location, `${path}: ${post}`);
    }
    // The redirect comes before any handler, so OPTIONS is redirected too, without CORS.
    for (const [path, location] of [["//proxy", "/proxy"], ["/amp/client", "/amp/client/"]]) {
      const options = await b.request("OPTIONS", path);
      assertEmpty(options, 301, { cors: false });
      assert.equal(options.header("location"), location);
    }
    const head = await b.request("HEAD", "//proxy");
    assert.equal(head.status, 301);
    assert.equal(head.header("location"), "/proxy");
    assert.equal(head.header("content-type"), "text/html; charset=utf-8");
    assert.equal(await b.sessions(), 0, "a redirected poll is not parked");
  });

  // Go's ServeMux answers 301 to the cleaned path here; workerd resolves dot
  // segments while parsing the URL, before the Worker runs, so the request is
  // simply served at the cleaned path (a documented platform difference).
  test("paths with dot segments are served at the cleaned path (platform difference)", async () => {
    for (const target of ["/a/../robots.txt", "/./robots.txt", "/x/y/../../robots.txt"]) {
      const res = await b.raw(`GET ${target} HTTP/1.1`);
      assert.equal(res.status, 200, `${target}: ${JSON.stringify(res)}`);
      assert.equal(res.body, ROBOTS, target);
    }
  });

  test("the query string does not affect routing", async () => {
    const pending = b.post("/proxy?Sid=x&Version=2", pollBody(newSid()));
    await b.waitSessions(1);
    assertText(await pending, 200, noMatch(), { cors: true });
    assertEmpty(await b.post("/answer?x=1", "x"), 400, { cors: true });
    assertNotFound(await b.get("/?proxy"));
  });

  test("/amp/client without its slash: 301 to /amp/client/ (subtree redirect), query kept", async () => {
    const get = await b.get("/amp/client");
    assertText(get, 301, '<a href="/amp/client/">Moved Permanently</a>.\n\n', { cors: false, contentType: "text/html; charset=utf-8" });
    assert.equal(get.header("location"), "/amp/client/");
    const post = await b.post("/amp/client?x=y", "");
    assertEmpty(post, 301, { cors: false });
    assert.equal(post.header("location"), "/amp/client/?x=y");
  });
});

describe("Content-Encoding", () => {
  test("a client that accepts gzip (as Go's does) decodes the same bytes and headers", async () => {
    const gzip = { encoding: "gzip" };
    assertText(await b.request("GET", "/robots.txt", gzip), 200, ROBOTS, { cors: false });
    assertText(await b.request("GET", "/debug", gzip), 200, EMPTY_DEBUG, { cors: true });
    assertText(await b.request("POST", "/client", { ...gzip, body: "1.0\n{}" }), 200, '{"error":"no supplied offer"}', { cors: true });
    assertEmpty(await b.request("POST", "/proxy", { ...gzip, body: "{}" }), 400, { cors: true });
    assertEmpty(await b.request("OPTIONS", "/proxy", gzip), 200, { cors: true });
    assertNotFound(await b.request("GET", "/nope", gzip));
    const res = await b.request("POST", "/proxy", { ...gzip, body: pollBody(newSid()) });
    assertText(res, 200, noMatch(), { cors: true });
  });
});
