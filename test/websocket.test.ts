/**
 * WebSockets through holdup, against servers nobody here wrote — websocketd
 * (Debian) and an Autobahn echo server (python3-autobahn) — with the
 * runtime's own WebSocket client and a raw TCP client for byte-exact
 * handshakes: echo, handshake fidelity, subprotocol, close codes, a refused
 * handshake, holding while the upstream is down, draining on a reload (1012),
 * shutdown (1001), and backpressure.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import net from "node:net";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import { freePort, type Proxy, ROOT, run, startProxy, until } from "./helpers.ts";
import { Tunnel, type TunnelHost } from "../src/ws/tunnel.ts";
import type { OpenWebSocket } from "../src/apps/websockets.ts";
import type { Upstream } from "../src/apps/upstream.ts";
import { autobahn, Client, fidelityHandshake, open, rawHandshake, type Server, websocketd } from "./ws-helpers.ts";

const wsUrl = (p: Proxy, path = "/") => `ws://127.0.0.1:${p.port}${path}`;

async function withProxy(args: string[], fn: (p: Proxy) => Promise<void>, servers: Server[] = []): Promise<void> {
  const p = await startProxy(args);
  try {
    await fn(p);
  } finally {
    await p.stop();
    for (const s of servers) await s.stop();
  }
}

// ---------------------------------------------------------------- tests

test("websocketd: text echo through holdup; /status and /metrics count it; one log line when it closes", async () => {
  const up = await websocketd();
  await withProxy(["-u", up.url], async (p) => {
    const c = await open(wsUrl(p, "/chat?room=1"));
    for (const m of ["hello", "", "ünïcødé ✓", "x".repeat(70_000)]) assert.equal(await c.echo(m), m);
    const s = await p.status();
    assert.equal(s.upstreams[0].websockets, 1);
    assert.deepEqual(s.websockets, { open: 1, draining: 0 });
    const metrics = await (await p.admin("GET", "/metrics")).text();
    assert.match(metrics, new RegExp(`holdup_websockets_open\\{app="default",upstream="${up.url}"\\} 1`));
    c.ws.close(1000, "done");
    assert.equal((await c.closed).code, 1000);
    const line = await p.waitForLine("websocket log line", (l) => l.msg === "websocket");
    assert.equal(line.path, "/chat?room=1");
    assert.equal(line.upstream, up.url);
    assert.equal(line.close_code, 1000);
    assert.equal(line.close_reason, "done");
    assert.equal(line.closed_by, "client");
    assert.equal(line.messages_to_upstream, 4);
    assert.equal(line.messages_to_client, 4);
    assert.ok((line.bytes_to_client as number) > 70_000);
    await until("the count to drop", async () => (await p.status()).upstreams[0].websockets === 0);
    const after = await (await p.admin("GET", "/metrics")).text();
    assert.match(after, /holdup_websocket_closes_total\{app="default",code="1000"\} 1/);
    assert.match(after, /holdup_websocket_messages_total\{app="default",direction="to_client"\} 4/);
  }, [up]);
});

test("Autobahn: binary messages of 0 B, 1 MiB and 16 MiB pass unchanged both ways", async () => {
  const up = await autobahn();
  await withProxy(["-u", up.url], async (p) => {
    const c = await open(wsUrl(p));
    for (const size of [0, 1, 1 << 20, 16 << 20]) {
      const data = randomBytes(size);
      const got = new Uint8Array(await c.echo(data) as ArrayBuffer);
      assert.equal(got.byteLength, size);
      assert.ok(Buffer.from(got).equals(data), `${size}-byte message differs`);
    }
    assert.equal(await c.echo("text too"), "text too");
    c.ws.close();
    await c.closed;
  }, [up]);
});

test("handshake fidelity: base path + path, query, Host, Cookie, Authorization, Origin, User-Agent, X-Forwarded-*, and the upstream's subprotocol", async () => {
  const up = await autobahn();
  await withProxy(["-u", `${up.url}/base`], async (p) => {
    const info = await fidelityHandshake(p.port);
    assert.equal(info.path, "/base/live/socket");
    assert.deepEqual(info.params, { vsn: ["2.0.0"], x: ["/"] });
    const h = info.headers;
    assert.equal(h.host, "app.example.com");
    assert.equal(h.cookie, "session=abc; theme=dark");
    assert.equal(h.authorization, "Bearer t0ken");
    assert.equal(h.origin, "https://app.example.com");
    assert.equal(h["user-agent"], "holdup-test/1.0");
    assert.equal(h["sec-websocket-protocol"], "chat.v1, chat.v2");
    assert.equal(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert.equal(h["x-forwarded-proto"], "http");
    assert.equal(h["x-forwarded-host"], "app.example.com");

    // The runtime's own client gets the protocol the upstream chose, not the first it offered.
    const c = await open(wsUrl(p), ["chat.v1", "chat.v2"]);
    assert.equal(c.ws.protocol, "chat.v2");
    c.ws.close();
    await c.closed;
  }, [up]);
});

test("close codes and reasons pass both ways", async () => {
  const up = await autobahn();
  await withProxy(["-u", up.url], async (p) => {
    const a = await open(wsUrl(p));
    a.ws.send("close 4002 upstream says bye");
    assert.deepEqual(await a.closed.then(({ code, reason }) => ({ code, reason })), { code: 4002, reason: "upstream says bye" });
    const b = await open(wsUrl(p));
    b.ws.close(4001, "client says bye");
    assert.equal((await b.closed).code, 4001);
    const lines = await until("two websocket log lines", () => {
      const l = p.lines.filter((l) => l.msg === "websocket");
      return l.length === 2 ? l : null;
    });
    const byCode = Object.fromEntries(lines!.map((l) => [l.close_code, l]));
    assert.equal(byCode[4002].closed_by, "upstream");
    assert.equal(byCode[4002].close_reason, "upstream says bye");
    assert.equal(byCode[4001].closed_by, "client");
    assert.equal(byCode[4001].close_reason, "client says bye");
  }, [up]);
});

test("an upstream refusing the handshake (403): the client gets that 403, never a 101", async () => {
  const up = await autobahn();
  await withProxy(["-u", up.url], async (p) => {
    const r = await rawHandshake(p.port, "/refuse", ["Host: example.com"]);
    assert.equal(r.status, 403, r.head);
    assert.match(r.head, /^HTTP\/1\.1 403 forbidden by the app\r\n/); // Autobahn's status line, as it sent it
    assert.match(r.head, /connection: close/i);
    await r.closed;
    // The runtime's client sees an error and never opens.
    const c = new Client(wsUrl(p, "/refuse"));
    await assert.rejects(c.opened);
    await c.closed;
  }, [up]);
});

test("held while the upstream is down; the socket opens and echoes once it starts", async () => {
  const port = await freePort();
  let up: Server | undefined;
  await withProxy(["-u", `:${port}`, "--try-duration", "20s", "--try-interval", "100ms"], async (p) => {
    const c = new Client(wsUrl(p, "/held"));
    await until("the handshake to be held", async () => (await p.status()).held === 1);
    up = await websocketd(port);
    await c.opened;
    assert.equal(await c.echo("after the wait"), "after the wait");
    const line = await p.waitForLine("101 access line", (l) => l.msg === "request" && l.status === 101);
    assert.ok((line.held_ms as number) > 0);
    c.ws.close();
    await c.closed;
  });
  await up?.stop();
});

test("held past tryDuration: 503, no 101", async () => {
  const port = await freePort();
  await withProxy(["-u", `:${port}`, "--try-duration", "300ms", "--try-interval", "100ms"], async (p) => {
    const r = await rawHandshake(p.port, "/", ["Host: example.com"]);
    assert.equal(r.status, 503, r.head);
    r.socket.destroy();
  });
});

test("a reload to B drains 40 WebSockets on A: they keep working, then close with 1012 after drainTimeout, spread out; reconnects land on B", async () => {
  const a = await websocketd();
  const b = await websocketd(undefined, "sed", "-u", "s/^/B:/");
  await withProxy(["-u", a.url], async (p) => {
    const N = 40; // each is a websocketd process: a 2-core machine has enough of them at 40 (bench/ws.mjs reconnect: 1,000)
    const clients = await Promise.all(Array.from({ length: N }, () => open(wsUrl(p, "/live"))));
    assert.deepEqual(await Promise.all(clients.map((c, i) => c.echo(`a${i}`))), clients.map((_, i) => `a${i}`));
    const drainTimeout = 1500, spread = 500;
    const t0 = performance.now();
    const r = await p.admin("POST", "/reload", { upstreams: [b.url], drainTimeout: `${drainTimeout}ms`, wsCloseSpread: `${spread}ms` });
    assert.equal(r.status, 200, await r.text());
    const s = await p.status();
    assert.deepEqual(s.websockets, { open: N, draining: N, removedUpstreams: [{ app: "default", url: a.url, open: N }] });
    // Still on A during the drain, and still echoing.
    assert.deepEqual(await Promise.all(clients.map((c, i) => c.echo(`d${i}`))), clients.map((_, i) => `d${i}`));
    const closes = await Promise.all(clients.map((c) => c.closed));
    for (const c of closes) assert.equal(c.code, 1012);
    // Ordered, not timed from above: none before drainTimeout, and not all at one instant (the spread).
    // How long the whole drain takes is bench/ws.mjs's (reconnect) number.
    const times = closes.map((c) => c.at - t0);
    const first = Math.min(...times), last = Math.max(...times);
    console.log(`drain: closes from ${Math.round(first)} to ${Math.round(last)} ms after the reload (drainTimeout ${drainTimeout}, spread ${spread})`);
    assert.ok(first >= drainTimeout - 50, `first close ${first}ms after the reload`);
    assert.ok(last - first >= spread / 3, `closes spread over ${last - first}ms`);
    assert.ok(last < drainTimeout + spread + 10_000, `last close ${last}ms after the reload: not held open long past the spread`);
    // Reconnects land on B.
    const again = await Promise.all(clients.map(() => open(wsUrl(p, "/live"))));
    assert.deepEqual(await Promise.all(again.map((c, i) => c.echo(`r${i}`))), again.map((_, i) => `B:r${i}`));
    for (const c of again) c.ws.close();
    await Promise.all(again.map((c) => c.closed));
    const metrics = await (await p.admin("GET", "/metrics")).text();
    assert.match(metrics, new RegExp(`holdup_websocket_closes_total\\{app="default",code="1012"\\} ${N}\n`));
    const logged = p.lines.filter((l) => l.msg === "websocket" && l.close_code === 1012);
    assert.equal(logged.length, N);
    assert.ok(logged.every((l) => l.closed_by === "holdup" && l.upstream === a.url));
  }, [a, b]);
});

test("a drain close lands between frames: a client receiving a stream of 64 KiB messages gets only whole ones, then 1012", async () => {
  const a = await autobahn();
  const b = await websocketd();
  await withProxy(["-u", a.url], async (p) => {
    const c = await open(wsUrl(p));
    const sizes: number[] = [];
    c.ws.onmessage = (e) => sizes.push((e.data as ArrayBuffer).byteLength);
    c.ws.send("stream 65536");
    await until("messages to flow", () => sizes.length >= 5);
    const r = await p.admin("POST", "/reload", { upstreams: [b.url], drainTimeout: "300ms", wsCloseSpread: "0ms" });
    assert.equal(r.status, 200);
    const closed = await c.closed;
    assert.equal(closed.code, 1012);
    assert.ok(sizes.length > 5);
    assert.ok(sizes.every((n) => n === 65536), `message sizes: ${[...new Set(sizes)]}`);
    const line = await p.waitForLine("its log line", (l) => l.msg === "websocket");
    assert.equal(line.close_code, 1012);
    assert.equal(line.closed_by, "holdup");
  }, [a, b]);
});

test("SIGTERM closes open WebSockets with 1001 and exits", async () => {
  const up = await websocketd();
  const p = await startProxy(["-u", up.url]);
  try {
    const c = await open(wsUrl(p));
    assert.equal(await c.echo("hi"), "hi");
    p.signal("SIGTERM");
    assert.equal((await c.closed).code, 1001);
    assert.equal(await p.exited, 0);
  } finally {
    await p.stop();
    await up.stop();
  }
});

/** Resident memory of a process, in bytes (Linux; read by `cat`, as deno test's --allow-read does not reach /proc). */
async function rss(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec((await run("cat", [`/proc/${pid}/status`])).stdout);
  return Number(m![1]) * 1024;
}

