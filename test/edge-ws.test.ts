/**
 * WebSockets through the edge entry (src/edge.ts, dist/edge.js): a message
 * relay under `deno serve` and under Bun's auto-serve — both hosts from
 * either test runner (node_modules/.bin/deno and node_modules/.bin/bun), so
 * each runner's own WebSocket client talks to both. Upstreams are websocketd
 * and the Autobahn echo fixture. Echo (text, binary 0 B and 1 MiB), handshake
 * headers and subprotocol, a refused handshake (502), holding until the
 * upstream starts, draining on a reload through the mounted admin API (1012),
 * and the built dist/edge.js.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, type Proxy, ROOT, startProxy, until } from "./helpers.ts";
import { autobahn, Client, clientFrame, fidelityHandshake, open, rawHandshake, type Server, websocketd } from "./ws-helpers.ts";

const DENO = `${ROOT}node_modules/.bin/deno`;
const BUN = `${ROOT}node_modules/.bin/bun`;
const TOKEN = "edge-ws-token";
const auth = { authorization: `Bearer ${TOKEN}` };

interface Host {
  name: "deno serve" | "Bun auto-serve";
  command(entry: string, port: number): [string, string[]];
}
const HOSTS: Host[] = [
  { name: "deno serve", command: (entry, port) => [DENO, ["serve", "--allow-net", "--allow-env", "--host", "127.0.0.1", "--port", String(port), entry]] },
  { name: "Bun auto-serve", command: (entry) => [BUN, [entry]] },
];

/** The edge entry on `host`, on a free port, with the admin API mounted; `env` adds HOLDUP_* variables. */
async function startEdge(host: Host, upstreams: string, env: Record<string, string> = {}, entry = "src/edge.ts", cwd = ROOT): Promise<Proxy> {
  const port = await freePort();
  return await startProxy([], {
    command: host.command(entry, port),
    rawArgs: true,
    cwd,
    port,
    env: {
      HOLDUP_UPSTREAMS: upstreams, HOLDUP_LOG: "json", HOLDUP_TRY_INTERVAL: "100ms", HOLDUP_ADMIN_TOKEN: TOKEN,
      PORT: String(port), HOSTNAME: "127.0.0.1", ...env,
    },
  });
}

async function withEdge(host: Host, upstreams: string, fn: (p: Proxy) => Promise<void>, servers: Server[] = [], env: Record<string, string> = {}): Promise<void> {
  const p = await startEdge(host, upstreams, env);
  try {
    await fn(p);
  } finally {
    await p.stop();
    for (const s of servers) await s.stop();
  }
}

const wsUrl = (p: Proxy, path = "/") => `ws://127.0.0.1:${p.port}${path}`;

/** The client's close event, or a failure after `ms`. */
function closed(c: Client, ms = 5000): Promise<{ code: number; reason: string; at: number }> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    c.closed.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => timer = setTimeout(() => reject(new Error(`no close within ${ms}ms`)), ms)),
  ]);
}

interface EdgeStatus {
  held: number;
  websockets: { open: number; draining: number };
  upstreams: Array<{ url: string; websockets: number }>;
}
async function status(p: Proxy): Promise<EdgeStatus> {
  const r = await fetch(`${p.url}/_holdup/status`, { headers: auth });
  assert.equal(r.status, 200);
  return await r.json();
}

