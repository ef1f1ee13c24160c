/**
 * WebSocket handshakes held while the upstream is down, beyond
 * test/websocket.test.ts: a held handshake whose client leaves stops being
 * held and never reaches the upstream (logged 499), and held handshakes count
 * toward maxHeld with plain requests. Upstream: websocketd, started late.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startProxy, until } from "./helpers.ts";
import { clientFrame, rawHandshake, serverFrame, websocketd } from "./ws-helpers.ts";

/** Sends a WebSocket handshake and reads nothing back yet (it is expected to be held). */
async function heldHandshake(port: number, path: string): Promise<{ socket: net.Socket; data: () => string }> {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  let data = "";
  socket.on("data", (d) => data += d);
  await once(socket, "connect");
  socket.write(`GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\n\r\n`);
  return { socket, data: () => data };
}

test("a held WebSocket handshake whose client leaves stops being held, is logged 499, and never reaches the upstream once it is up", async () => {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "holdup-wshold-"));
  const seen = join(dir, "seen");
  const proxy = await startProxy(["-u", `:${port}`, "--try-interval", "100ms"]);
  let up: Awaited<ReturnType<typeof websocketd>> | undefined;
  try {
    const left = await heldHandshake(proxy.port, "/left");
    await until("the handshake held", async () => (await proxy.status()).held === 1);
    left.socket.destroy();
    await until("no longer held", async () => (await proxy.status()).held === 0);
    const line = await proxy.waitForLine("its access line", (l) => l.msg === "request" && l.path === "/left");
    assert.equal(line.status, 499);

    // The upstream comes up: one process per WebSocket it accepts, each noting its path.
    up = await websocketd(port, "sh", "-c", `echo "$REQUEST_URI" >> ${seen}; exec cat`);
    const ok = await rawHandshake(proxy.port, "/after", ["Host: a"]);
    assert.equal(ok.status, 101, ok.head);
    ok.socket.write(clientFrame("hi"));
    assert.equal((await serverFrame(ok)).toString(), "hi");
    ok.socket.destroy();
    const paths = (await readFile(seen, "utf8")).trim().split("\n");
    assert.deepEqual(paths, ["/after"], "only the client that stayed reached the upstream");
  } finally {
    await proxy.stop();
    await up?.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test("held WebSocket handshakes count toward maxHeld with plain requests: past it, 503 at once for either", async () => {
  const port = await freePort();
  const proxy = await startProxy(["-u", `:${port}`, "--max-held", "2", "--try-interval", "100ms"]);
  let up: Awaited<ReturnType<typeof websocketd>> | undefined;
  try {
    const ws = await heldHandshake(proxy.port, "/ws");
    const get = fetch(proxy.url + "/get").then((r) => r.status);
    await until("two held", async () => (await proxy.status()).held === 2);
    // A third handshake and a third request: refused at once, not held.
    const over = await rawHandshake(proxy.port, "/ws-over", ["Host: a"]);
    assert.equal(over.status, 503, over.head);
    assert.match(over.head, /\r\nretry-after: 1(\r\n|$)/i, over.head);
    over.socket.destroy();
    const plain = await fetch(proxy.url + "/get-over");
    assert.equal(plain.status, 503);
    assert.match(await plain.text(), /too many requests are waiting/);
    assert.equal((await proxy.status()).held, 2);
    // The upstream comes up: both held ones go through.
    up = await websocketd(port);
    await until("the held handshake answered", () => ws.data().includes("\r\n\r\n"), 10_000);
    assert.match(ws.data(), /^HTTP\/1\.1 101 /);
    assert.equal(await get, 404, "the plain GET reached websocketd (which serves no HTTP page)");
    ws.socket.destroy();
  } finally {
    await proxy.stop();
    await up?.stop();
  }
});
