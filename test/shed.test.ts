/**
 * A full hold (--max-held) next to a client that just left: the scenario of
 * ../shared/repro/bun-stall.mjs (issue 20, item 1), repeated, idle and under
 * two busy loops. One client leaves while held, 20 GETs are held at
 * --max-held 20, 5 more are shed, an invalid POST /reload is refused, and the
 * upstream comes up a moment later: the 20 are answered by it, the 5 get 503
 * at once, the probe sees the upstream, every time.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";
import { freePort, startProxy, startUpstream, until } from "./helpers.ts";

type Answer = { status: number; body: string; at: number };

function get(port: number, path: string): { answer: Promise<Answer> } {
  const answer = new Promise<Answer>((resolve) => {
    const q = http.request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode!, body, at: performance.now() }));
    });
    q.on("error", (e) => resolve({ status: 0, body: String(e), at: performance.now() }));
    q.end();
  });
  return { answer };
}

/**
 * One round: the repro's steps, but the upstream comes up on a fixed schedule (a moment after
 * the 5 extra GETs are sent), not after their answers: holdup may read the departed client's
 * close after some of the new requests (under load, Bun does), and then the 20th GET is shed
 * and one of the last five is held in its place — still 20 held, 5 shed.
 */
async function round(): Promise<void> {
  const upPort = await freePort();
  const proxy = await startProxy(["-u", `http://127.0.0.1:${upPort}`, "--max-held", "20", "--try-duration", "20s", "--try-interval", "250ms"]);
  let up: Awaited<ReturnType<typeof startUpstream>> | null = null;
  try {
    const t0 = performance.now();
    const gone = net.connect(proxy.port, "127.0.0.1", () => gone.write("GET /gone HTTP/1.1\r\nHost: x\r\n\r\n"));
    gone.on("error", () => {});
    await until("the first client to be held", async () => (await proxy.status()).held === 1);
    gone.destroy();
    const held = Array.from({ length: 20 }, (_, i) => get(proxy.port, `/h${i}`));
    let answered = 0;
    for (const r of held) void r.answer.then(() => answered++);
    // 20 held, or (the departed client's close read late) 19 of them held beside it and one shed.
    await until("the 20 GETs held or shed", async () => (await proxy.status()).held + answered >= 20, 15_000);
    const sentAt = performance.now();
    const over = Array.from({ length: 5 }, () => get(proxy.port, "/over"));
    const bad = await proxy.admin("POST", "/reload", { upstreams: ["not a url"] });
    assert.equal(bad.status, 400, "an invalid reload is refused");
    assert.ok(performance.now() - sentAt < 5_000, "and at once");

    // The upstream comes up 1 s after the extra GETs were sent, whatever their answers.
    await new Promise((r) => setTimeout(r, Math.max(0, sentAt + 1000 - performance.now())));
    up = await startUpstream((req, res) => res.end(`up ${req.url}`), upPort);
    const upAt = performance.now();
    const answers = await Promise.all([...held, ...over].map((r) => r.answer));
    const ok = answers.filter((a) => a.status === 200);
    const shed = answers.filter((a) => a.status === 503);
    assert.equal(ok.length, 20, `20 released: ${JSON.stringify(answers.map((a) => a.status))}`);
    assert.equal(shed.length, 5, "5 shed");
    for (const a of ok) {
      assert.match(a.body, /^up \/(h\d+|over)$/);
      assert.ok(a.at - upAt < 10_000, `released ${Math.round(a.at - upAt)} ms after the upstream came up`);
    }
    for (const a of shed) {
      assert.match(a.body, /too many requests are waiting/);
      assert.ok(a.at < upAt, "shed at once, before the upstream came up");
    }
    assert.equal(up.received.length, 20, "the upstream saw each released request once, and nothing else");
    await proxy.waitForLine("upstream reachable", (l) => l.msg === "upstream reachable");
    assert.ok(performance.now() - t0 < 20_000, "all within one tryDuration");
  } finally {
    await proxy.stop();
    await up?.close();
  }
}

/** Two processes spinning on the CPU until stopped (the machine has two cores). */
function busyLoops(): ChildProcess[] {
  return [0, 1].map(() => spawn("sh", ["-c", "while :; do :; done"], { stdio: "ignore" }));
}

test("a full hold next to a client that left, idle: 4 rounds, 20 released, 5 shed at once, every time", { timeout: 240_000 }, async () => {
  for (let i = 0; i < 4; i++) await round();
});

test("a full hold next to a client that left, under two busy loops: 4 rounds, 20 released, 5 shed at once, every time", { timeout: 240_000 }, async () => {
  const loops = busyLoops();
  try {
    for (let i = 0; i < 4; i++) await round();
  } finally {
    for (const l of loops) l.kill("SIGKILL");
  }
});
