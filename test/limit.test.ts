/**
 * The concurrency cap (--max-concurrent, --slow-start): at most N requests in
 * flight to an upstream, the rest in a FIFO line shown in /status; and
 * `python3 -m http.server` (backlog 5, a connection per request) behind it
 * with 50 clients, where without the cap dropped SYNs make a tail of seconds.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canConnect, freePort, startProxy, startUpstream, until } from "./helpers.ts";

function get(port: number, path: string): Promise<{ status: number; text: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString(), ms: performance.now() - t0 }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

test("--max-concurrent 2: the app never has more than 2 requests at once; the rest wait in line, in order, shown in /status", async () => {
  let now = 0, most = 0;
  const order: string[] = [];
  const release: Array<() => void> = [];
  const up = await startUpstream((req, res) => {
    now++;
    most = Math.max(most, now);
    order.push(req.url!);
    release.push(() => {
      now--;
      res.end(`done ${req.url}`);
    });
  });
  const proxy = await startProxy(["-u", up.url, "--max-concurrent", "2", "--try-duration", "20s"]);
  try {
    const answers: Promise<{ status: number; text: string }>[] = [];
    // One after another, each in line before the next is sent, so that the order is known.
    for (let i = 0; i < 6; i++) {
      answers.push(get(proxy.port, `/r${i}`));
      if (i < 2) await until(`r${i} reached the app`, () => order.length === i + 1);
      else await until(`r${i} in line`, async () => (await proxy.status()).upstreams[0].queued === i - 1);
    }
    const status = await proxy.status();
    assert.equal(status.upstreams[0].inFlight, 2);
    assert.equal(status.held, 4, "the waiting requests count as held");
    // Let them go one at a time: each freed slot goes to the first in line.
    while (order.length < 6 || release.length) {
      await until("a request at the app", () => release.length > 0);
      release.shift()!();
    }
    for (const [i, a] of (await Promise.all(answers)).entries()) assert.equal(a.text, `done /r${i}`);
    assert.equal(most, 2);
    assert.deepEqual(order, ["/r0", "/r1", "/r2", "/r3", "/r4", "/r5"], "first come, first served");
    assert.equal((await proxy.status()).upstreams[0].queued, 0);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("--max-concurrent: a request waiting in line past tryDuration gets 503; one whose client leaves is never sent", async () => {
  const pending: Array<() => void> = [];
  const up = await startUpstream((_req, res) => pending.push(() => res.end("ok")));
  const proxy = await startProxy(["-u", up.url, "--max-concurrent", "1", "--try-duration", "1s"]);
  try {
    const first = get(proxy.port, "/first");
    await until("the first at the app", () => pending.length === 1);
    const late = await get(proxy.port, "/late");
    assert.equal(late.status, 503);
    assert.match(late.text, /busy/);
    // A client that leaves while in line.
    const gone = http.request({ host: "127.0.0.1", port: proxy.port, path: "/gone", agent: false });
    gone.on("error", () => {});
    gone.end();
    await until("/gone in line", async () => (await proxy.status()).upstreams[0].queued === 1);
    gone.destroy();
    await until("/gone left the line", async () => (await proxy.status()).upstreams[0].queued === 0);
    pending.shift()!();
    assert.equal((await first).status, 200);
    // The line moves on: the next request takes the freed slot.
    const next = get(proxy.port, "/next");
    await until("/next at the app", () => pending.length === 1);
    pending.shift()!();
    assert.equal((await next).status, 200);
    assert.equal(up.received.filter((r) => r.url === "/late" || r.url === "/gone").length, 0);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("python3 -m http.server behind --max-concurrent 4 with 50 clients: no request takes a second longer than the app's own", async () => {
  const dir = await mkdtemp(join(tmpdir(), "holdup-limit-"));
  await writeFile(join(dir, "index.txt"), "hello\n".repeat(100));
  const port = await freePort();
  const py = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", dir], { stdio: "ignore" });
  const proxy = await startProxy(["-u", `127.0.0.1:${port}`, "--max-concurrent", "4"]);
  try {
    await until("http.server listening", () => canConnect(port));
    // The app's own service time, one request at a time.
    let own = 0;
    for (let i = 0; i < 20; i++) own = Math.max(own, (await get(port, "/index.txt")).ms);
    let queued = 0, polling = true;
    const poll = (async () => {
      while (polling) {
        queued = Math.max(queued, (await proxy.status()).upstreams[0].queued as number);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const times: number[] = [];
    const started = performance.now();
    await Promise.all(Array.from({ length: 50 }, async () => {
      for (let i = 0; i < 10; i++) {
        const r = await get(proxy.port, "/index.txt");
        assert.equal(r.status, 200);
        times.push(r.ms);
      }
    }));
    polling = false;
    await poll;
    times.sort((a, b) => a - b);
    const p = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))].toFixed(0);
    console.log(`http.server behind --max-concurrent 4, 50 clients × 10: ${((performance.now() - started) / 1000).toFixed(1)} s, own max ${own.toFixed(0)} ms; p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${times[times.length - 1].toFixed(0)} ms; most queued ${queued}`);
    assert.ok(times[times.length - 1] <= own + 1000, `max ${times[times.length - 1].toFixed(0)} ms vs the app's own ${own.toFixed(0)} ms`);
    assert.ok(queued > 0, "the line showed in /status");
  } finally {
    await proxy.stop();
    py.kill();
    await rm(dir, { recursive: true, force: true });
  }
});

test("--slow-start: a newly ready upstream gets 1 request at a time at first, then up to --max-concurrent", async () => {
  const port = await freePort();
  const proxy = await startProxy(["-u", `127.0.0.1:${port}`, "--max-concurrent", "4", "--slow-start", "2s", "--try-interval", "50ms"]);
  const pending: Array<() => void> = [];
  let now = 0;
  try {
    const answers = Array.from({ length: 8 }, (_, i) => get(proxy.port, `/r${i}`));
    await until("8 held", async () => (await proxy.status()).held === 8);
    const up = await startUpstream((_req, res) => {
      now++;
      pending.push(() => {
        now--;
        res.end("ok");
      });
    }, port);
    try {
      await until("the first at the app", () => now === 1);
      const readyAt = performance.now();
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(now, 1, "one at a time right after it became ready");
      assert.equal((await proxy.status()).upstreams[0].queued, 7);
      // Past slowStart, a freed slot lets the line fill the whole cap.
      await new Promise((r) => setTimeout(r, Math.max(0, 2100 - (performance.now() - readyAt))));
      pending.shift()!();
      await until("4 at the app", () => now === 4);
      for (let released = 1; released < 8; released++) {
        await until("a request at the app", () => pending.length > 0);
        pending.shift()!();
      }
      for (const a of await Promise.all(answers)) assert.equal(a.status, 200);
    } finally {
      await up.close();
    }
  } finally {
    await proxy.stop();
  }
});
