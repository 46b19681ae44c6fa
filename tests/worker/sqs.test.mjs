// SQS rendezvous (SQS_QUEUE_URL) against a local SQS server (moto, tests/support/sqs.mjs): the
// consumer creates the broker queue, answers an offer on the client's own queue and deletes the
// message; offers reach a proxy on any shard; a slow offer does not hold up another; malformed
// messages are deleted and counted; refused credentials give a clear log line and /debug
// status, and HTTP rendezvous is not affected.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  CLIENT_GONE,
  EMPTY_DEBUG,
  SUCCESS,
  answerJson,
  assertRendezvous,
  assertText,
  clientAnswer,
  clientBody,
  clientMatch,
  newSid,
  offerJson,
  sleep,
  startBroker,
} from "./harness.mjs";
import { QUEUE_URL, startSqs } from "../support/sqs.mjs";
import { FAULT_BUILD_DIR } from "./harness.mjs";

const CREDS = { AWS_ACCESS_KEY_ID: "AKIDTEST", AWS_SECRET_ACCESS_KEY: "not-a-real-secret" };

/** A broker whose SQS channel talks to `sqs`; any request starts its consumer. */
async function sqsBroker(sqs, settings = {}) {
  const b = await startBroker({ SQS_QUEUE_URL: QUEUE_URL, SQS_ENDPOINT: sqs.endpoint, ...CREDS, ...settings });
  await b.get("/robots.txt");
  return b;
}

/** A client id as the Go client makes one: 8 random bytes in hex. */
const clientId = () => [...crypto.getRandomValues(new Uint8Array(8))].map((x) => x.toString(16).padStart(2, "0")).join("");

