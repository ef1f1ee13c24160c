/**
 * Health checks of serving upstreams (--health-path with --health-interval,
 * --health-timeout, --unhealthy-after): a hung app — a real Python process
 * frozen with SIGSTOP — is noticed while it serves. Run by holdup, it is
 * killed and a new instance answers; as one of two upstreams, requests go to
 * the other until it answers again.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import process from "node:process";
import { parseCli } from "../src/cli/flags.ts";
import { defaultLayer, resolve, toJSON } from "../src/config/layers.ts";
import { alive, freePort, type Proxy, ROOT, startProxy, until } from "./helpers.ts";

const APP = join(ROOT, "test/fixtures/app.py");
const FAST = ["--health-path", "/up", "--health-interval", "200ms", "--health-timeout", "500ms", "--unhealthy-after", "2"];

async function get(url: string): Promise<{ status: number; pid: number | null; ms: number; text: string }> {
  const t0 = performance.now();
  const r = await fetch(url, { signal: AbortSignal.timeout(20_000) });
  const text = await r.text();
  let pid: number | null = null;
  try {
    pid = JSON.parse(text).pid;
  } catch { /* holdup's own answer */ }
  return { status: r.status, pid, ms: performance.now() - t0, text };
}

/** test/fixtures/app.py on a port of its own, started by the test (not by holdup). */
async function pythonApp(): Promise<{ url: string; pid: number; child: ChildProcess; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn("python3", [APP, String(port)], { stdio: ["ignore", "pipe", "ignore"] });
  let out = "";
  child.stdout!.on("data", (d) => out += d);
  await until("the app to listen", () => out.includes("listening"), 10_000);
  const exited = once(child, "close");
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid!, "SIGCONT");
        } catch { /* gone */ }
        child.kill("SIGKILL");
      }
      await exited;
    },
  };
}

/** Sends SIGSTOP and waits until the kernel shows the process stopped (state T in /proc/PID/stat, read through `cat`). */
async function freeze(pid: number): Promise<void> {
  process.kill(pid, "SIGSTOP");
  await until(`pid ${pid} to be stopped`, () => / T /.test(execFileSync("cat", [`/proc/${pid}/stat`], { encoding: "utf8" }).replace(/^.*\)/, ")")), 5000);
}

function upstream(p: Proxy, url: string) {
  return p.status().then((s) => s.upstreams.find((u) => u.url === url) as Record<string, unknown>);
}

test("config: healthInterval, healthTimeout, unhealthyAfter and wsIdleTimeout have defaults, flags, and clear errors", () => {
  const defaults = defaultLayer({ stderrIsTTY: false });
  const d = resolve([defaults]);
  assert.ok("effective" in d);
  assert.equal(d.effective.config.healthInterval, 5000);
  assert.equal(d.effective.config.healthTimeout, 2000);
  assert.equal(d.effective.config.unhealthyAfter, 3);
  assert.equal(d.effective.config.wsIdleTimeout, 600_000);
  assert.equal(d.effective.config.wsPingInterval, null);
  const cli = parseCli(["--health-interval", "1s", "--health-timeout", "500ms", "--unhealthy-after", "5", "--ws-idle-timeout", "off"]);
  assert.equal(cli.kind, "run");
  const r = resolve([defaults, cli.kind === "run" ? cli.flags! : defaults]);
  assert.ok("effective" in r);
  assert.equal(r.effective.config.healthInterval, 1000);
  assert.equal(r.effective.config.healthTimeout, 500);
  assert.equal(r.effective.config.unhealthyAfter, 5);
  assert.equal(r.effective.config.wsIdleTimeout, null);
  const shown = toJSON(r.effective.config);
  assert.equal(shown.healthInterval, "1s");
  assert.equal(shown.wsIdleTimeout, "off");
  const bad = resolve([defaults, { source: "file", label: "config file x.json", raw: { unhealthyAfter: 0, healthInterval: "soon", wsIdleTimeout: "10ms" } as never }]);
  assert.ok("errors" in bad);
  const fields = bad.errors.map((e) => e.field).sort();
  assert.deepEqual(fields, ["healthInterval", "unhealthyAfter", "wsIdleTimeout"]);
});

