// A local SQS for the SQS tests: moto's server (PyPI, installed by `make moto` into build/moto),
// and the few calls a test makes to it itself, in SQS's JSON protocol. moto checks no
// signature unless started with `auth: true` (INITIAL_NO_AUTH_ACTION_COUNT=0: then only keys
// it issued itself are accepted, so a broker's made-up keys are refused as on AWS).

import { spawn } from "node:child_process";
import path from "node:path";
import { freePort } from "./ports.mjs";
import { REPO } from "./worker.mjs";

export const MOTO = process.env.MOTO ?? path.join(REPO, "build/moto/bin/moto_server");
export const ACCOUNT = "123456789012";
export const REGION = "us-east-1";
/** The broker queue's URL as an operator writes it; SQS_ENDPOINT points calls at moto. */
export const QUEUE_URL = `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/snowflake-broker`;

export class Sqs {
  constructor(proc, endpoint) {
    this.proc = proc;
    this.endpoint = endpoint;
  }

  /** One call; its JSON output, or throws with SQS's error. */
  async call(operation, input) {
    const res = await fetch(`${this.endpoint}/`, {
      method: "POST",
      headers: {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": `AmazonSQS.${operation}`,
        // moto reads the region from the credential scope; the signature is not checked.
        Authorization: `AWS4-HMAC-SHA256 Credential=test/20260101/${REGION}/sqs/aws4_request, SignedHeaders=host, Signature=0`,
      },
      body: JSON.stringify(input),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${operation}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : {};
  }

  async queueUrl(name) {
    try {
      return (await this.call("GetQueueUrl", { QueueName: name })).QueueUrl;
    } catch {
      return null;
    }
  }

  /** Waits until the queue exists (the broker creates it); returns its URL. */
  async waitForQueue(name, timeoutMs = 10000) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const url = await this.queueUrl(name);
      if (url) return url;
      if (Date.now() > end) throw new Error(`queue ${name} was not created within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Sends a client's message as the Go client does: a 1.0 body and a ClientID attribute. */
  send(queueUrl, body, clientId) {
    const MessageAttributes = clientId === undefined ? undefined : { ClientID: { DataType: "String", StringValue: clientId } };
    return this.call("SendMessage", { QueueUrl: queueUrl, MessageBody: body, MessageAttributes });
  }

  /** The next message on a queue within `waitSeconds`, deleted; null if none. */
  async receive(queueUrl, waitSeconds = 10) {
    const out = await this.call("ReceiveMessage", { QueueUrl: queueUrl, MaxNumberOfMessages: 1, WaitTimeSeconds: waitSeconds });
    const message = out.Messages?.[0];
    if (!message) return null;
    await this.call("DeleteMessage", { QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle });
    return message.Body;
  }

  /** Messages on the queue, visible or being handled (deleted ones are gone). */
  async pending(queueUrl) {
    const out = await this.call("GetQueueAttributes", {
      QueueUrl: queueUrl,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    });
    return Number(out.Attributes.ApproximateNumberOfMessages) + Number(out.Attributes.ApproximateNumberOfMessagesNotVisible);
  }

  close() {
    this.proc.kill("SIGTERM");
  }
}

/** Starts moto on a free loopback port; `auth`: refuse keys it did not issue. */
export async function startSqs({ auth = false } = {}) {
  const port = await freePort();
  const env = { ...process.env, ...(auth ? { INITIAL_NO_AUTH_ACTION_COUNT: "0" } : {}) };
  const proc = spawn(MOTO, ["-H", "127.0.0.1", "-p", String(port)], { env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr.on("data", (d) => (stderr += d));
  const sqs = new Sqs(proc, `http://127.0.0.1:${port}`);
  const end = Date.now() + 20000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`moto exited: ${stderr}`);
    try {
      await fetch(`${sqs.endpoint}/moto-api/`);
      return sqs;
    } catch {
      if (Date.now() > end) throw new Error(`moto did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
