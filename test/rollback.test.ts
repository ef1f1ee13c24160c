/**
 * Automatic rollback (--rollback-window): a deploy to an upstream that answers
 * 500 to everything, or that goes down, is switched back to the upstream it
 * replaced; the deploy fails (`holdup deploy` exits 1) and says "rolled back".
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, runtimeCommand, startProxy, startUpstream, until } from "./helpers.ts";

test("--rollback-window: a deploy to an upstream answering 500 is rolled back; only the 5xx it gave before fail", async () => {
  const good = await startUpstream((_req, res) => res.end("good"));
  const bad = await startUpstream((_req, res) => {
    res.writeHead(500);
    res.end("bad");
  });
  const proxy = await startProxy(["-u", good.url, "--rollback-window", "10s"]);
  // Stopped in `finally` too: a failed assertion must not leave the loops to fail on a stopped proxy and mask it.
  let running = true;
  let load: Promise<unknown> = Promise.resolve();
  try {
    // Steady load: 4 clients, one GET after another.
    const counts = new Map<string, number>();
    load = Promise.all(Array.from({ length: 4 }, async () => {
      while (running) {
        const r = await fetch(`${proxy.url}/x`);
        const text = await r.text();
        const k = `${r.status} ${text}`;
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
    }));
    await until("traffic on the good upstream", () => good.received.length >= 10);
    const t0 = performance.now();
    const [cmd, args] = runtimeCommand("src/proxy.ts", ["deploy", "default", "--upstream", bad.url, "--admin", `127.0.0.1:${proxy.adminPort}`]);
    const deploy = await run(cmd, args, { timeoutMs: 30_000 });
    const tookMs = performance.now() - t0;
    assert.equal(deploy.code, 1, deploy.stdout + deploy.stderr);
    assert.match(deploy.stdout + deploy.stderr, /rolled back/);
    const before = good.received.length;
    await until("traffic back on the good upstream", () => good.received.length >= before + 10);
    running = false;
    await load;
    const status = await proxy.status();
    const app = (status.apps as Array<{ rolledBack?: { reason: string; to: string[] } }>)[0];
    assert.ok(app.rolledBack, "/status says it rolled back");
    assert.deepEqual(app.rolledBack.to, [good.url]);
    assert.deepEqual(status.upstreams.map((u) => u.url), [good.url]);
    const line = await proxy.waitForLine("the log says rolled back", (l) => l.msg === "rolled back");
    assert.match(String(line.reason), /of its \d+ answers were 5xx/);
    // Every failure is one of the bad upstream's own 500s, no more of them than it answered.
    const failed = [...counts].filter(([k]) => !k.startsWith("200 ")).reduce((n, [, v]) => n + v, 0);
    assert.deepEqual([...counts.keys()].filter((k) => !k.startsWith("200 ") && k !== "500 bad"), []);
    assert.ok(failed <= bad.received.length);
    console.log(`rollback: switched back ${line.afterSwitchMs} ms after the switch, deploy returned after ${tookMs.toFixed(0)} ms; the bad upstream answered ${bad.received.length}, clients got ${failed} 500s, ${counts.get("200 good")} 200s`);
  } finally {
    running = false;
    await load.catch(() => {});
    await proxy.stop();
    await good.close();
    await bad.close();
  }
});

test("--rollback-window: a deploy whose new upstream stays healthy is kept", async () => {
  const a = await startUpstream((_req, res) => res.end("a"));
  const b = await startUpstream((_req, res) => res.end("b"));
  const proxy = await startProxy(["-u", a.url, "--rollback-window", "600ms"]);
  try {
    const r = await proxy.admin("POST", "/deploy", { app: "default", upstreams: [b.url] });
    assert.equal(r.status, 200, await r.clone().text());
    for (let i = 0; i < 12; i++) assert.equal(await (await fetch(`${proxy.url}/y`)).text(), "b");
    assert.equal(((await proxy.status()).apps as Array<{ rolledBack?: unknown }>)[0].rolledBack, undefined);
  } finally {
    await proxy.stop();
    await a.close();
    await b.close();
  }
});

test("--rollback-window: a deploy whose new upstream goes down is rolled back; requests held meanwhile land on the old one", async () => {
  const a = await startUpstream((_req, res) => res.end("a"));
  const b = await startUpstream((_req, res) => res.end("b"));
  const proxy = await startProxy(["-u", a.url, "--rollback-window", "20s", "--try-interval", "50ms"]);
  try {
    const deploy = proxy.admin("POST", "/deploy", { app: "default", upstreams: [b.url] });
    await until("the deploy watches", async () =>
      ((await proxy.status()).apps as Array<{ deploying: { phase: string } | null }>)[0].deploying?.phase === "watch");
    assert.equal(await (await fetch(`${proxy.url}/z`)).text(), "b");
    await b.close();
    const answers = Array.from({ length: 5 }, () => fetch(`${proxy.url}/z`).then(async (r) => `${r.status} ${await r.text()}`));
    const r = await deploy;
    assert.equal(r.status, 502);
    const body = await r.json();
    assert.equal(body.rolledBack, true);
    assert.match(body.error, /went down/);
    assert.deepEqual(await Promise.all(answers), Array(5).fill("200 a"));
  } finally {
    await proxy.stop();
    await a.close();
  }
});

test("--rollback-window: a restart whose new instance crashes 1 s after becoming ready is rolled back to the old instance, with no failed request", async () => {
  const dir = await mkdtemp(join(tmpdir(), "holdup-rollback-"));
  const mode = join(dir, "mode");
  await writeFile(mode, "good");
  // Reads its mode at start: "crash" exits 1 s after it serves.
  await writeFile(join(dir, "app.py"), `
import http.server, os, sys, threading
mode = open(${JSON.stringify(mode)}).read().strip()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("v " + str(os.getpid())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
if mode == "crash": threading.Timer(1.0, lambda: os._exit(1)).start()
s.serve_forever()
`);
  const proxy = await startProxy(["--rollback-window", "5s", "--try-interval", "50ms", "--", "python3", join(dir, "app.py"), "{port}"]);
  let running = true;
  let load: Promise<unknown> = Promise.resolve();
  try {
    await until("the app serves", async () => (await fetch(`${proxy.url}/`).then((r) => r.status).catch(() => 0)) === 200);
    const statuses = new Map<number, number>();
    load = Promise.all(Array.from({ length: 4 }, async () => {
      while (running) {
        const r = await fetch(`${proxy.url}/x`);
        await r.text();
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      }
    }));
    await writeFile(mode, "crash");
    const r = await proxy.admin("POST", "/restart");
    const body = await r.json();
    assert.equal(r.status, 502, JSON.stringify(body));
    assert.match(body.error, /rolled back to instance #1: instance #2 exited/);
    const line = await proxy.waitForLine("rolled back", (l) => l.msg === "rolled back");
    const served = statuses.get(200) ?? 0;
    await until("requests still served", () => (statuses.get(200) ?? 0) >= served + 20);
    running = false;
    await load;
    assert.deepEqual([...statuses.keys()], [200], JSON.stringify([...statuses]));
    const app = (await proxy.status()).app as { instance: number; rolledBack: { to: number } };
    assert.equal(app.instance, 1);
    assert.equal(app.rolledBack.to, 1);
    const exit = proxy.lines.find((l) => l.msg === "app instance exited" && l.instance === 2);
    const ms = exit ? Date.parse(String(line.time)) - Date.parse(String(exit.time)) : NaN;
    console.log(`restart rollback: ${line.reason}; switched back ${ms} ms after the exit was seen; ${statuses.get(200)} requests, all 200`);
  } finally {
    running = false;
    await load.catch(() => {});
    await proxy.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