test("holdup runs the app: frozen with SIGSTOP, it is marked unhealthy, killed, and a new instance answers", async () => {
  const p = await startProxy([...FAST, "--", "python3", APP, "{port}"]);
  try {
    const first = await p.waitForLine("instance #1 serving", (l) => l.msg === "app instance serving" && l.instance === 1, 20_000);
    const pid1 = first.pid as number;
    assert.equal((await get(p.url + "/before")).pid, pid1);
    const hungAt = performance.now(), hungWall = Date.now();
    await freeze(pid1);
    // Sent right after the hang: it reaches the frozen app (or is held), and is answered by the next instance.
    const r = await get(p.url + "/after-hang");
    const hangToAnswer = performance.now() - hungAt;
    assert.equal(r.status, 200, r.text);
    assert.ok(r.pid !== null && r.pid !== pid1, `answered by pid ${r.pid} after ${Math.round(hangToAnswer)} ms, the frozen one is ${pid1}\n${p.stderr}`);
    const unhealthy = await p.waitForLine("upstream unhealthy", (l) => l.msg === "upstream unhealthy");
    assert.match(String(unhealthy.reason), /health checks failed in a row; the last: no answer to GET \/up within 500ms/);
    await p.waitForLine("the kill", (l) => l.msg === "app instance unhealthy: killing it (SIGKILL) and starting a new one" && l.pid === pid1);
    await until("the frozen pid to be gone", () => !alive(pid1), 5000);
    for (let i = 0; i < 5; i++) assert.equal((await get(p.url + `/later/${i}`)).pid, r.pid);
    const app = (await p.status()).app as Record<string, any>;
    assert.equal(app.pid, r.pid);
    assert.equal(app.unhealthyKills, 1);
    assert.equal(app.lastExit.signal, "SIGKILL");
    const second = await p.waitForLine("instance #2 serving", (l) => l.msg === "app instance serving" && l.instance === 2);
    console.log(`hang → first request answered by the new instance: ${Math.round(hangToAnswer)} ms (healthInterval 200ms, healthTimeout 500ms, unhealthyAfter 2): ` +
      `marked unhealthy after ${Date.parse(String(unhealthy.time)) - hungWall} ms, new instance ready ${second.readyMs} ms after its start (crash backoff 500 ms before it)`);
  } finally {
    await p.stop();
  }
});

test("two upstreams, one frozen with SIGSTOP: it is marked down and requests go to the other; back once it answers again", async () => {
  const a = await pythonApp();
  const b = await pythonApp();
  const p = await startProxy([...FAST, "-u", a.url, "-u", b.url, "--response-timeout", "5s"]);
  try {
    await until("both upstreams up", async () => (await p.status()).upstreams.every((u) => u.status === "up"), 10_000);
    await freeze(a.pid);
    const line = await p.waitForLine("upstream unhealthy", (l) => l.msg === "upstream unhealthy" && l.upstream === a.url);
    assert.match(String(line.reason), /no answer to GET \/up within 500ms/);
    const down = await upstream(p, a.url);
    assert.equal(down.status, "down");
    assert.equal(down.healthy, false);
    assert.equal((await upstream(p, b.url)).healthy, true);
    for (let i = 0; i < 10; i++) {
      const r = await get(p.url + `/r${i}`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.pid, b.pid, `request ${i} answered by ${r.pid}`);
    }
    process.kill(a.pid, "SIGCONT");
    await until("the thawed upstream to be up again", async () => (await upstream(p, a.url)).status === "up", 10_000);
    const pids = new Set<number | null>();
    for (let i = 0; i < 6; i++) pids.add((await get(p.url + `/again${i}`)).pid);
    assert.deepEqual([...pids].sort(), [a.pid, b.pid].sort(), "both serve again");
    assert.ok(alive(a.pid), "holdup does not kill an upstream it did not start");
  } finally {
    await p.stop();
    await a.stop();
    await b.stop();
  }
});
