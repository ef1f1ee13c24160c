/**
 * X-Request-Id (issue 27): a sane id from the client is kept, else holdup
 * makes one (≥ 96 random bits, unique); it is passed upstream, echoed on the
 * response, logged as `request_id` — also for a request held while paused, on
 * holdup's own error bodies, and on a WebSocket handshake (websocketd, which
 * hands the handshake's headers to its command as HTTP_* variables).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { freePort, nodeGet, type Proxy, ROOT, RUNTIME, startProxy, startUpstream, until } from "./helpers.ts";
import { clientFrame, rawHandshake, serverFrame, websocketd } from "./ws-helpers.ts";

async function withProxy(args: string[], fn: (p: Proxy) => Promise<void>): Promise<void> {
  const p = await startProxy(args);
  try {
    await fn(p);
  } finally {
    await p.stop();
  }
}

const logged = (p: Proxy, id: string) => p.waitForLine(`access line with request_id ${id}`, (l) => l.msg === "request" && l.request_id === id);

test("X-Request-Id: a sane one is kept, passed upstream, echoed and logged", async () => {
  const up = await startUpstream((req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ id: req.headers["x-request-id"] ?? null }));
  });
  try {
    await withProxy(["--upstream", up.url], async (p) => {
      const id = "req-abc_123.XYZ:/=+";
      const r = await nodeGet(p.url + "/", { "x-request-id": id });
      assert.equal(JSON.parse(r.body.toString()).id, id, "upstream saw the client's id");
      assert.equal(r.headers["x-request-id"], id, "echoed");
      await logged(p, id);
    });
  } finally {
    await up.close();
  }
});

test("X-Request-Id: made when missing or not sane (≥ 96 bits, unique), the same upstream, on the response and in the log", async () => {
  const seen: string[] = [];
  const up = await startUpstream((req, res) => {
    seen.push(String(req.headers["x-request-id"]));
    res.end("ok");
  });
  try {
    await withProxy(["--upstream", up.url], async (p) => {
      const insane = ["x".repeat(201), "a\u00e9b", "tab\there"];
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const sent = insane[i % 4];
        const r = await nodeGet(p.url + "/", sent === undefined ? {} : { "x-request-id": sent });
        const id = String(r.headers["x-request-id"]);
        assert.notEqual(id, sent);
        // At least 96 bits: 24 hex digits (a UUID v4 has 122 random bits in 32).
        assert.ok(id.replace(/[^0-9a-f]/gi, "").length >= 24, `too short: ${id}`);
        assert.equal(seen.at(-1), id, "the upstream got the id the client got");
        ids.push(id);
      }
      assert.equal(new Set(ids).size, ids.length, "unique");
      await logged(p, ids[7]);
    });
  } finally {
    await up.close();
  }
});

test("X-Request-Id: a held request keeps its id through the hold; holdup's own 503 shows it (text and JSON)", async () => {
  const seen: string[] = [];
  const up = await startUpstream((req, res) => {
    seen.push(String(req.headers["x-request-id"]));
    res.end("ok");
  });
  try {
    await withProxy(["--upstream", up.url, "--try-duration", "20s"], async (p) => {
      assert.equal((await p.admin("POST", "/pause")).status, 200);
      const held = nodeGet(p.url + "/held", { "x-request-id": "held-1" });
      await until("the request to be held", async () => (await p.status()).held === 1);
      assert.equal((await p.admin("POST", "/resume")).status, 200);
      const r = await held;
      assert.equal(r.status, 200);
      assert.equal(r.headers["x-request-id"], "held-1");
      assert.deepEqual(seen, ["held-1"]);
      const line = await logged(p, "held-1");
      assert.ok(Number(line.held_ms) > 0, "logged as held");
    });
    await withProxy(["--upstream", up.url, "--try-duration", "300ms"], async (p) => {
      await p.admin("POST", "/pause");
      const text = await nodeGet(p.url + "/", { "x-request-id": "late-1" });
      assert.equal(text.status, 503);
      assert.equal(text.headers["x-request-id"], "late-1");
      assert.match(text.body.toString(), /request id: late-1\n$/);
      const json = await nodeGet(p.url + "/", { "x-request-id": "late-2", accept: "application/json" });
      assert.equal(json.status, 503);
      assert.equal(json.headers["content-type"], "application/json");
      const b = JSON.parse(json.body.toString());
      assert.equal(b.requestId, "late-2");
      assert.equal(b.error, "service_unavailable");
      assert.equal(b.retryAfter, 5);
      await logged(p, "late-2");
      await p.admin("POST", "/stop", { message: "Back soon" });
      const page = await nodeGet(p.url + "/", { "x-request-id": "stop-1", accept: "text/html" });
      assert.equal(page.status, 503);
      assert.match(page.body.toString(), /stop-1/);
    });
  } finally {
    await up.close();
  }
});

test("X-Request-Id on a WebSocket handshake: passed to the upstream, echoed on the 101, logged (command-line proxy)", async () => {
  const ws = await websocketd(undefined, "sh", "-c", 'echo "id=$HTTP_X_REQUEST_ID"');
  try {
    await withProxy(["--upstream", ws.url], async (p) => {
      const r = await rawHandshake(p.port, "/", ["Host: 127.0.0.1", "X-Request-Id: ws-1"]);
      assert.equal(r.status, 101, r.head);
      assert.match(r.head, /\r\nx-request-id: ws-1(\r\n|$)/i);
      assert.equal((await serverFrame(r)).toString().trim(), "id=ws-1");
      r.socket.destroy();
      await logged(p, "ws-1");
      const made = await rawHandshake(p.port, "/", ["Host: 127.0.0.1"]);
      const id = /\r\nx-request-id: ([^\r]+)/i.exec(made.head)?.[1] ?? "";
      assert.ok(id.length >= 24, made.head);
      assert.equal((await serverFrame(made)).toString().trim(), `id=${id}`);
      made.socket.destroy();
    });
  } finally {
    await ws.stop();
  }
});

test("X-Request-Id on a WebSocket handshake at the edge (message relay): passed to the upstream, logged", async () => {
  const ws = await websocketd(undefined, "sh", "-c", 'echo "id=$HTTP_X_REQUEST_ID"');
  const port = await freePort();
  const command: [string, string[]] = RUNTIME === "deno"
    ? [`${ROOT}node_modules/.bin/deno`, ["serve", "--allow-net", "--allow-env", "--host", "127.0.0.1", "--port", String(port), "src/edge.ts"]]
    : [`${ROOT}node_modules/.bin/bun`, ["src/edge.ts"]];
  const p = await startProxy([], {
    command, rawArgs: true, port,
    env: { HOLDUP_UPSTREAMS: ws.url, HOLDUP_LOG: "json", PORT: String(port), HOSTNAME: "127.0.0.1" },
  });
  try {
    const r = await rawHandshake(port, "/", ["Host: 127.0.0.1", "X-Request-Id: edge-ws-1"]);
    assert.equal(r.status, 101, r.head);
    r.socket.write(clientFrame("x"));
    assert.equal((await serverFrame(r)).toString().trim(), "id=edge-ws-1");
    r.socket.destroy();
    await logged(p, "edge-ws-1");
  } finally {
    await p.stop();
    await ws.stop();
  }
});
