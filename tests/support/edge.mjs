// A stand-in for Cloudflare's edge in front of the Worker, for tests only: it forwards every
// request to the broker and, when the request carries `x-test-abandon-after-ms: <ms>`,
// abandons it after that long, as the edge does when a proxy's or client's connection
// closes. Local workerd does not notice a closed connection while a response is pending, so
// without this the broker's handling of `request.signal` could not be exercised locally.
// The abandoned caller gets 599 `abandoned`.

export default {
  async fetch(request, env) {
    const ms = Number(request.headers.get("x-test-abandon-after-ms"));
    const init = ms > 0 ? { signal: AbortSignal.timeout(ms) } : {};
    try {
      return await env.BROKER.fetch(request, init);
    } catch (e) {
      return new Response(`abandoned: ${e.name}\n`, { status: 599 });
    }
  },
};
