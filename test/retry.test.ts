/**
 * Retrying on the app's answer (--retry-on), empty replies and Idempotency-Key,
 * and the retry budget: real apps on loopback that answer 503 or close without
 * a byte, the real proxy process in front.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { RetryBudget, retryDelay } from "../src/http/retry.ts";
import { freePort, type Proxy, run, runtimeCommand, startProxy, startUpstream, type Upstream, until } from "./helpers.ts";

interface Answer {
  status: number;
  text: string;
  /** Date.now() when the answer arrived. */
  at: number;
}

/** One request on a connection of its own. */
function send(port: number, method: string, path: string, headers: Record<string, string> = {}, body: Buffer | null = null): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString(), at: Date.now() }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body ?? undefined);
  });
}

async function metric(p: Proxy, line: RegExp): Promise<number> {
  const text = await (await p.admin("GET", "/metrics")).text();
  const m = text.split("\n").find((l) => line.test(l));
  return m ? Number(m.split(" ").pop()) : 0;
}

/** An app that answers 503 + Retry-After: 1 until `ready` is set, then 200 with what it got. */
async function bootingApp() {
  const app = { ready: false, up: null as unknown as Upstream, times: new Map<string, number[]>() };
  app.up = await startUpstream((req, res, body) => {
    const list = app.times.get(req.url!) ?? [];
    list.push(Date.now());
    app.times.set(req.url!, list);
    if (!app.ready) {
      res.writeHead(503, { "retry-after": "1", "content-type": "text/plain" });
      res.end("warming up");
      return;
    }
    res.end(`ok ${req.method} ${body.length}`);
  });
  return app;
}

test("--retry-on 503: a GET and a keyed POST are held through the app's 503s; an unkeyed POST gets the 503 at once", async () => {
  const app = await bootingApp();
  const proxy = await startProxy(["-u", app.up.url, "--retry-on", "502,503", "--try-duration", "20s", "--try-interval", "100ms"]);
  try {
    const payload = randomBytes(3000);
    const get = send(proxy.port, "GET", "/get");
    const keyed = send(proxy.port, "POST", "/keyed", { "idempotency-key": "k-123", "content-type": "application/octet-stream" }, payload);
    const unkeyed = await send(proxy.port, "POST", "/unkeyed", {}, Buffer.from("once"));
    // Answered while the app still says 503: passed on at once, sent once.
    assert.equal(app.ready, false);
    assert.equal(unkeyed.status, 503);
    assert.equal(unkeyed.text, "warming up");
    // The others are retried, Retry-After (1 s, more than tryInterval) apart.
    await until("GET and keyed POST tried twice", () => (app.times.get("/get")?.length ?? 0) >= 2 && (app.times.get("/keyed")?.length ?? 0) >= 2, 15_000);
    app.ready = true;
    const [g, k] = await Promise.all([get, keyed]);
    assert.equal(g.status, 200, g.text);
    assert.equal(k.status, 200, k.text);
    assert.equal(k.text, "ok POST 3000");
    assert.equal(app.times.get("/unkeyed")!.length, 1, "the unkeyed POST was sent once");
    for (const path of ["/get", "/keyed"]) {
      const t = app.times.get(path)!;
      for (let i = 1; i < t.length; i++) assert.ok(t[i] - t[i - 1] >= 950, `${path}: retried ${t[i] - t[i - 1]}ms after a Retry-After: 1`);
    }
    // Every send of the keyed POST carried the same bytes and headers.
    const sends = app.up.received.filter((r) => r.url === "/keyed");
    assert.ok(sends.length >= 3);
    for (const s of sends) {
      assert.ok(s.body.equals(payload), "the keyed POST's body was resent byte-exact");
      assert.equal(s.headers["idempotency-key"], "k-123");
      assert.deepEqual(s.rawHeaders, sends[0].rawHeaders);
    }
    assert.ok(await metric(proxy, /^holdup_resends_total\{app="default",reason="status"\}/) >= 3);
  } finally {
    await proxy.stop();
    await app.up.close();
  }
});

