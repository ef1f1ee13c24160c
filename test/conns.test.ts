/**
 * The connection cap over every kind of connection, and idle WebSockets:
 * idle WebSockets and HTTP/2 sessions at --max-connections do not lock
 * HTTP/1.1 clients out (the one idle longest is closed to make room), and a
 * WebSocket silent for wsIdleTimeout is closed with 1001. Real holdup
 * processes, websocketd upstreams, the runtime's own WebSocket, node:http2 and
 * node:tls clients. RSS and connection counts are printed for the report.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { nodeGet, type Proxy, run, startProxy, startUpstream, tlsRequest, until } from "./helpers.ts";
import { type Client, open, rawHandshake, websocketd } from "./ws-helpers.ts";

const CAP = "16";

/** VmRSS of holdup, read through `cat`: Deno lets only --allow-all read /proc/PID (--allow-run is granted). */
function rssMiB(p: Proxy): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(execFileSync("cat", [`/proc/${p.child.pid}/status`], { encoding: "utf8" }));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

async function connections(p: Proxy): Promise<{ open: number; limit: number; byKind: Record<string, number>; evicted: number; refused: number }> {
  return (await p.status()).connections as never;
}

test("16 idle WebSockets at --max-connections 16: an HTTP/1.1 client still gets in; the WebSocket idle longest is closed with 1013", async () => {
  const up = await websocketd();
  const p = await startProxy(["-u", up.url, "--max-connections", CAP]);
  const sockets: Client[] = [];
  try {
    const base = p.url.replace("http", "ws");
    for (let i = 0; i < 16; i++) {
      const c = await open(`${base}/ws${i}`);
      assert.equal(await c.echo(`m${i}`), `m${i}`);
      sockets.push(c);
    }
    const full = await connections(p);
    assert.deepEqual([full.open, full.byKind.websocket, full.limit], [16, 16, 16]);
    const rss = rssMiB(p);
    // A new HTTP/1.1 client (its own connection): answered by the upstream (websocketd: 404 to a plain GET).
    const r = await nodeGet(`${p.url}/plain`);
    assert.equal(r.status, 404);
    const closed = await sockets[0].closed;
    assert.equal(closed.code, 1013);
    assert.equal(closed.reason, "connection limit reached");
    for (let i = 1; i < 16; i++) assert.equal(await sockets[i].echo(`again${i}`), `again${i}`, `WebSocket ${i} still works`);
    const after = await connections(p);
    assert.ok(after.evicted >= 1 && after.open <= 16, JSON.stringify(after));
    console.log(`WebSockets at the cap: ${JSON.stringify(full)} → after one HTTP/1.1 client ${JSON.stringify(after)}; holdup RSS ${rss} MiB`);
  } finally {
    for (const c of sockets) c.ws.close();
    await p.stop();
    await up.stop();
  }
});

