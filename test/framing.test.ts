/**
 * What the proxy listener answers itself, before anything reaches an upstream
 * (501 to upgrades other than WebSocket, 400 to an HTTP/1.1 request without
 * Host), and upstream responses with a bad or short Content-Length (502, or a
 * cut the client can see) — over raw sockets, against real processes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { Buffer } from "node:buffer";
import { rawRequest, startProxy, startUpstream, until } from "./helpers.ts";

test("an upgrade other than WebSocket (h2c, IRC) gets 501, and nothing reaches the upstream", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url]);
  try {
    // The start-up probe connects once: count from after it.
    await until("the start-up probe to find the upstream", async () => (await proxy.status()).upstreams[0].status === "up");
    const probed = up.connections;
    const h2c = await rawRequest(proxy.port, "GET /x HTTP/1.1\nHost: a\nConnection: Upgrade, HTTP2-Settings\nUpgrade: h2c\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA");
    assert.equal(h2c.status, 501);
    assert.match(h2c.body.toString(), /only WebSocket upgrades|upgrades are not supported/);
    const irc = await rawRequest(proxy.port, "POST /chat HTTP/1.1\nHost: a\nConnection: Upgrade\nUpgrade: IRC/6.9\nContent-Length: 0");
    assert.equal(irc.status, 501);
    assert.equal(up.received.length, 0);
    assert.equal(up.connections, probed, "not even a connection was made to the upstream");
    // The same proxy still proxies a plain request.
    assert.equal((await rawRequest(proxy.port, "GET /plain HTTP/1.1\nHost: a\nConnection: close")).status, 200);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("without Host: an HTTP/1.1 request gets 400 naming it; an HTTP/1.0 one (where Host is optional) is proxied", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url]);
  try {
    const r = await rawRequest(proxy.port, "GET /no-host HTTP/1.1\nConnection: close");
    assert.equal(r.status, 400);
    assert.match(r.body.toString(), /Host header/);
    assert.equal(up.received.length, 0);
    const old = await rawRequest(proxy.port, "GET /old HTTP/1.0");
    assert.equal(old.status, 200, old.body.toString());
    assert.deepEqual(up.received.map((q) => q.url), ["/old"]);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

/** A raw upstream that answers each connection's first request with `reply`, then does `after` (end or keep open). */
async function rawUpstream(reply: string, after: "end" | "destroy" = "end") {
  let requests = 0;
  const server = net.createServer((s) => {
    s.on("error", () => {});
    s.once("data", () => {
      requests++;
      if (after === "end") s.end(reply);
      else s.write(reply, () => setTimeout(() => s.destroy(), 50));
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    requests: () => requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

test("an upstream's invalid Content-Length (not a number, two that differ, negative) gets 502, never a relayed body", async () => {
  for (const cl of ["abc", "5, 7", "-1"]) {
    const up = await rawUpstream(`HTTP/1.1 200 OK\r\nContent-Length: ${cl}\r\nConnection: close\r\n\r\nhello`);
    const proxy = await startProxy(["-u", up.url]);
    try {
      // A POST: it reached the upstream, so it is answered 502 and never resent (a GET may be, within its deadline).
      const r = await rawRequest(proxy.port, "POST /x HTTP/1.1\nHost: a\nContent-Length: 2\nConnection: close", "hi");
      assert.equal(r.status, 502, `Content-Length: ${cl} → ${r.status} ${JSON.stringify(r.body.toString())}`);
      assert.doesNotMatch(r.body.toString(), /hello/);
      assert.equal(up.requests(), 1, `the POST reached the upstream ${up.requests()} times`);
      const get = await rawRequest(proxy.port, "GET /x HTTP/1.1\nHost: a\nConnection: close");
      assert.equal(get.status, 502);
    } finally {
      await proxy.stop();
      await up.close();
    }
  }
});

test("an upstream body that ends short of its Content-Length is cut: the client never gets a clean answer", async () => {
  // 23 of 100 bytes (a small body, read whole before it is written), and 23 of 1 MiB (streamed).
  for (const declared of [100, 1 << 20]) {
    const up = await rawUpstream(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${declared}\r\n\r\nonly 23 bytes arrive...`, "destroy");
    const proxy = await startProxy(["-u", up.url]);
    try {
      for (const close of [false, true]) {
        const sock = net.connect(proxy.port, "127.0.0.1");
        await once(sock, "connect");
        sock.on("error", () => {});
        const chunks: Buffer[] = [];
        sock.on("data", (c: Buffer) => chunks.push(c));
        // Keep-alive or not: a head sent with Connection: close and no length would read as a complete, empty 200.
        sock.write(`GET /short HTTP/1.1\r\nHost: a\r\n${close ? "Connection: close\r\n" : ""}\r\n`);
        await once(sock, "close");
        const all = Buffer.concat(chunks).toString("latin1");
        const end = all.indexOf("\r\n\r\n");
        const what = `${declared} declared, ${close ? "close" : "keep-alive"}: ${JSON.stringify(all.slice(0, 300))}`;
        if (end < 0) {
          assert.equal(all, "", what); // cut before anything was written
          continue;
        }
        // A head went out: it must declare the length, so the client can tell the body is short.
        const head = all.slice(0, end), body = all.slice(end + 4);
        assert.match(head, /^HTTP\/1\.1 200/, what);
        assert.equal(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1], String(declared), what);
        assert.ok(body.length < declared, what);
      }
      const line = await proxy.waitForLine("the access line", (l) => l.msg === "request" && l.path === "/short");
      assert.equal(line.reason, "response cut short");
    } finally {
      await proxy.stop();
      await up.close();
    }
  }
});
