/**
 * Sending to upstreams: a POST on a connection of its own (so that the
 * runtime's silent resend on a dead pooled connection cannot deliver it twice),
 * and traffic spread over two live upstreams — round-robin, and failover when
 * one goes down mid-run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type net from "node:net";
import { freePort, startProxy, startUpstream, type Upstream, until } from "./helpers.ts";

test("a POST goes on a connection of its own: the upstream cutting a pooled keep-alive connection after reading it gets it once, the client 502", async () => {
  const port = await freePort();
  // Which socket carried each request, and how many requests each socket had carried before.
  const served = new WeakMap<net.Socket, number>();
  const log: Array<{ method: string; url: string; before: number }> = [];
  let first: Upstream | null = null;
  let cut = false;
  first = await startUpstream((req, res) => {
    const before = served.get(req.socket) ?? 0;
    served.set(req.socket, before + 1);
    log.push({ method: req.method!, url: req.url!, before });
    if (req.method !== "POST") return void res.end("warm");
    // Read the whole POST, then drop the connection without answering and stop listening:
    // a runtime that resends on a fresh connection is refused (and a "refused" would be held and resent).
    req.socket.destroy();
    cut = true;
    void first!.close();
  }, port);
  const proxy = await startProxy(["-u", `:${port}`, "--try-interval", "50ms", "--try-duration", "10s"]);
  let second: Upstream | null = null;
  try {
    // Warm the proxy's pool: two GETs, the second on the first one's keep-alive connection.
    for (let i = 0; i < 2; i++) assert.equal(await (await fetch(`${proxy.url}/warm${i}`)).text(), "warm");
    assert.equal(log[1].before, 1, "the second GET went on the first one's pooled keep-alive connection");
    const post = fetch(`${proxy.url}/pay`, { method: "POST", body: "once" }).then(async (r) => ({ status: r.status, text: await r.text() }));
    await until("the upstream read the POST and cut its connection", () => cut);
    // Back on the same port: a resent POST would land here.
    second = await startUpstream((_req, res) => res.end("second"), port);
    const r = await post;
    const posts = [...log.filter((l) => l.method === "POST"), ...second.received.filter((q) => q.method === "POST")];
    assert.equal(posts.length, 1, `the POST reached the upstream ${posts.length} times`);
    assert.equal(r.status, 502, r.text);
    assert.equal(log.find((l) => l.method === "POST")!.before, 0, "the POST went on a new connection, not on the pooled one");
  } finally {
    await proxy.stop();
    await first.close();
    await second?.close();
  }
});
