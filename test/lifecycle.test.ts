/**
 * The proxy process itself: SIGINT shuts down like SIGTERM (held requests
 * 503, in-flight ones finish, exit 0) and a second signal exits at once;
 * `--log text` writes readable lines; `--max-connections` caps client
 * connections (an idle one is closed to make room, a new one is refused when
 * every connection is busy). Real processes, real signals, raw sockets.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import process from "node:process";
import { Proxy, rawRequest, runtimeCommand, startProxy, startUpstream, until } from "./helpers.ts";

/** An upstream whose /slow answers only when `release()` is called; anything else at once. */
async function slowUpstream() {
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  const up = await startUpstream((req, res) => {
    if (req.url === "/slow") void released.then(() => res.end("slow done"));
    else res.end(`ok ${req.url}`);
  });
  return Object.assign(up, { release });
}

test("SIGINT: a held request gets 503 with Retry-After, an in-flight one finishes, exit 0", async () => {
  const up = await slowUpstream();
  const proxy = await startProxy(["-u", up.url]);
  try {
    const slow = fetch(proxy.url + "/slow").then(async (r) => [r.status, await r.text()]);
    await until("/slow in flight", () => up.received.some((r) => r.url === "/slow"));
    await proxy.admin("POST", "/pause");
    const held = fetch(proxy.url + "/held");
    await until("one held", async () => (await proxy.status()).held === 1);
    proxy.signal("SIGINT");
    const h = await held;
    assert.equal(h.status, 503);
    assert.equal(h.headers.get("retry-after"), "5");
    assert.match(await h.text(), /shutting down/);
    const line = await proxy.waitForLine("the shutdown line", (l) => /^shutting down/.test(l.msg));
    assert.equal(line.signal, "SIGINT");
    // Still running: it waits for the in-flight request.
    assert.equal(proxy.child.exitCode, null);
    up.release();
    assert.deepEqual(await slow, [200, "slow done"]);
    assert.equal(await proxy.exited, 0);
    assert.ok(!up.received.some((r) => r.url === "/held"), "the held request never reached the upstream");
  } finally {
    up.release();
    await proxy.stop();
    await up.close();
  }
});

test("a second signal exits at once (exit 1), without waiting for the in-flight request", async () => {
  const up = await slowUpstream();
  const proxy = await startProxy(["-u", up.url]);
  try {
    const slow = fetch(proxy.url + "/slow").then((r) => r.status, () => "cut");
    await until("/slow in flight", () => up.received.some((r) => r.url === "/slow"));
    proxy.signal("SIGINT");
    await proxy.waitForLine("the shutdown line", (l) => /^shutting down/.test(l.msg));
    assert.equal(proxy.child.exitCode, null, "the first signal waits for the in-flight request");
    proxy.signal("SIGTERM");
    assert.equal(await proxy.exited, 1);
    assert.ok(proxy.lines.some((l) => l.msg === "SIGTERM again: exiting now"), proxy.stderr);
    assert.equal(await slow, "cut", "the in-flight request was not answered: the upstream never did");
  } finally {
    up.release();
    await proxy.stop();
    await up.close();
  }
});

