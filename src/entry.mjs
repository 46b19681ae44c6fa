// The Worker's entry point (wrangler.toml `main`), around the module worker-build generates
// (build/index.js). It adds one thing the wasm module cannot do for itself: if the module
// traps while requests wait on the matcher, their Rust futures die with it and those
// requests would hang until the runtime cancels them with a bare 500. So before each call
// that waits on the matcher, the Rust code arms a guard here (`request.snowflakeGuard(ms)`,
// a little past the call's own deadline); if the guard fires first, the request is answered
// by a fresh instance of the module with the protocol's failure reply for its endpoint
// (`x-snowflake-broker-stranded`; docs/design.md, "When the module traps"). While the module
// lives, its own bounded wait answers first and the guard never fires.

import { WorkerEntrypoint } from "cloudflare:workers";
import Broker, { Matcher, SqsConsumer } from "./index.js";

export { Matcher, SqsConsumer };

/** The header that asks the module for an endpoint's failure reply, without the matcher. */
const STRANDED = "x-snowflake-broker-stranded";

/** The endpoint's failure reply, from a fresh instance of the module. */
function stranded(ctx, env, request) {
  const headers = new Headers({ [STRANDED]: "1" });
  const accept = request.headers.get("Accept-Encoding");
  if (accept) headers.set("Accept-Encoding", accept);
  return new Broker(ctx, env).fetch(new Request(request.url, { method: request.method, headers }));
}

export default class extends WorkerEntrypoint {
  fetch(request) {
    // One promise per request, and a timer only once the guard is armed:
    // this runs for every request, so it stays as cheap as it can be.
    return new Promise((resolve, reject) => {
      let timer;
      request.snowflakeGuard = (ms) => {
        if (timer !== undefined) clearTimeout(timer);
        timer = setTimeout(() => resolve(stranded(this.ctx, this.env, request)), ms);
      };
      const settled = () => {
        if (timer !== undefined) clearTimeout(timer);
      };
      new Broker(this.ctx, this.env).fetch(request).then(
        (response) => {
          settled();
          resolve(response);
        },
        (error) => {
          settled();
          reject(error);
        },
      );
    });
  }

  /** The cron trigger (wrangler.toml `[triggers]`): keeps the SQS consumer running. */
  scheduled(controller) {
    return new Broker(this.ctx, this.env).scheduled(controller);
  }
}
