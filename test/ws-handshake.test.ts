/**
 * WebSocket handshakes that bend HTTP framing: a handshake with a body, and
 * an upstream refusal followed by more bytes. The upstream is a raw node:net
 * server, since a real server would never send a second response after its
 * refusal; the client is a raw socket.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { startProxy } from "./helpers.ts";

/** A raw upstream: each connection gets `reply` once its request head has arrived. */
async function rawUpstream(reply: string) {
  const heads: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    let buf = "";
    s.on("error", () => {});
    s.on("data", (d) => {
      buf += d.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0 || heads.length && heads[heads.length - 1] === buf.slice(0, end)) return;
      heads.push(buf.slice(0, end));
      s.write(reply); // and keep the connection open: holdup decides where the answer ends
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as net.AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, heads, close: () => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  } };
}

/** Sends `raw` on a fresh connection and reads everything until holdup closes it. */
async function exchange(port: number, raw: string): Promise<string> {
  const s = net.connect(port, "127.0.0.1");
  await once(s, "connect");
  let got = "";
  s.on("data", (d) => got += d.toString("latin1"));
  s.on("error", () => {});
  s.write(raw);
  let stuck = false;
  const timer = setTimeout(() => {
    stuck = true;
    s.destroy();
  }, 10_000);
  await once(s, "close");
  clearTimeout(timer);
  if (stuck) throw new Error(`holdup did not close the connection within 10 s; got ${JSON.stringify(got)}`);
  return got;
}

const handshake = (extra = "") =>
  `GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`;

test("a WebSocket handshake with a body (Content-Length or chunked) gets 400 and never reaches the upstream", async () => {
  const up = await rawUpstream("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  const proxy = await startProxy(["-u", up.url]);
  try {
    for (const [extra, body] of [["Content-Length: 5\r\n", "hello"], ["Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"]]) {
      const got = await exchange(proxy.port, handshake(extra) + body);
      assert.match(got, /^HTTP\/1\.1 400 /, `${extra.trim()}: ${got}`);
      assert.match(got, /carries no body/);
    }
    assert.deepEqual(up.heads, []);
    // A handshake without a body still opens.
    const s = net.connect(proxy.port, "127.0.0.1");
    await once(s, "connect");
    s.on("error", () => {});
    s.write(handshake());
    const [first] = await once(s, "data") as [Buffer];
    assert.match(first.toString("latin1"), /^HTTP\/1\.1 101 /);
    s.destroy();
    assert.equal(up.heads.length, 1);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("an upstream's refusal is relayed exactly: bytes after its chunked or Content-Length body (a second response) never reach the client", async () => {
  const second = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled";
  for (const refusal of [
    "HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nnope!\r\n3;ext=1\r\n :(\r\n0\r\nX-Trailer: t\r\n\r\n",
    "HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!",
  ]) {
    const up = await rawUpstream(refusal + second);
    const proxy = await startProxy(["-u", up.url]);
    try {
      const got = await exchange(proxy.port, handshake());
      assert.match(got, /^HTTP\/1\.1 403 Forbidden\r\n/);
      assert.ok(got.endsWith(refusal.slice(refusal.indexOf("\r\n\r\n") + 4)), JSON.stringify(got));
      assert.equal(got.includes("smuggled"), false, JSON.stringify(got));
      assert.equal((got.match(/HTTP\/1\.1/g) ?? []).length, 1);
    } finally {
      await proxy.stop();
      await up.close();
    }
  }
});
