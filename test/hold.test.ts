/**
 * Holding and retrying, against real upstreams and the real proxy process:
 * requests held while nothing listens resume when the upstream starts, or on
 * whatever upstream a reload (SIGHUP or POST /reload) names.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, rawRequest, RUNTIME, startProxy, startUpstream, type Upstream, until } from "./helpers.ts";

type Sent = { i: number; method: string; body: Buffer | null; res: Promise<{ status: number; text: string; at: number; held: number }> };

/** Fires `n` requests through the proxy, alternating GETs and POSTs with unique bodies. */
function fire(url: string, n: number, signal?: AbortSignal): Sent[] {
  return Array.from({ length: n }, (_, i) => {
    const method = i % 2 ? "POST" : "GET";
    const body = method === "POST" ? randomBytes(1000 + i) : null;
    const res = fetch(`${url}/req/${i}`, { method, body, signal }).then(async (r) => ({
      status: r.status,
      text: await r.text(),
      at: performance.now(),
      held: Number(r.headers.get("x-holdup-held-ms")),
    }));
    return { i, method, body, res };
  });
}

/** Every request was answered 200 by `up`, each received exactly once, POST bodies byte-exact. */
async function assertAllServedBy(sent: Sent[], up: Upstream) {
  const results = await Promise.all(sent.map((s) => s.res));
  for (const r of results) assert.equal(r.status, 200, r.text);
  assert.equal(up.received.length, sent.length);
  for (const s of sent) {
    const got = up.received.filter((r) => r.url === `/req/${s.i}`);
    assert.equal(got.length, 1, `request ${s.i} received ${got.length} times`);
    assert.equal(got[0].method, s.method);
    if (s.body) assert.ok(got[0].body.equals(s.body), `POST body ${s.i} differs`);
  }
  return results;
}

const ok = (_req: unknown, res: { end(s: string): void }) => res.end("ok");

test("held requests (GET and POST) are answered when the upstream starts", async () => {
  const port = await freePort();
  const proxy = await startProxy(["-u", `:${port}`, "--try-duration", "30s", "--try-interval", "100ms"]);
  let up: Upstream | undefined;
  try {
    const sent = fire(proxy.url, 10);
    await until("10 held", async () => (await proxy.status()).held === 10);
    const started = performance.now();
    up = await startUpstream((req, res, body) => res.end(`got ${req.method} ${body.length}`), port);
    const results = await assertAllServedBy(sent, up);
    for (const r of results) assert.ok(r.held > 0, "X-Holdup-Held-Ms says it was held");
    // Released by the shared probe, within a few intervals of the upstream starting.
    const lag = Math.max(...results.map((r) => r.at)) - started;
    assert.ok(lag < 5000, `released ${lag}ms after the upstream started`);
  } finally {
    await proxy.stop();
    await up?.close();
  }
});