test("--retry-on: the app's last answer is passed on when the next try would pass tryDuration", async () => {
  const app = await bootingApp();
  const proxy = await startProxy(["-u", app.up.url, "--retry-on", "503", "--try-duration", "1800ms", "--try-interval", "100ms"]);
  try {
    const r = await send(proxy.port, "GET", "/x");
    assert.equal(r.status, 503);
    assert.equal(r.text, "warming up", "the app's own answer, not holdup's");
    assert.equal(app.times.get("/x")!.length, 2, "tried at once and after Retry-After: 1; a third try would pass tryDuration");
  } finally {
    await proxy.stop();
    await app.up.close();
  }
});

test("--retry-on refuses what is not an error status, naming the flag", async () => {
  const [cmd, args] = runtimeCommand("src/proxy.ts", ["--retry-on", "502,abc"]);
  const r = await run(cmd, args);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--retry-on: "abc" is not an error status from 400 to 599/);
});

test("without --retry-on, a 503 passes through at once", async () => {
  const app = await bootingApp();
  const proxy = await startProxy(["-u", app.up.url, "--try-duration", "20s"]);
  try {
    const r = await send(proxy.port, "GET", "/x");
    assert.equal(r.status, 503);
    assert.equal(app.times.get("/x")!.length, 1);
  } finally {
    await proxy.stop();
    await app.up.close();
  }
});

test("empty replies: a GET and a keyed POST are held until the app answers; an unkeyed POST gets 502, sent at most once", async () => {
  const port = await freePort();
  // Like Docker's userland proxy in front of a stopped app: accepts, reads, closes without a byte.
  const seen: string[] = [];
  const sockets = new Set<net.Socket>();
  const closer = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.once("data", (d: Buffer) => {
      seen.push(d.toString("latin1").split("\r\n")[0]);
      s.destroy();
    });
  });
  closer.listen(port, "127.0.0.1");
  await once(closer, "listening");
  const proxy = await startProxy(["-u", `127.0.0.1:${port}`, "--try-duration", "20s", "--try-interval", "100ms"]);
  let up: Upstream | undefined;
  try {
    const payload = randomBytes(2000);
    const get = send(proxy.port, "GET", "/get");
    const keyed = send(proxy.port, "POST", "/keyed", { "idempotency-key": "abc" }, payload);
    const unkeyed = await send(proxy.port, "POST", "/unkeyed", {}, Buffer.from("once"));
    assert.equal(unkeyed.status, 502);
    assert.ok(seen.filter((l) => l.startsWith("POST /unkeyed")).length <= 1, "the unkeyed POST was sent at most once");
    // More tries than the old two resends, for both.
    await until("GET and keyed POST tried 4 times", () =>
      seen.filter((l) => l.startsWith("GET /get")).length >= 4 && seen.filter((l) => l.startsWith("POST /keyed")).length >= 4, 15_000);
    closer.close();
    for (const s of sockets) s.destroy();
    await once(closer, "close");
    up = await startUpstream((req, res, body) => res.end(`ok ${req.method} ${body.length}`), port);
    const [g, k] = await Promise.all([get, keyed]);
    assert.equal(g.status, 200, g.text);
    assert.equal(k.status, 200, k.text);
    assert.equal(k.text, "ok POST 2000");
    const got = up.received.filter((r) => r.url === "/keyed");
    assert.equal(got.length, 1);
    assert.ok(got[0].body.equals(payload), "the keyed POST's body arrived byte-exact");
    assert.equal(up.received.filter((r) => r.url === "/unkeyed").length, 0);
    assert.ok(await metric(proxy, /^holdup_resends_total\{app="default",reason="empty-reply"\}/) >= 6);
  } finally {
    await proxy.stop();
    closer.close();
    for (const s of sockets) s.destroy();
    await up?.close();
  }
});