test("--log text: events and access lines are readable text with a time, never JSON", async () => {
  const up = await startUpstream();
  const [cmd, args] = runtimeCommand("src/proxy.ts", ["-l", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log", "text", "-u", up.url, "--try-duration", "300ms"]);
  const proxy = new Proxy(spawn(cmd, args, { env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] }));
  try {
    const TIME = String.raw`\d\d:\d\d:\d\d\.\d{3}`;
    // The request's X-Request-Id, made by holdup (none sent): a UUID.
    const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}";
    const started = await proxy.waitForLine("the start line", (l) => new RegExp(`^${TIME} holdup started `).test(l.msg), 20_000);
    proxy.port = Number(/ listen=127\.0\.0\.1:(\d+)/.exec(started.msg)![1]);
    proxy.adminPort = Number(/ admin=127\.0\.0\.1:(\d+)/.exec(started.msg)![1]);
    assert.match(started.msg, new RegExp(` upstreams=\\["${up.url.replace(/[.]/g, "\\.")}"\\]`));

    assert.equal((await rawRequest(proxy.port, "GET /hello?x=1 HTTP/1.1\nHost: a\nConnection: close")).status, 200);
    const ok = await proxy.waitForLine("the access line", (l) => l.msg.includes("/hello"));
    assert.match(ok.msg, new RegExp(`^${TIME} GET /hello\\?x=1 200 \\d+B [\\d.]+ms( held=[\\d.]+ms)? → ${up.url.replace(/[.]/g, "\\.")} id=${UUID}$`));

    // A request held until its deadline: held=…ms, and holdup (not an upstream) answered, with the reason.
    await proxy.admin("POST", "/pause");
    assert.equal((await rawRequest(proxy.port, "GET /late HTTP/1.1\nHost: a\nConnection: close")).status, 503);
    const late = await proxy.waitForLine("the 503 line", (l) => l.msg.includes("/late"));
    assert.match(late.msg, new RegExp(`^${TIME} GET /late 503 \\d+B [\\d.]+ms held=[\\d.]+ms → holdup \\(.+\\) id=${UUID}$`));
    // An event with fields: key=value.
    const paused = await proxy.waitForLine("the pause event", (l) => / paused/.test(l.msg));
    assert.match(paused.msg, new RegExp(`^${TIME} paused`));

    for (const l of proxy.lines) {
      assert.throws(() => JSON.parse(l.msg), `a JSON line in --log text: ${l.msg}`);
    }
  } finally {
    await proxy.stop();
    await up.close();
  }
});

/** A connection that has connected; `gone` resolves when it closes, `data` collects what arrived. */
async function connection(port: number) {
  const s = net.connect(port, "127.0.0.1");
  s.on("error", () => {});
  let data = "";
  s.on("data", (d) => data += d);
  const gone = new Promise<true>((r) => s.once("close", () => r(true))); // (events.once would reject on a reset)
  await once(s, "connect");
  return { s, gone, data: () => data };
}

test("--max-connections: past the cap the oldest idle connection is closed to make room; with every one busy, a new one is refused and a warning logged", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url, "--max-connections", "3"]);
  try {
    // Three idle connections (connected, no request): the fourth closes the oldest of them and is served.
    const idle: Array<Awaited<ReturnType<typeof connection>>> = [];
    for (let i = 0; i < 3; i++) {
      idle.push(await connection(proxy.port));
      await new Promise((r) => setTimeout(r, 50)); // accepted in this order: the first is the oldest
    }
    const fourth = await connection(proxy.port);
    assert.equal(await Promise.race([idle[0].gone, new Promise((r) => setTimeout(() => r(false), 5000))]), true, "the oldest idle connection was closed");
    fourth.s.write("GET /fourth HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    await fourth.gone;
    assert.match(fourth.data(), /^HTTP\/1\.1 200/);
    for (const c of idle) c.s.destroy();
    await Promise.all(idle.map((c) => c.gone));

    // Three busy connections (requests held while paused): a fourth is closed at once, unanswered.
    await proxy.admin("POST", "/pause");
    const busy: Array<Awaited<ReturnType<typeof connection>>> = [];
    for (let i = 0; i < 3; i++) {
      const c = await connection(proxy.port);
      c.s.write(`GET /busy${i} HTTP/1.1\r\nHost: a\r\n\r\n`);
      busy.push(c);
    }
    await until("three held", async () => (await proxy.status()).held === 3);
    const refused = await connection(proxy.port).catch(() => null);
    if (refused) {
      refused.s.write("GET /refused HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
      await refused.gone;
      assert.equal(refused.data(), "", "the refused connection got no answer");
    }
    const warn = await proxy.waitForLine("the warning", (l) => /connection limit reached: refusing new connections$/.test(l.msg));
    assert.equal(warn.limit, 3);
    // The busy ones were not cut: released, each gets its answer.
    await proxy.admin("POST", "/resume");
    await until("three answered", () => busy.every((c) => /^HTTP\/1\.1 200/.test(c.data())));
    assert.ok(!up.received.some((r) => r.url === "/refused"));
    for (const c of busy) c.s.destroy();
  } finally {
    await proxy.stop();
    await up.close();
  }
});
