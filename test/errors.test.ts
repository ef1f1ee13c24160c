/**
 * The failure classifier, fed real errors from this runtime's fetch() where a
 * real one can be produced on loopback, and the documented shapes otherwise.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { classifyFailure, describeFailure } from "../src/http/errors.ts";
import { runtime } from "../src/runtime/index.ts";
import { freePort, RUNTIME, startUpstream } from "./helpers.ts";

async function fetchError(url: string, fresh: boolean, method = "GET", body: string | null = null): Promise<unknown> {
  try {
    const r = await runtime.fetchUpstream(url, {
      method, headers: new Headers(), body, signal: new AbortController().signal, fresh,
    });
    await r.body?.cancel();
  } catch (e) {
    return e;
  }
  throw new Error("fetch did not fail");
}

test(`classifier (${RUNTIME}): connection refused, on fresh and pooled clients, is a connect failure`, async () => {
  const port = await freePort();
  for (const fresh of [true, false]) {
    const e = await fetchError(`http://127.0.0.1:${port}/`, fresh);
    assert.equal(classifyFailure(e), "connect", describeFailure(e));
  }
});

test(`classifier (${RUNTIME}): a connection reset after the request was sent may have reached the upstream`, async () => {
  const up = await startUpstream((req) => req.socket.destroy());
  try {
    const e = await fetchError(up.url + "/x", true, "POST", "body");
    assert.equal(classifyFailure(e), "after-send", describeFailure(e));
    assert.equal(up.received.length, 1, "the upstream did see it");
  } finally {
    await up.close();
  }
});

test(`classifier (${RUNTIME}): a server that accepts and closes without reading is not "connect"`, async () => {
  const server = net.createServer((s) => s.destroy());
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  try {
    const e = await fetchError(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, true, "POST", "x");
    assert.notEqual(classifyFailure(e), "connect", describeFailure(e));
  } finally {
    server.close();
  }
});

test("classifier: documented error shapes of both runtimes", () => {
  // Shapes from shared/notes/runtime-facts.md (DNS cannot be failed on loopback alone).
  const bun = (code: string) => Object.assign(new TypeError("fetch failed"), { code });
  assert.equal(classifyFailure(bun("ECONNREFUSED")), "connect");
  assert.equal(classifyFailure(bun("ConnectionRefused")), "connect");
  assert.equal(classifyFailure(bun("ENOTFOUND")), "dns");
  assert.equal(classifyFailure(bun("ECONNRESET")), "after-send");
  const deno = (cause: string) => new TypeError("error sending request", { cause: new Error(cause) });
  assert.equal(classifyFailure(deno("client error (Connect): tcp connect error: Connection refused (os error 111)")), "connect");
  assert.equal(classifyFailure(deno("client error (Connect): dns error: failed to lookup address information")), "dns");
  assert.equal(classifyFailure(deno("connection closed before message completed")), "after-send");
  assert.equal(classifyFailure(new DOMException("signal timed out", "TimeoutError")), "after-send");
  assert.match(describeFailure(bun("ECONNREFUSED")), /ECONNREFUSED/);
});