test("a POST with Idempotency-Key cut by a deploy's drain is resent byte-exact to the new upstream", async () => {
  const old = await startUpstream((req, res) => {
    if (req.url !== "/pay") res.end("old"); // /pay: never answered
  });
  const next = await startUpstream((req, res, body) => res.end(`new ${req.method} ${body.length}`));
  const proxy = await startProxy(["-u", old.url]);
  try {
    const payload = randomBytes(5000);
    const pay = send(proxy.port, "POST", "/pay", { "idempotency-key": "order-7" }, payload);
    await until("the POST reached the old upstream", () => old.received.some((r) => r.url === "/pay"));
    const d = await proxy.admin("POST", "/deploy", { app: "default", upstreams: [next.url], drainTimeout: "300ms" });
    assert.equal(d.status, 200, await d.text());
    const r = await pay;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, "new POST 5000");
    const got = next.received.filter((q) => q.url === "/pay");
    assert.equal(got.length, 1);
    assert.ok(got[0].body.equals(payload), "resent byte-exact");
    assert.equal(got[0].headers["idempotency-key"], "order-7");
    assert.equal(await metric(proxy, /^holdup_resends_total\{app="default",reason="drain"\}/), 1);
  } finally {
    await proxy.stop();
    await old.close();
    await next.close();
  }
});

test("the retry budget: a permanently failing app under steady load sees at most the budgeted extra requests", async () => {
  const up = await startUpstream((_req, res) => {
    res.writeHead(503);
    res.end("sick");
  });
  // Without a budget every GET would be tried every 50 ms for 4 s: ~80 times.
  const proxy = await startProxy(["-u", up.url, "--retry-on", "503", "--try-interval", "50ms", "--try-duration", "4s"]);
  try {
    const N = 120;
    const started = Date.now();
    const answers: Promise<Answer>[] = [];
    // 40 requests a second for 3 s, each on a connection of its own.
    for (let i = 0; i < N; i++) {
      answers.push(send(proxy.port, "GET", `/r${i}`));
      await new Promise((r) => setTimeout(r, 25));
    }
    const all = await Promise.all(answers);
    const seconds = (Date.now() - started) / 1000;
    for (const a of all) assert.equal(a.status, 503);
    assert.ok(all.every((a) => a.text === "sick"), "every client got the app's own answer");
    const extra = up.received.length - N;
    // Within one 10 s window: 20 % of its requests, at least 30.
    const budget = Math.max(30, Math.floor(0.2 * N));
    console.log(`retry budget: ${N} requests in ${seconds.toFixed(1)} s, the app received ${up.received.length} (${extra} retries, budget ${budget}); ${(up.received.length / seconds).toFixed(0)}/s at the app`);
    assert.ok(extra >= 1, "some retries were made");
    assert.ok(extra <= budget, `${extra} retries, more than the budget of ${budget}`);
    assert.ok(await metric(proxy, /^holdup_retry_budget_exhausted_total\{app="default"\}/) > 0);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("RetryBudget: 20 % of the last 10 s of requests, at least 30; the window slides", () => {
  const b = new RetryBudget();
  const t0 = 1_000_000;
  let n = 0;
  while (b.tryRetry(t0)) n++;
  assert.equal(n, 30, "the floor, with no requests");
  for (let i = 0; i < 1000; i++) b.request(t0 + 500);
  n = 0;
  while (b.tryRetry(t0 + 600)) n++;
  assert.equal(n, 200 - 30, "20 % of 1,000 requests, less the 30 already spent");
  // 10 s later that second has left the window: the floor again.
  n = 0;
  while (b.tryRetry(t0 + 10_000)) n++;
  assert.equal(n, 30);
});

test("retryDelay: Retry-After in seconds or as a date, never below tryInterval", () => {
  assert.equal(retryDelay(null, 250), 250);
  assert.equal(retryDelay("2", 250), 2000);
  assert.equal(retryDelay("0", 250), 250);
  assert.equal(retryDelay("soon", 250), 250);
  const d = retryDelay(new Date(Date.now() + 5000).toUTCString(), 250);
  assert.ok(d > 3000 && d <= 5000, String(d));
});