test("POST /reload moves held requests to the new upstream at once, not at the next interval", async () => {
  const dead = await freePort();
  // A 20 s interval: only the reload itself can wake the held requests in time.
  const proxy = await startProxy(["-u", `:${dead}`, "--try-duration", "30s", "--try-interval", "20s"]);
  const up = await startUpstream(ok);
  try {
    const sent = fire(proxy.url, 10);
    await until("10 held", async () => (await proxy.status()).held === 10);
    const t0 = performance.now();
    const r = await proxy.admin("POST", "/reload", { upstreams: [up.url] });
    assert.equal(r.status, 200, await r.clone().text());
    const status = await r.json();
    assert.equal(status.configVersion, 2);
    assert.deepEqual(status.config.upstreams, [up.url]);
    assert.equal(status.sources.upstreams, "reload");
    const results = await assertAllServedBy(sent, up);
    const lag = Math.max(...results.map((x) => x.at)) - t0;
    assert.ok(lag < 3000, `all answered ${lag}ms after the reload`);
    // The flag set -u; the reload body still wins, as the operator's latest word.
    const line = await proxy.waitForLine("reload log", (l) => l.msg === "reloaded");
    assert.equal(line.trigger, "POST /reload");
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("SIGHUP re-reads the config file and moves held requests to the new upstream", async () => {
  const dir = await mkdtemp(join(tmpdir(), "holdup-"));
  const file = join(dir, "holdup.json");
  const dead = await freePort();
  await writeFile(file, JSON.stringify({ upstreams: [`127.0.0.1:${dead}`], tryDuration: "30s", tryInterval: "20s" }));
  const proxy = await startProxy(["-c", file]);
  const up = await startUpstream(ok);
  try {
    const sent = fire(proxy.url, 10);
    await until("10 held", async () => (await proxy.status()).held === 10);
    await writeFile(file, JSON.stringify({ upstreams: [up.url], tryDuration: "30s", tryInterval: "20s" }));
    const t0 = performance.now();
    proxy.signal("SIGHUP");
    const results = await assertAllServedBy(sent, up);
    const lag = Math.max(...results.map((x) => x.at)) - t0;
    assert.ok(lag < 3000, `all answered ${lag}ms after SIGHUP`);
    const line = await proxy.waitForLine("reload log", (l) => l.msg === "reloaded");
    assert.equal(line.trigger, "SIGHUP");
  } finally {
    await proxy.stop();
    await up.close();
    await rm(dir, { recursive: true });
  }
});

test("an invalid reload is rejected whole: 400 naming the field, the old config stays", async () => {
  const dir = await mkdtemp(join(tmpdir(), "holdup-"));
  const file = join(dir, "holdup.json");
  const up = await startUpstream(ok);
  await writeFile(file, JSON.stringify({ upstreams: [up.url] }));
  const proxy = await startProxy(["-c", file]);
  try {
    const r = await proxy.admin("POST", "/reload", { upstreams: ["http://127.0.0.1:1"], tryDuration: "3x" });
    assert.equal(r.status, 400);
    const body = await r.json();
    assert.deepEqual(body.errors.map((e: { field: string }) => e.field), ["tryDuration"]);
    const bad = await proxy.admin("POST", "/reload", "{not json", { "content-type": "application/json" });
    assert.equal(bad.status, 400);
    let s = await proxy.status();
    assert.equal(s.configVersion, 1);
    assert.deepEqual((s.config as { upstreams: string[] }).upstreams, [up.url]);

    // The same through SIGHUP: a broken file is logged and ignored.
    await writeFile(file, JSON.stringify({ upstreams: [up.url], tryIntervall: "1s" }));
    const from = proxy.lines.length;
    proxy.signal("SIGHUP");
    const line = await proxy.waitForLine("rejected reload", (l) => l.msg === "reload rejected; the old config stays", 10_000, from);
    assert.match(String(line.errors), /tryIntervall: unknown key \(did you mean "tryInterval"\?\)/);
    s = await proxy.status();
    assert.equal(s.configVersion, 1);
    assert.equal((await fetch(proxy.url + "/still-works")).status, 200);

    // Empty body = re-read the file; a fixed file applies.
    await writeFile(file, JSON.stringify({ upstreams: [up.url], tryInterval: "1s" }));
    const fixed = await proxy.admin("POST", "/reload");
    assert.equal(fixed.status, 200);
    const st = await fixed.json();
    assert.equal(st.configVersion, 2);
    assert.equal(st.config.tryInterval, "1s");
    assert.deepEqual(st.notes, []);

    // listen changes only on restart: the rest applies, and the answer says so.
    const moved = await (await proxy.admin("POST", "/reload", { listen: "127.0.0.1:1", tryInterval: "2s" })).json();
    assert.equal(moved.configVersion, 3);
    assert.equal(moved.config.tryInterval, "2s");
    assert.equal(moved.config.listen, "127.0.0.1:0", "the running listen address stays");
    assert.match(moved.notes.join(" "), /listen 127.0.0.1:1 takes effect on restart/);
  } finally {
    await proxy.stop();
    await up.close();
    await rm(dir, { recursive: true });
  }
});

test("POST /reload with no body and no config file answers 409", async () => {
  const proxy = await startProxy(["-u", ":1"]);
  try {
    const r = await proxy.admin("POST", "/reload");
    assert.equal(r.status, 409);
    assert.match((await r.json()).errors[0].problem, /no config file/);
  } finally {
    await proxy.stop();
  }
});

test("an unreachable upstream is tried once per interval, however many requests are held", async () => {
  const dead = await freePort();
  const proxy = await startProxy(["-u", `:${dead}`, "--try-duration", "30s", "--try-interval", "200ms"]);
  try {
    const ac = new AbortController();
    const sent = fire(proxy.url, 50, ac.signal);
    await until("50 held", async () => (await proxy.status()).held === 50);
    const attempts = async () => (await proxy.status()).upstreams[0].attempts as number;
    const a0 = await attempts();
    const t0 = performance.now();
    await until("6 more probes", async () => (await attempts()) >= a0 + 6, 10_000, 50);
    const elapsed = performance.now() - t0;
    const tries = (await attempts()) - a0;
    // 50 held requests, yet one try per 200 ms interval.
    assert.ok(tries <= Math.ceil(elapsed / 200) + 1, `${tries} tries in ${elapsed}ms`);
    assert.ok(elapsed >= 5 * 200 - 50, `6 tries took only ${elapsed}ms`);
    ac.abort();
    await Promise.allSettled(sent.map((s) => s.res));
  } finally {
    await proxy.stop();
  }
});

test("past maxHeld a request is answered 503 at once; at tryDuration a held one gets 503 with Retry-After", async () => {
  const dead = await freePort();
  const proxy = await startProxy(["-u", `:${dead}`, "--try-duration", "1500ms", "--try-interval", "100ms", "--max-held", "2"]);
  try {
    const held = [fetch(proxy.url + "/a"), fetch(proxy.url + "/b")];
    await until("2 held", async () => (await proxy.status()).held === 2);
    const t0 = performance.now();
    const over = await fetch(proxy.url + "/c");
    assert.equal(over.status, 503);
    assert.equal(over.headers.get("retry-after"), "1", "delay-seconds: a full queue frees up soon");
    assert.match(await over.text(), /too many requests are waiting/);
    await proxy.waitForLine("the access log names the limit", (l) => l.status === 503 && /maxHeld 2 reached/.test(String(l.reason)));
    assert.ok(performance.now() - t0 < 1000, "answered at once");
    for (const r of await Promise.all(held)) {
      assert.equal(r.status, 503);
      assert.equal(r.headers.get("retry-after"), "5", "delay-seconds after a whole tryDuration");
      assert.ok(Number(r.headers.get("x-holdup-held-ms")) >= 1000);
      assert.match(await r.text(), /no upstream became reachable/);
    }
  } finally {
    await proxy.stop();
  }
});

test("a client that disconnects while held stops being held, is logged 499, and nothing reaches the upstream", async () => {
  const port = await freePort();
  const proxy = await startProxy(["-u", `:${port}`, "--try-duration", "30s", "--try-interval", "100ms"]);
  let up: Upstream | undefined;
  try {
    const ac = new AbortController();
    const req = fetch(proxy.url + "/gone", { method: "POST", body: "x", signal: ac.signal }).catch((e) => e);
    await until("1 held", async () => (await proxy.status()).held === 1);
    ac.abort();
    await req;
    await until("0 held", async () => (await proxy.status()).held === 0);
    const line = await proxy.waitForLine("499 access line", (l) => l.msg === "request" && l.status === 499);
    assert.equal(line.path, "/gone");
    up = await startUpstream(ok, port);
    // Prove the upstream is reachable through the proxy, and saw only that request.
    assert.equal((await fetch(proxy.url + "/after")).status, 200);
    assert.deepEqual(up.received.map((r) => r.url), ["/after"]);
  } finally {
    await proxy.stop();
    await up?.close();
  }
});

test("with healthPath, requests wait until GET healthPath answers 2xx", async () => {
  let ready = false;
  const up = await startUpstream((req, res) => {
    if (req.url === "/up") {
      res.writeHead(ready ? 200 : 503);
      return res.end();
    }
    res.end("app");
  });
  const proxy = await startProxy(["-u", up.url, "--health-path", "/up", "--try-interval", "100ms"]);
  try {
    const res = fetch(proxy.url + "/page").then(async (r) => ({ status: r.status, text: await r.text() }));
    await until("1 held", async () => (await proxy.status()).held === 1);
    await until("two health checks", () => up.received.filter((r) => r.url === "/up").length >= 2);
    assert.equal(up.received.filter((r) => r.url === "/page").length, 0, "not sent before ready");
    const s = await proxy.status();
    assert.match(String(s.upstreams[0].lastError), /answered 503/);
    ready = true;
    assert.deepEqual(await res, { status: 200, text: "app" });
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a body larger than maxBodyBuffer waits unread and is sent once when the upstream is up", async () => {
  const port = await freePort();
  const proxy = await startProxy(["-u", `:${port}`, "--max-body-buffer", "64KiB", "--try-interval", "100ms"]);
  let up: Upstream | undefined;
  try {
    const big = randomBytes(300 * 1024);
    const res = fetch(proxy.url + "/upload", { method: "PUT", body: big });
    await until("1 held", async () => (await proxy.status()).held === 1);
    up = await startUpstream((_req, res, body) => res.end(String(body.length)), port);
    const r = await res;
    assert.equal(r.status, 200);
    assert.equal(await r.text(), String(big.length));
    assert.equal(up.received.length, 1);
    assert.ok(up.received[0].body.equals(big));
  } finally {
    await proxy.stop();
    await up?.close();
  }
});

test("a POST that reached the upstream is never resent; a GET is, every tryInterval until tryDuration", async () => {
  // Reads each request, then drops the connection without answering.
  const up = await startUpstream((req) => req.socket.destroy());
  const proxy = await startProxy(["-u", up.url, "--try-duration", "1s", "--try-interval", "100ms"]);
  try {
    const post = await fetch(proxy.url + "/pay", { method: "POST", body: "once" });
    assert.equal(post.status, 502);
    assert.equal(up.received.filter((r) => r.url === "/pay").length, 1);
    const get = await fetch(proxy.url + "/read");
    assert.equal(get.status, 502);
    // Sent, resent at once, then once per tryInterval while held: at most 2 + 1s / 100ms.
    const n = up.received.filter((r) => r.url === "/read").length;
    assert.ok(n >= 4 && n <= 12, `GET sent ${n} times`);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a streamed body (past maxBodyBuffer) whose kept-alive upstream connection dies before answering gets 502 at once, sent once", async () => {
  // Deno's client, left alone, retried such a request on a new connection with nothing to send: no answer until responseTimeout.
  const up = await startUpstream((req, res) => {
    if (req.url === "/warm") return void res.end("warm");
    req.socket.destroy(); // read it, then died before answering
  });
  const proxy = await startProxy(["-u", up.url, "--max-body-buffer", "1KiB", "--response-timeout", "20s"]);
  try {
    assert.equal((await fetch(proxy.url + "/warm")).status, 200); // leaves a kept-alive upstream connection for the next
    const r = await fetch(proxy.url + "/upload", { method: "POST", body: randomBytes(8 * 1024) });
    assert.equal(r.status, 502);
    assert.equal((await fetch(proxy.url + "/warm")).status, 200);
    assert.deepEqual(up.received.map((q) => q.url), ["/warm", "/upload", "/warm"], "sent once");
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("no response head within responseTimeout answers 504, and is not resent", async () => {
  const up = await startUpstream(() => {/* never answers */});
  const proxy = await startProxy(["-u", up.url, "--response-timeout", "300ms"]);
  try {
    const r = await fetch(proxy.url + "/slow");
    assert.equal(r.status, 504);
    const text = await r.text();
    assert.match(text, /no response in time/);
    // The client is told what happened, not where: no upstream URL or port (those go to the log).
    assert.doesNotMatch(text, new RegExp(`127\\.0\\.0\\.1|${new URL(up.url).port}`));
    await proxy.waitForLine("the log has the detail", (l) => l.status === 504 && /no response head within 300ms/.test(String(l.reason)));
    assert.equal(up.received.length, 1);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a flapping upstream never receives a POST twice, even one it read and then died before answering", async () => {
  const port = await freePort();
  const seen = new Map<string, number>();
  // Counts each POST when it has read it, answers a few ms later: an upstream that goes down in
  // between has handled a request its client will not get an answer for — the case a resend would repeat.
  const handler = (_req: unknown, res: { end(s: string): void }, body: Buffer) => {
    const id = JSON.parse(body.toString()).id as string;
    seen.set(id, (seen.get(id) ?? 0) + 1);
    setTimeout(() => res.end(id), 2 + Math.random() * 20);
  };
  const proxy = await startProxy(["-u", `:${port}`, "--try-duration", "20s", "--try-interval", "50ms"]);
  const DOWNS = 8;
  let downs = 0;
  let last: Upstream | null = null;
  // Up ~200 ms, down ~200 ms, cutting open connections each time it goes down, DOWNS times; then up
  // for good, so that the requests held by the last outage are answered.
  const flapper = (async () => {
    while (downs < DOWNS) {
      const u = await startUpstream(handler, port);
      await new Promise((r) => setTimeout(r, 150 + Math.random() * 100));
      await u.close();
      downs++;
      await new Promise((r) => setTimeout(r, 150 + Math.random() * 100));
    }
    last = await startUpstream(handler, port);
  })();
  try {
    const ok: string[] = [];
    const failed: string[] = [];
    const statuses = new Map<number, number>();
    let n = 0;
    // 20 clients, each posting one order after another, until the upstream has gone down DOWNS times.
    await Promise.all(Array.from({ length: 20 }, async () => {
      while (downs < DOWNS) {
        const id = `id-${n++}`;
        const r = await fetch(proxy.url + "/order", { method: "POST", body: JSON.stringify({ id }) });
        const text = await r.text();
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 200) {
          assert.equal(text, id);
          ok.push(id);
        } else failed.push(id);
      }
    }));
    await flapper;
    const summary = `${n} sent: ${JSON.stringify([...statuses])}`;
    for (const [id, k] of seen) assert.equal(k, 1, `${id} received ${k} times (${summary})`);
    for (const id of ok) assert.equal(seen.get(id), 1, `${id} answered 200 but received ${seen.get(id) ?? 0} times`);
    // The dangerous path ran: the app handled some requests whose clients got no answer from it.
    const handledButFailed = failed.filter((id) => seen.has(id));
    assert.ok(handledButFailed.length > 0, `no request was handled by the upstream and then cut (${summary})`);
    assert.ok(ok.length >= n / 4, `only ${ok.length} got through (${summary})`);
  } finally {
    downs = DOWNS;
    await flapper;
    await proxy.stop();
    await (last as Upstream | null)?.close();
  }
});

test("a hold longer than Bun's 10 s idle timeout is not cut", async () => {
  const port = await freePort();
  const proxy = await startProxy(["-u", `:${port}`, "--try-duration", "30s", "--try-interval", "100ms"]);
  let up: Upstream | undefined;
  try {
    const res = fetch(proxy.url + "/long").then(async (r) => ({ status: r.status, text: await r.text() }));
    await until("1 held", async () => (await proxy.status()).held === 1);
    // Time itself is what is tested here: the request must still be held after 11 s.
    await new Promise((r) => setTimeout(r, 11_000));
    assert.equal((await proxy.status()).held, 1, `still held on ${RUNTIME}`);
    up = await startUpstream(ok, port);
    assert.deepEqual(await res, { status: 200, text: "ok" });
  } finally {
    await proxy.stop();
    await up?.close();
  }
});

test("released requests go out in waves: at most 256 in flight to the upstream at once", async () => {
  const port = await freePort();
  const proxy = await startProxy(["-u", `:${port}`, "--try-interval", "100ms"]);
  let up: Upstream | undefined;
  try {
    const n = 300;
    // Raw sockets: Bun's fetch() itself caps concurrent connections at 256.
    const sent = Array.from({ length: n }, (_, i) => rawRequest(proxy.port, `GET /wave/${i} HTTP/1.1\nHost: t\nConnection: close`));
    await until(`${n} held`, async () => (await proxy.status()).held === n, 20_000);
    let active = 0, peak = 0;
    up = await startUpstream((_req, res) => {
      peak = Math.max(peak, ++active);
      setTimeout(() => {
        active--;
        res.end("ok");
      }, 30);
    }, port);
    const results = await Promise.all(sent);
    assert.deepEqual(results.filter((r) => r.status !== 200 || r.body.toString() !== "ok").length, 0);
    assert.equal(up.received.length, n, "each request delivered once");
    assert.equal(new Set(up.received.map((r) => r.url)).size, n);
    assert.ok(peak <= 256, `${peak} in flight at once`);
    assert.ok(peak >= 2, "released concurrently, not one by one");
  } finally {
    await proxy.stop();
    await up?.close();
  }
});