test("HTTP/2 sessions count toward --max-connections: at the cap an idle one is closed (GOAWAY) for a new client, and HTTP/1.1 over TLS gets in", async () => {
  const dir = await mkdtemp(join(tmpdir(), "holdup-conns-"));
  const cert = join(dir, "c.crt"), key = join(dir, "c.key");
  const made = await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ]);
  assert.equal(made.code, 0, made.stderr);
  const ca = readFileSync(cert, "utf8");
  const upstream = await startUpstream();
  const p = await startProxy(["-u", upstream.url, "--tls-cert", cert, "--tls-key", key, "--max-connections", CAP]);
  const sessions: http2.ClientHttp2Session[] = [];
  const closedAt: number[] = [];
  try {
    const origin = `https://localhost:${p.port}`;
    // 20 sessions, one after the other, each used once and then left idle.
    for (let i = 0; i < 20; i++) {
      const s = http2.connect(origin, { ca, checkServerIdentity: () => undefined });
      s.on("error", () => {});
      s.once("close", () => closedAt.push(i));
      sessions.push(s);
      const status = await new Promise<number>((resolve, reject) => {
        const req = s.request({ ":path": `/h2/${i}` });
        req.on("response", (h) => resolve(Number(h[":status"])));
        req.on("error", reject);
        req.resume();
        req.end();
      });
      assert.equal(status, 200);
      const c = await connections(p);
      assert.ok(c.open <= 16, `session ${i}: ${JSON.stringify(c)}`);
    }
    await until("four sessions closed by holdup", () => closedAt.length >= 4, 5000);
    assert.deepEqual(closedAt.slice(0, 4).sort((a, b) => a - b), [0, 1, 2, 3], "the ones idle longest went first");
    const full = await connections(p);
    const rss = rssMiB(p);
    // HTTP/1.1 over TLS, on a connection of its own.
    const t = tls.connect({ port: p.port, host: "127.0.0.1", servername: "localhost", ca, ALPNProtocols: ["http/1.1"], checkServerIdentity: () => undefined });
    await new Promise<void>((resolve, reject) => {
      t.once("secureConnect", () => resolve());
      t.once("error", reject);
    });
    const r = await tlsRequest(t, "/h1");
    assert.equal(r.status, 200);
    t.destroy();
    const after = await connections(p);
    assert.ok(after.open <= 16 && after.evicted >= 5, JSON.stringify(after));
    console.log(`h2 sessions at the cap: ${JSON.stringify(full)} → after an HTTP/1.1 client ${JSON.stringify(after)}; holdup RSS ${rss} MiB`);
  } finally {
    for (const s of sessions) s.destroy();
    await p.stop();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("wsIdleTimeout: a WebSocket silent that long is closed with 1001 between frames; one that talks stays open", async () => {
  const up = await websocketd();
  const p = await startProxy(["-u", up.url, "--ws-idle-timeout", "600ms"]);
  try {
    const base = p.url.replace("http", "ws");
    const quiet = await open(`${base}/quiet`);
    const talker = await open(`${base}/talker`);
    assert.equal(await quiet.echo("hello"), "hello");
    const lastByte = performance.now();
    // The talker sends every 150 ms, well inside the idle time, until the quiet one is closed.
    let talking = true;
    const talk = (async () => {
      for (let i = 0; talking; i++) {
        assert.equal(await talker.echo(`t${i}`), `t${i}`);
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
    const closed = await Promise.race([
      quiet.closed,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the idle WebSocket was not closed within 10 s")), 10_000)),
    ]);
    const quietFor = closed.at - lastByte;
    assert.equal(closed.code, 1001);
    assert.equal(closed.reason, "idle timeout");
    assert.ok(quietFor >= 550, `closed after ${Math.round(quietFor)} ms of silence`);
    // The talker has outlived the idle time by now, and still echoes.
    const end = performance.now() + 600;
    while (performance.now() < end) await new Promise((r) => setTimeout(r, 50));
    talking = false;
    await talk;
    assert.equal(await talker.echo("still"), "still");
    const line = await p.waitForLine("the websocket log line", (l) => l.msg === "websocket" && l.path === "/quiet");
    assert.equal(line.close_code, 1001);
    assert.equal(line.closed_by, "holdup");
    talker.ws.close();
    console.log(`idle WebSocket closed after ${Math.round(quietFor)} ms of silence (wsIdleTimeout 600ms)`);
  } finally {
    await p.stop();
    await up.stop();
  }
});

test("wsPingInterval: a silent client that answers holdup's Pings stays open past wsIdleTimeout; one that does not answer is closed with 1001", async () => {
  const up = await websocketd();
  const p = await startProxy(["-u", up.url, "--ws-idle-timeout", "600ms", "--ws-ping-interval", "150ms"]);
  try {
    const live = await open(`${p.url.replace("http", "ws")}/live`);
    let liveClosed = false;
    void live.closed.then(() => liveClosed = true);
    assert.equal(await live.echo("hi"), "hi");
    const deaf = await rawHandshake(p.port, "/deaf", ["Host: 127.0.0.1"]);
    assert.equal(deaf.status, 101);
    // The deaf client reads holdup's Pings but never answers: closed after wsIdleTimeout.
    await Promise.race([deaf.closed, new Promise((_, reject) => setTimeout(() => reject(new Error("the deaf WebSocket was not closed within 10 s")), 10_000))]);
    const ping = Buffer.from([0x89, 6, ...Buffer.from("holdup")]);
    assert.ok(deaf.rest.subarray(0, 8).equals(ping), `first frame: ${deaf.rest.subarray(0, 8).toString("hex")}`);
    const close = deaf.rest.indexOf(Buffer.from([0x88]));
    assert.ok(close > 0 && deaf.rest.readUInt16BE(close + 2) === 1001, "a Close 1001 after the Pings");
    // By now the live client has been silent past the idle time too, answering Pings only.
    assert.ok(!liveClosed, "the live client was closed");
    assert.equal(await live.echo("still"), "still");
    live.ws.close();
  } finally {
    await p.stop();
    await up.stop();
  }
});
