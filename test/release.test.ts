/**
 * Releasing held requests over the bounded pool of kept-alive upstream
 * connections (docs/design/hold.md, "Releasing a wave"): responses with long
 * bodies (event streams) must not take the pool and stall the rest of the wave.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { freePort, startProxy, startUpstream, type Upstream, until } from "./helpers.ts";

/** A raw GET on its own connection; `status` is set once the response's status line has arrived. */
function held(port: number, path: string) {
  const c = net.connect(port, "127.0.0.1", () => c.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`));
  const r = { socket: c, status: 0, text: "" };
  c.on("error", () => {});
  c.on("data", (d) => {
    r.text += d;
    const m = /^HTTP\/1\.1 (\d{3})/.exec(r.text);
    if (m) r.status = Number(m[1]);
  });
  return r;
}

test("a release where more responses are endless streams than the pool has connections still answers the rest of the wave", async () => {
  const port = await freePort();
  const proxy = await startProxy(["-u", `:${port}`, "--try-interval", "100ms", "--response-timeout", "60s"]);
  let up: Upstream | undefined;
  const streams = 80, short = 10;
  const clients: Array<ReturnType<typeof held>> = [];
  try {
    // Oldest first: the streams are released before the short requests.
    for (let i = 0; i < streams; i++) clients.push(held(proxy.port, `/stream/${i}`));
    await until(`${streams} held`, async () => (await proxy.status()).held === streams, 20_000);
    for (let i = 0; i < short; i++) clients.push(held(proxy.port, `/short/${i}`));
    await until(`${streams + short} held`, async () => (await proxy.status()).held === streams + short, 20_000);
    up = await startUpstream((req, res) => {
      if (req.url!.startsWith("/short/")) return void res.end("ok");
      // An event stream: a head, a first event, and no end.
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: hello\n\n");
    }, port);
    await until("every short request answered and every stream started", () => clients.every((c) => c.status === 200), 15_000);
    for (const c of clients.slice(streams)) assert.match(c.text, /\r\n\r\n(2\r\n)?ok/, "short body relayed");
    assert.equal(up.received.length, streams + short, "each delivered once");
    assert.equal(new Set(up.received.map((r) => r.url)).size, streams + short);
  } finally {
    for (const c of clients) c.socket.destroy();
    await proxy.stop();
    await up?.close();
  }
});