describe("SQS rendezvous", () => {
  let sqs;
  let b;
  let queue;
  before(async () => {
    sqs = await startSqs();
    b = await sqsBroker(sqs, { CLIENT_TIMEOUT_MS: "3000", PROXY_POLL_TIMEOUT_MS: "4000" });
    queue = await sqs.waitForQueue("snowflake-broker");
  });
  after(() => {
    b?.close();
    sqs?.close();
  });

  test("the consumer creates the broker queue with N's 5-minute retention", async () => {
    const out = await sqs.call("GetQueueAttributes", { QueueUrl: queue, AttributeNames: ["MessageRetentionPeriod"] });
    assert.equal(out.Attributes.MessageRetentionPeriod, "300");
  });

  test("an offer in, its proxy's answer on the client's queue, the message deleted", async () => {
    const sid = newSid("s");
    const from = { headers: { "CF-Connecting-IP": "198.51.100.70" } };
    const poll = b.proxy({ sid, nat: "unrestricted" }, from);
    await b.waitSessions(1);
    const id = clientId();
    const offer = offerJson("sqs");
    await sqs.send(queue, clientBody(offer, { nat: "unrestricted" }), id);
    assertText(await poll, 200, clientMatch(offer, "unrestricted"), { cors: true });
    assertText(await b.answer(sid, answerJson("sqs"), "1.3", from), 200, SUCCESS);
    const clientQueue = await sqs.waitForQueue(`snowflake-client-${id}`);
    assert.equal(await sqs.receive(clientQueue), clientAnswer(answerJson("sqs")));
    assert.equal(await sqs.pending(queue), 0, "the offer's message was deleted");
    const prom = (await b.get("/prometheus")).text;
    assert.match(prom, /^snowflake_rounded_client_poll_total\{cc="[^"]*",nat="unrestricted",rendezvous_method="sqs",status="matched"\} 8$/m);
  });

  test("no proxy: the client's queue gets the denial", async () => {
    const id = clientId();
    await sqs.send(queue, clientBody(offerJson("d"), { nat: "restricted" }), id);
    const clientQueue = await sqs.waitForQueue(`snowflake-client-${id}`);
    assert.equal(await sqs.receive(clientQueue), '{"error":"no snowflake proxies currently available"}');
  });

  test("a slow offer does not hold up another: each message is handled on its own", async () => {
    // Two proxies; the first never answers its client (who waits CLIENT_TIMEOUT_MS), the second at once.
    const quiet = b.proxy({ sid: newSid("q"), nat: "unrestricted" }, { headers: { "CF-Connecting-IP": "198.51.100.71" } });
    await b.waitSessions(1);
    const slow = clientId();
    await sqs.send(queue, clientBody(offerJson("slow"), { nat: "unrestricted" }), slow);
    await quiet;
    const sid = newSid("f");
    const from = { headers: { "CF-Connecting-IP": "198.51.100.72" } };
    const poll = b.proxy({ sid, nat: "unrestricted" }, from);
    await b.waitSessions(2);
    const fast = clientId();
    const sent = Date.now();
    await sqs.send(queue, clientBody(offerJson("fast"), { nat: "unrestricted" }), fast);
    await poll;
    assertText(await b.answer(sid, answerJson("fast"), "1.3", from), 200, SUCCESS);
    const fastQueue = await sqs.waitForQueue(`snowflake-client-${fast}`);
    assert.equal(await sqs.receive(fastQueue), clientAnswer(answerJson("fast")));
    assert.ok(Date.now() - sent < 2500, `the fast client's answer came ${Date.now() - sent} ms after its offer, before the slow one timed out`);
    const slowQueue = await sqs.waitForQueue(`snowflake-client-${slow}`);
    assert.equal(await sqs.receive(slowQueue), '{"error":"timed out waiting for answer!"}');
    // The quiet proxy's late answer finds nobody.
    assertText(await b.answer(newSid("late"), answerJson("late")), 200, CLIENT_GONE);
  });

  test("a 1.0 message the client logic refuses gets N's error reply on the client's queue", async () => {
    const id = clientId();
    await sqs.send(queue, "1.0\n{", id);
    const clientQueue = await sqs.waitForQueue(`snowflake-client-${id}`);
    assert.equal(await sqs.receive(clientQueue), '{"error":"unexpected end of JSON input"}');
  });

  test("malformed messages are deleted and counted, never answered or retried", async () => {
    await sqs.send(queue, clientBody(offerJson("n"), { nat: "unknown" })); // no ClientID
    await sqs.send(queue, "{test}", "0123456789abcdef"); // not a 1.0 client message (a bad legacy one)
    await sqs.send(queue, clientBody(offerJson("x"), {}), "../../etc"); // not a queue name
    const end = Date.now() + 10000;
    let prom = "";
    while (Date.now() < end) {
      prom = (await b.get("/prometheus")).text;
      if ((prom.match(/^snowflake_sqs_malformed_messages_total\{/gm) ?? []).length === 3) break;
      await sleep(200);
    }
    assert.match(prom, /^snowflake_sqs_malformed_messages_total\{reason="no ClientID string attribute"\} 1$/m);
    assert.match(prom, /^snowflake_sqs_malformed_messages_total\{reason="refused"\} 1$/m);
    assert.match(prom, /^snowflake_sqs_malformed_messages_total\{reason="ClientID is not a valid queue name suffix"\} 1$/m);
    assert.equal(await sqs.pending(queue), 0, "all three deleted");
    // The refused one had a valid id: its queue was made first, but nothing was sent there.
    const q = await sqs.queueUrl("snowflake-client-0123456789abcdef");
    assert.ok(q === null || (await sqs.receive(q, 1)) === null);
    assert.match(await b.debug(), /\nSQS rendezvous: receiving; \d+ offers answered, 3 messages malformed since the consumer started$/);
  });
});

test("SQS offers reach a lone proxy on any of 4 shards", async () => {
  const sqs = await startSqs();
  const b = await sqsBroker(sqs, { MATCHER_SHARDS: "4", PROXY_POLL_TIMEOUT_MS: "5000" });
  try {
    const queue = await sqs.waitForQueue("snowflake-broker");
    for (let i = 0; i < 6; i++) {
      const sid = newSid(`l${i}`);
      const from = { headers: { "CF-Connecting-IP": `203.0.113.${80 + i}` } };
      const poll = b.proxy({ sid, nat: "unrestricted" }, from);
      await b.waitSessions(1);
      const id = clientId();
      await sqs.send(queue, clientBody(offerJson(`l${i}`), { nat: "unrestricted" }), id);
      assert.match((await poll).text, /"Status":"client match"/);
      assertText(await b.answer(sid, answerJson(`l${i}`), "1.3", from), 200, SUCCESS);
      assert.equal(await sqs.receive(await sqs.waitForQueue(`snowflake-client-${id}`)), clientAnswer(answerJson(`l${i}`)));
    }
  } finally {
    b.close();
    sqs.close();
  }
});

test("refused credentials: a clear log line and /debug status; HTTP rendezvous unaffected", async () => {
  const sqs = await startSqs({ auth: true });
  const b = await sqsBroker(sqs);
  try {
    const end = Date.now() + 10000;
    let debug = "";
    while (Date.now() < end) {
      debug = await b.debug();
      if (debug.includes("failing")) break;
      await sleep(200);
    }
    assert.match(debug, /\nSQS rendezvous: failing: InvalidClientTokenId: /, debug);
    assert.ok(
      b.logs.some((l) => /snowflake-broker: SQS: snowflake-broker: InvalidClientTokenId: .*trying again in 60 s \(check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\)/.test(l)),
      b.logs.join("\n"),
    );
    await assertRendezvous(b, "http");
  } finally {
    b.close();
    sqs.close();
  }
});

test("SQS settings missing or wrong: SQS is off with the reason on /debug; HTTP works", async () => {
  const b = await startBroker({ SQS_QUEUE_URL: QUEUE_URL, AWS_ACCESS_KEY_ID: "AKIDTEST" });
  try {
    assert.equal(
      await b.debug(),
      `${EMPTY_DEBUG}\nSQS rendezvous is off: setting AWS_SECRET_ACCESS_KEY is invalid: it is not set, and SQS_QUEUE_URL needs it (a secret: npx wrangler secret put AWS_SECRET_ACCESS_KEY)`,
    );
    assert.ok(b.logs.some((l) => l.includes("snowflake-broker: SQS rendezvous is off: setting AWS_SECRET_ACCESS_KEY is invalid")), b.logs.join("\n"));
    await assertRendezvous(b, "http");
  } finally {
    b.close();
  }
  const c = await startBroker({ SQS_QUEUE_URL: "https://example.com/1/q", ...CREDS });
  try {
    assert.match(await c.debug(), /\nSQS rendezvous is off: setting SQS_QUEUE_URL is invalid: "example.com" is not an SQS host/);
  } finally {
    c.close();
  }
});

test("client queues idle past the limit are deleted, others kept (test build: 2 s, swept every second)", async () => {
  const sqs = await startSqs();
  const old = await sqs.call("CreateQueue", { QueueName: "snowflake-client-00000000000000aa" });
  await sleep(3100);
  const fresh = await sqs.call("CreateQueue", { QueueName: "snowflake-client-00000000000000bb" });
  const other = await sqs.call("CreateQueue", { QueueName: "someone-elses-queue" });
  const b = await startBroker({ SQS_QUEUE_URL: QUEUE_URL, SQS_ENDPOINT: sqs.endpoint, ...CREDS }, { build: FAULT_BUILD_DIR });
  try {
    await b.get("/robots.txt");
    const end = Date.now() + 5000;
    while (Date.now() < end && (await sqs.queueUrl("snowflake-client-00000000000000aa"))) await sleep(100);
    assert.equal(await sqs.queueUrl("snowflake-client-00000000000000aa"), null, `${old.QueueUrl} was deleted`);
    assert.equal(await sqs.queueUrl("snowflake-client-00000000000000bb"), fresh.QueueUrl, "a queue used 2 s ago is kept");
    assert.equal(await sqs.queueUrl("someone-elses-queue"), other.QueueUrl, "only client queues are swept");
    assert.ok(await sqs.queueUrl("snowflake-broker"), "the broker's own queue is kept");
  } finally {
    b.close();
    sqs.close();
  }
});

test("the cron trigger starts the consumer before any request arrives", async () => {
  const sqs = await startSqs();
  const b = await startBroker({ SQS_QUEUE_URL: QUEUE_URL, SQS_ENDPOINT: sqs.endpoint, ...CREDS });
  try {
    assert.equal(await sqs.queueUrl("snowflake-broker"), null, "nothing has started it yet");
    const worker = await b.mf.getWorker();
    await worker.scheduled({ cron: "*/10 * * * *" });
    assert.ok(await sqs.waitForQueue("snowflake-broker"), "the consumer created its queue");
  } finally {
    b.close();
    sqs.close();
  }
});