for (const host of HOSTS) {
  test(`${host.name}: text and binary (0 B, 1 MiB) echo through the edge; /status and /metrics count it; one log line on close`, async () => {
    const up = await autobahn();
    await withEdge(host, up.url, async (p) => {
      const c = await open(wsUrl(p, "/echo?room=1"));
      for (const m of ["hello", "", "ünïcødé ✓ 🎉"]) assert.equal(await c.echo(m), m);
      for (const size of [0, 1, 1 << 20]) {
        const data = randomBytes(size);
        const got = await c.echo(data);
        assert.ok(got instanceof ArrayBuffer, `a ${size}-byte binary message came back as ${typeof got}`);
        assert.ok(Buffer.from(got).equals(data), `${size}-byte message differs`);
      }
      const s = await status(p);
      assert.deepEqual(s.websockets, { open: 1, draining: 0 });
      assert.equal(s.upstreams[0].websockets, 1);
      const metrics = await (await fetch(`${p.url}/_holdup/metrics`, { headers: auth })).text();
      assert.match(metrics, new RegExp(`holdup_websockets_open\\{app="default",upstream="${up.url}"\\} 1`));
      c.ws.close(1000, "done");
      assert.equal((await closed(c)).code, 1000);
      const line = await p.waitForLine("websocket log line", (l) => l.msg === "websocket");
      assert.equal(line.path, "/echo?room=1");
      assert.equal(line.upstream, up.url);
      assert.equal(line.close_code, 1000);
      assert.equal(line.close_reason, "done");
      assert.equal(line.closed_by, "client");
      assert.equal(line.messages_to_upstream, 6);
      assert.equal(line.messages_to_client, 6);
      assert.equal(line.bytes_to_client, line.bytes_to_upstream);
      assert.ok((line.bytes_to_client as number) > 1 << 20);
      await until("the count to drop", async () => (await status(p)).websockets.open === 0);
      assert.match(await (await fetch(`${p.url}/_holdup/metrics`, { headers: auth })).text(), /holdup_websocket_closes_total\{app="default",code="1000"\} 1/);
    }, [up]);
  });

  test(`${host.name}: handshake — base path + path and query, Cookie, Authorization, Origin, X-Forwarded-*, and the upstream's subprotocol`, async () => {
    const up = await autobahn();
    await withEdge(host, `${up.url}/base`, async (p) => {
      const info = await fidelityHandshake(p.port);
      assert.equal(info.path, "/base/live/socket");
      assert.deepEqual(info.params, { vsn: ["2.0.0"], x: ["/"] });
      const h = info.headers;
      assert.equal(h.cookie, "session=abc; theme=dark");
      assert.equal(h.authorization, "Bearer t0ken");
      assert.equal(h.origin, "https://app.example.com");
      assert.equal(h["sec-websocket-protocol"], "chat.v1, chat.v2");
      assert.match(h["x-forwarded-for"], /^203\.0\.113\.9, (::ffff:)?127\.0\.0\.1$/);
      assert.equal(h["x-forwarded-proto"], "http");
      assert.equal(h["x-forwarded-host"], "app.example.com");
      if (host.name === "deno serve") {
        // Deno's client: Host is the URL's, and it adds its own name to User-Agent.
        assert.equal(h.host, `127.0.0.1:${up.port}`);
        assert.match(h["user-agent"], /^Deno\/[\d.]+, holdup-test\/1\.0$/);
      } else {
        assert.equal(h.host, "app.example.com");
        assert.equal(h["user-agent"], "holdup-test/1.0");
      }

      // The runtime's own client gets the protocol the upstream chose, not the first it offered.
      const c = await open(wsUrl(p), ["chat.v1", "chat.v2"]);
      assert.equal(c.ws.protocol, "chat.v2");
      assert.equal(await c.echo("chat"), "chat");
      c.ws.close();
      await closed(c);
    }, [up]);
  });

  test(`${host.name}: close codes and reasons from the upstream reach the client; the client's reach the log`, async () => {
    const up = await autobahn();
    await withEdge(host, up.url, async (p) => {
      for (const [code, reason] of [[4002, "upstream says bye"], [3000, "unauthorized"], [1000, "fine"]] as const) {
        const c = await open(wsUrl(p));
        c.ws.send(`close ${code} ${reason}`);
        const got = await closed(c);
        assert.deepEqual({ code: got.code, reason: got.reason }, { code, reason });
      }
      const c = await open(wsUrl(p, "/client-closes"));
      assert.equal(await c.echo("x"), "x");
      c.ws.close(4001, "client says bye");
      assert.equal((await closed(c)).code, 4001);
      const line = await p.waitForLine("the client's close", (l) => l.msg === "websocket" && l.path === "/client-closes");
      assert.deepEqual([line.close_code, line.close_reason, line.closed_by], [4001, "client says bye", "client"]);
    }, [up]);
  });

  test(`${host.name}: no read backpressure, so a client that does not read is closed with 1009 past wsMaxBuffered`, async () => {
    const up = await autobahn();
    await withEdge(host, up.url, async (p) => {
      const r = await rawHandshake(p.port, "/flood", ["Host: example.com"]);
      assert.equal(r.status, 101, r.head);
      r.socket.write(clientFrame("stream 65536"));
      r.socket.pause(); // reads nothing more: what the upstream streams queues in holdup
      const warn = await p.waitForLine("the wsMaxBuffered warning", (l) => l.msg === "websocket closed: wsMaxBuffered exceeded", 15_000);
      assert.equal(warn.slowSide, "client");
      const line = await p.waitForLine("the websocket line", (l) => l.msg === "websocket" && l.path === "/flood", 10_000);
      assert.equal(line.close_code, 1009);
      assert.equal(line.closed_by, "holdup");
      r.socket.destroy();
    }, [up], { HOLDUP_WS_MAX_BUFFERED: "1MiB" });
  });

  test(`${host.name}: an upstream refusing the handshake (403): the client gets 502, never a 101`, async () => {
    const up = await autobahn();
    await withEdge(host, up.url, async (p) => {
      const r = await rawHandshake(p.port, "/refuse", ["Host: example.com", "Connection: close"]);
      assert.equal(r.status, 502, r.head);
      r.socket.destroy();
      const line = await p.waitForLine("502 access line", (l) => l.msg === "request" && l.status === 502);
      assert.match(String(line.reason), /403/);
      // The upstream is not marked down for it: the next handshake opens.
      const c = await open(wsUrl(p, "/fine"));
      assert.equal(await c.echo("ok"), "ok");
      c.ws.close();
      await closed(c);
    }, [up]);
  });

  test(`${host.name}: held while the upstream is down; the WebSocket opens and echoes once it starts`, async () => {
    const port = await freePort();
    let up: Server | undefined;
    await withEdge(host, `http://127.0.0.1:${port}`, async (p) => {
      const c = new Client(wsUrl(p, "/held"));
      await until("the handshake to be held", async () => (await status(p)).held === 1);
      const t0 = performance.now();
      up = await websocketd(port);
      await c.opened;
      assert.ok(performance.now() - t0 < 5000);
      assert.equal(await c.echo("after the wait"), "after the wait");
      const line = await p.waitForLine("101 access line", (l) => l.msg === "request" && l.status === 101);
      assert.ok((line.held_ms as number) > 0);
      c.ws.close();
      await closed(c);
    }, [], { HOLDUP_TRY_DURATION: "20s" });
    await up?.stop();
  });

  test(`${host.name}: a reload to B drains WebSockets on A: they keep working, then close with 1012 after drainTimeout; reconnects land on B`, async () => {
    const a = await websocketd();
    const b = await websocketd(undefined, "sed", "-u", "s/^/B:/");
    const drainTimeout = 500, spread = 200;
    await withEdge(host, a.url, async (p) => {
      const clients = await Promise.all(Array.from({ length: 3 }, () => open(wsUrl(p, "/live"))));
      for (const [i, c] of clients.entries()) assert.equal(await c.echo(`a${i}`), `a${i}`);
      const t0 = performance.now();
      const r = await fetch(`${p.url}/_holdup/reload`, {
        method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify({ upstreams: [b.url] }),
      });
      assert.equal(r.status, 200, await r.text());
      // Still relaying to A while they drain.
      for (const [i, c] of clients.entries()) assert.equal(await c.echo(`still${i}`), `still${i}`);
      const s = await status(p);
      assert.equal(s.websockets.open, 3);
      assert.equal(s.websockets.draining, 3);
      // A reconnect lands on B.
      const fresh = await open(wsUrl(p, "/live"));
      assert.equal(await fresh.echo("x"), "B:x");
      const closes = await Promise.all(clients.map((c) => closed(c)));
      for (const c of closes) {
        assert.equal(c.code, 1012, `closed ${c.code} ${c.reason}`);
        assert.ok(c.at - t0 >= drainTimeout - 50, `closed after ${Math.round(c.at - t0)}ms, before drainTimeout`);
        assert.ok(c.at - t0 < drainTimeout + spread + 2000, `closed after ${Math.round(c.at - t0)}ms`);
      }
      // The one on B is not drained.
      assert.equal(await fresh.echo("y"), "B:y");
      await until("the drained ones to be gone", async () => (await status(p)).websockets.open === 1);
      // One log line each (read from holdup's stderr, which may trail its /status answer).
      const lines = (await until("3 websocket log lines", () => {
        const l = p.lines.filter((l) => l.msg === "websocket" && l.close_code === 1012);
        return l.length === 3 ? l : null;
      }, 5000))!;
      assert.ok(lines.every((l) => l.closed_by === "holdup" && l.upstream === a.url));
      fresh.ws.close();
      await closed(fresh);
    }, [a, b], { HOLDUP_DRAIN_TIMEOUT: `${drainTimeout}ms`, HOLDUP_WS_CLOSE_SPREAD: `${spread}ms` });
  });
}

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "holdup-edge-ws-"));
  await copyFile(join(ROOT, "dist/edge.js"), join(dir, "edge.js"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

for (const host of HOSTS) {
  test(`dist/edge.js under ${host.name} (no node_modules): a WebSocket echoes`, async () => {
    const up = await websocketd();
    const p = await startEdge(host, up.url, {}, "edge.js", dir);
    try {
      const c = await open(wsUrl(p, "/dist"));
      assert.equal(await c.echo("from dist"), "from dist");
      c.ws.close(4001, "bye");
      assert.equal((await closed(c)).code, 4001);
      const line = await p.waitForLine("websocket log line", (l) => l.msg === "websocket");
      assert.equal(line.close_code, 4001);
    } finally {
      await p.stop();
      await up.stop();
    }
  });
}