test("backpressure: a client that never reads while the upstream floods slows the upstream; holdup's memory stays bounded", async () => {
  // The flooding upstream: websocketd in binary mode in front of a program that writes 1 MiB chunks to it as fast as
  // they are taken, up to 512 MiB, and keeps a count of what it handed over in a file.
  const dir = await mkdtemp(join(tmpdir(), "holdup-flood-"));
  const count = join(dir, "written");
  const flooder = "import os,sys\nb=b'\\x07'*(1<<20)\nn=0\nwhile n<(512<<20):\n os.write(1,b)\n n+=len(b)\n open(sys.argv[1],'w').write(str(n))\n";
  const up = await websocketd(undefined, "--binary", "python3", "-c", flooder, count);
  const written = () => {
    try {
      return Number(readFileSync(count, "utf8")) || 0;
    } catch {
      return 0;
    }
  };
  await withProxy(["-u", up.url], async (p) => {
    const before = await rss(p.child.pid!);
    const r = await rawHandshake(p.port, "/flood", ["Host: example.com"]);
    assert.equal(r.status, 101);
    r.socket.pause(); // and never read again
    await until("the flood to start", () => written() > 0, 8000, 50);
    // Wait until the upstream is stalled: nothing more written for 500 ms.
    let last = -1, since = performance.now();
    await until("the upstream to be stalled", () => {
      const w = written();
      if (w !== last) [last, since] = [w, performance.now()];
      return performance.now() - since > 500;
    }, 8000, 50);
    const grew = await rss(p.child.pid!) - before;
    // What counts is how far the upstream got: anything holdup kept, it first had to read from the upstream.
    console.log(`backpressure: upstream stalled after ${(last / 2 ** 20).toFixed(0)} MiB; holdup RSS +${(grew / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(last < 96 << 20, `the upstream wrote ${last >> 20} MiB into a client that reads nothing`);
    r.socket.destroy();
    await p.waitForLine("the tunnel to end", (l) => l.msg === "websocket");
  }, [up]);
  await rm(dir, { recursive: true, force: true });
});

test("the cap: past wsMaxBuffered toward a client that does not read, the tunnel sends the upstream a 1009 Close, cuts the client and warns", async () => {
  // The tunnel's backpressure keeps what is queued toward a slow side near one read (the test above), far below the
  // default 16 MiB cap, so the cap is set here below one read to make the close happen. The sockets are real loopback
  // connections; only the registry (TunnelHost) is this test's.
  const pair = async (): Promise<[net.Socket, net.Socket]> => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1");
    await once(srv, "listening");
    const outer = net.connect((srv.address() as net.AddressInfo).port, "127.0.0.1");
    const [inner] = await once(srv, "connection") as [net.Socket];
    srv.close();
    return [inner, outer];
  };
  const [clientSide, client] = await pair(); // client: the browser, which never reads
  const [upstreamSide, upstream] = await pair(); // upstream: the app, which floods
  client.pause();
  for (const s of [clientSide, client, upstreamSide, upstream]) s.on("error", () => {});
  const warnings: Array<Record<string, unknown>> = [];
  let ended: (t: OpenWebSocket) => void = () => {};
  const endedP = new Promise<OpenWebSocket>((r) => ended = r);
  const host: TunnelHost = { relayed() {}, ended: (t) => ended(t), maxBuffered: () => 1024, warn: (_m, f) => void warnings.push(f) };
  const t = new Tunnel(clientSide, upstreamSide, { url: "http://127.0.0.1:1" } as Upstream, "/flood", 0, host);
  t.start(new Uint8Array(0), []);
  let got = Buffer.alloc(0);
  upstream.on("data", (d: Buffer) => got = Buffer.concat([got, d]));
  const frame = Buffer.concat([Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 0x01, 0, 0]), Buffer.alloc(1 << 16, 7)]); // 64 KiB binary frames
  let sent = 0;
  const pump = () => {
    while (!upstream.destroyed && !upstream.writableEnded && sent < 256 << 20) {
      sent += frame.length;
      if (!upstream.write(frame)) return void upstream.once("drain", pump);
    }
  };
  pump();
  const done = await endedP;
  assert.equal(done.code, 1009);
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0].slowSide, "client");
  assert.ok(clientSide.destroyed, "the client that does not read is cut");
  // The upstream got a masked Close frame with 1009 (and nothing else: the client sent nothing).
  await until("the upstream's Close", () => got.length >= 8);
  assert.equal(got[0], 0x88);
  assert.ok(got[1] & 0x80, "masked, as a client's frames are");
  const len = got[1] & 0x7f, key = got.subarray(2, 6);
  const payload = Buffer.from(got.subarray(6, 6 + len).map((b, i) => b ^ key[i & 3]));
  assert.equal(payload.readUInt16BE(0), 1009);
  assert.ok(sent < 64 << 20, `the upstream wrote ${sent >> 20} MiB`);
  for (const s of [client, upstream]) s.destroy();
});

test("FrameTracker: boundaries, message counts and Close frames, whatever the chunking", async () => {
  const { FrameTracker, clientClose, serverClose } = await import("../src/ws/frames.ts");
  const frame = (opcode: number, fin: boolean, payload: Uint8Array, masked: boolean) => {
    const n = payload.byteLength;
    const len = n < 126 ? [n] : n < 65536 ? [126, n >> 8, n & 255] : [127, 0, 0, 0, 0, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255];
    const key = masked ? [1, 2, 3, 4] : [];
    const body = masked ? payload.map((b, i) => b ^ key[i & 3]) : payload;
    return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, (masked ? 0x80 : 0) | len[0], ...len.slice(1), ...key]), body]);
  };
  for (const masked of [false, true]) {
    const frames = [
      frame(1, true, Buffer.from("hello"), masked),
      frame(2, false, randomBytes(300), masked), // a fragmented message…
      frame(9, true, Buffer.from("ping"), masked), // …with a ping between its fragments
      frame(0, true, randomBytes(70_000), masked),
      frame(2, true, new Uint8Array(0), masked),
    ];
    const close = masked ? clientClose(4001, "bye") : serverClose(4001, "bye");
    const all = Buffer.concat([...frames, close]);
    const ends = new Set<number>();
    let at = 0;
    for (const f of [...frames, close]) ends.add(at += f.length);
    // Fed in pieces of every size from 1 to 7 bytes and in one piece: boundaries are found exactly at frame ends.
    for (const step of [1, 2, 3, 7, all.length]) {
      const t = new FrameTracker();
      for (let i = 0; i < all.length; i += step) {
        const chunk = all.subarray(i, Math.min(all.length, i + step));
        let from = 0;
        while (from < chunk.length) {
          const stop = t.feed(chunk, from, true);
          if (stop === from) {
            from = t.feed(chunk.subarray(0, from + 1), from); // at a boundary: step over it
          } else {
            from = stop;
            // It stops early only at a boundary.
            if (stop < chunk.length) assert.ok(t.atBoundary, `stopped at ${i + stop} without a boundary`);
          }
          if (t.atBoundary) assert.ok(ends.has(i + from), `a boundary at ${i + from}, not a frame end`);
        }
        if (t.atBoundary !== ends.has(Math.min(all.length, i + step))) assert.fail(`atBoundary wrong at ${i + step}`);
      }
      assert.ok(t.atBoundary);
      assert.equal(t.messages, 3);
      assert.deepEqual(t.close, { code: 4001, reason: "bye" });
      assert.equal(t.bytes, all.length);
    }
  }
});

test("the built dist/proxy.js proxies WebSockets, and so does dist/edge.js (a message relay: see edge-ws.test.ts)", async () => {
  const { mkdtemp, copyFile, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = await mkdtemp(join(tmpdir(), "holdup-ws-"));
  await copyFile(join(ROOT, "dist/proxy.js"), join(dir, "proxy.js"));
  await copyFile(join(ROOT, "dist/edge.js"), join(dir, "edge.js"));
  const up = await websocketd();
  try {
    const p = await startProxy(["-u", up.url], { entry: "proxy.js", cwd: dir });
    try {
      const c = await open(wsUrl(p));
      assert.equal(await c.echo("from dist"), "from dist");
      c.ws.close();
      await c.closed;
    } finally {
      await p.stop();
    }
    const port = await freePort();
    const process = (await import("node:process")).default;
    const command: [string, string[]] = "Deno" in globalThis
      ? [process.execPath, ["serve", "--allow-net", "--allow-env", "--host", "127.0.0.1", "--port", String(port), "edge.js"]]
      : [process.execPath, ["edge.js"]];
    const edge = await startProxy([], { command, rawArgs: true, cwd: dir, port, env: { HOLDUP_UPSTREAMS: up.url, PORT: String(port) } });
    try {
      const c = await open(`ws://127.0.0.1:${port}/`);
      assert.equal(await c.echo("from edge.js"), "from edge.js");
      c.ws.close();
      await c.closed;
    } finally {
      await edge.stop();
    }
  } finally {
    await up.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test("config: drainTimeout, wsCloseSpread and wsMaxBuffered have defaults, are validated and shown", async () => {
  const { defaultLayer, resolve, toJSON } = await import("../src/config/layers.ts");
  const defaults = defaultLayer({ stderrIsTTY: false });
  const ok = resolve([defaults]);
  assert.ok("effective" in ok);
  const c = ok.effective.config;
  assert.equal(c.drainTimeout, 30_000);
  assert.equal(c.wsCloseSpread, 5_000);
  assert.equal(c.wsMaxBuffered, 16 * 2 ** 20);
  assert.deepEqual(
    (({ drainTimeout, wsCloseSpread, wsMaxBuffered }) => ({ drainTimeout, wsCloseSpread, wsMaxBuffered }))(toJSON(c) as Record<string, unknown>),
    { drainTimeout: "30s", wsCloseSpread: "5s", wsMaxBuffered: 16 * 2 ** 20 },
  );
  const bad = resolve([defaults, { source: "file", label: "f", raw: { wsMaxBuffered: "1KiB", drainTimeout: "soon", wsCloseSpread: "2h" } }]);
  assert.ok("errors" in bad);
  assert.deepEqual(bad.errors.map((e) => e.field).sort(), ["drainTimeout", "wsCloseSpread", "wsMaxBuffered"]);
});

test("paused: a handshake is held, and opens on resume", async () => {
  const up = await websocketd();
  await withProxy(["-u", up.url], async (p) => {
    assert.equal((await p.admin("POST", "/pause")).status, 200);
    const c = new Client(wsUrl(p));
    await until("the handshake to be held", async () => (await p.status()).held === 1);
    assert.equal((await p.admin("POST", "/resume")).status, 200);
    await c.opened;
    assert.equal(await c.echo("resumed"), "resumed");
    c.ws.close();
    await c.closed;
  }, [up]);
});

test("the compiled binary (bun build --compile) proxies WebSockets, held until the upstream starts", async () => {
  const { stat } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const binary = join(ROOT, "dist/holdup");
  if (!(await stat(binary).then(() => true, () => false))) {
    const built = await run(join(ROOT, "node_modules/.bin/bun"), ["run", "compile"], { timeoutMs: 120_000 });
    assert.equal(built.code, 0, built.stderr);
  }
  const port = await freePort();
  const p = await startProxy(["-u", `:${port}`, "--try-interval", "100ms"], { command: [binary, []] });
  let up: Server | null = null;
  try {
    const c = new Client(wsUrl(p, "/bin"));
    await until("the handshake to be held", async () => (await p.status()).held === 1);
    up = await websocketd(port);
    await c.opened;
    assert.equal(await c.echo("from the binary"), "from the binary");
    c.ws.close(1000, "done");
    assert.equal((await c.closed).code, 1000);
  } finally {
    await p.stop();
    await up?.stop();
  }
});
