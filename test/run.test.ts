/**
 * holdup running the app itself (`holdup -- COMMAND`): start, zero-downtime
 * restart, a failed restart, crash recovery, idle stop, the waiting page, and
 * no orphan process even when holdup is killed with SIGKILL. The apps are real
 * processes: Python's http.server and test/fixtures/app.py.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { parseCli } from "../src/cli/flags.ts";
import { defaultLayer, resolve } from "../src/config/layers.ts";
import { type LogLine, type Proxy, ROOT, run, RUNTIME, startProxy, until, alive } from "./helpers.ts";
import { assertOk, load, withDir } from "./load-helpers.ts";
import { open } from "./ws-helpers.ts";

const APP = join(ROOT, "test/fixtures/app.py");


async function appStatus(p: Proxy): Promise<Record<string, any>> {
  return (await p.status()).app as Record<string, any>;
}

/** Waits until instance `id` serves; returns its pid. */
async function serving(p: Proxy, id: number, ms = 20_000): Promise<number> {
  const line = await p.waitForLine(`app instance #${id} serving`, (l) => l.msg === "app instance serving" && l.instance === id, ms);
  return line.pid as number;
}

async function get(url: string, headers: Record<string, string> = {}) {
  const started = performance.now();
  const r = await fetch(url, { headers });
  const text = await r.text();
  return { status: r.status, text, ms: performance.now() - started, held: Number(r.headers.get("x-holdup-held-ms")), headers: r.headers };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Each request was answered by the instance serving when it was sent, or a newer one. */
function assertNoStaleAnswers(results: Array<{ sentAt: number; pid: number | null }>, servingLines: LogLine[]) {
  const order = servingLines.map((l) => ({ pid: l.pid as number, id: l.instance as number, at: Date.parse(String(l.time)) }));
  const idOf = new Map(order.map((o) => [o.pid, o.id]));
  for (const r of results) {
    // 100 ms of slack between the test's clock reading and holdup's log time stamp.
    const current = order.filter((o) => o.at + 100 < r.sentAt).pop();
    if (!current || r.pid === null) continue;
    const id = idOf.get(r.pid);
    assert.ok(id !== undefined && id >= current.id, `a request sent while #${current.id} served was answered by pid ${r.pid} (#${id})`);
  }
}

test("flags: everything after -- is the app; --idle-stop needs one; -u cannot be combined with it", () => {
  const cli = parseCli(["--listen", ":9000", "--idle-stop", "5m", "--", "python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]);
  assert.equal(cli.kind, "run");
  if (cli.kind !== "run") return;
  const r = resolve([defaultLayer({ stderrIsTTY: false }), cli.flags!]);
  assert.ok("effective" in r);
  if (!("effective" in r)) return;
  assert.deepEqual(r.effective.config.run?.command, ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]);
  assert.equal(r.effective.config.run?.idleStop, 300_000);
  assert.equal(r.effective.config.run?.readyTimeout, 60_000);
  assert.equal(r.effective.config.run?.stopSignal, "SIGTERM");

  const noApp = parseCli(["--idle-stop", "5m"]);
  assert.equal(noApp.kind, "run");
  if (noApp.kind !== "run") return;
  const e1 = resolve([defaultLayer({ stderrIsTTY: false }), noApp.flags!]);
  assert.ok("errors" in e1 && e1.errors[0].field === "run.command", JSON.stringify(e1));

  const both = parseCli(["-u", ":8003", "--", "app"]);
  if (both.kind !== "run") return assert.fail("parsed");
  const e2 = resolve([defaultLayer({ stderrIsTTY: false }), both.flags!]);
  assert.ok("errors" in e2 && e2.errors[0].field === "upstreams", JSON.stringify(e2));

  assert.equal(parseCli(["--"]).kind, "error");
});

test("holdup -- python3 -m http.server {port}: a request sent before the app is ready is held, then served", async () => {
  const p = await startProxy(["--", "python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]);
  try {
    // holdup logs "started" before the app is ready: this request is held.
    const r = await get(p.url + "/");
    assert.equal(r.status, 200, r.text);
    assert.match(r.text, /Directory listing/);
    assert.ok(r.held > 0, `held ${r.held} ms`);
    const pid = await serving(p, 1);
    // The app's output comes out as JSON events naming the instance.
    await p.waitForLine("app output", (l) => l.msg === "app output" && l.instance === 1 && /Serving HTTP/.test(String(l.line)));
    const app = await appStatus(p);
    assert.equal(app.instance, 1);
    assert.equal(app.pid, pid);
    assert.ok(alive(pid));
    await p.stop();
    assert.equal(await p.exited, 0);
    assert.equal(alive(pid), false, "SIGTERM to holdup stops the app");
  } finally {
    await p.stop();
  }
});

test("restart under load (50 clients for 5 s, two SIGHUPs): every request 2xx, none answered by a replaced instance, no orphans", async () => {
  const p = await startProxy(["--", "python3", APP, "{port}"]);
  let l: ReturnType<typeof load> | undefined;
  try {
    const pid1 = await serving(p, 1);
    l = load(p.url, 50);
    const t0 = Date.now();
    await sleep(500);
    p.signal("SIGHUP");
    const pid2 = await serving(p, 2);
    await sleep(300);
    p.signal("SIGHUP");
    const pid3 = await serving(p, 3);
    await sleep(Math.max(300, 5000 - (Date.now() - t0)));
    const results = await l.stop();
    assertOk(results, 101);
    assert.ok(results.some((r) => r.pid === pid3), "the last instance answered");
    assertNoStaleAnswers(results, p.lines.filter((x) => x.msg === "app instance serving"));
    await until("the replaced instances to be gone", () => !alive(pid1) && !alive(pid2), 15_000);
    assert.ok(alive(pid3));
    const app = await appStatus(p);
    assert.equal(app.instance, 3);
    assert.equal(app.restarts, 2);
    const max = Math.max(...results.map((r) => r.ms));
    console.log(`restart under load: ${results.length} requests, 0 failed, longest ${Math.round(max)} ms`);
  } finally {
    await l?.stop();
    await p.stop();
  }
});

test("a restart whose new instance exits at once: the old one keeps serving, and the failure is reported", async () => {
  await withDir(async (dir) => {
    const flag = join(dir, "broken");
    const p = await startProxy(["--", "python3", APP, "{port}", "--fail-if", flag]);
    try {
      const pid1 = await serving(p, 1);
      await writeFile(flag, "");
      const r = await p.admin("POST", "/restart");
      assert.equal(r.status, 502);
      const body = await r.json();
      assert.match(body.error, /restart failed: new instance #2: it exited \(exit code 3\) before it was ready; instance #1 keeps serving/);
      await p.waitForLine("restart failed log", (l) => l.msg === "restart failed; the old instance keeps serving");
      const after = await get(p.url + "/");
      assert.equal(after.status, 200);
      assert.equal(JSON.parse(after.text).pid, pid1);
      const app = await appStatus(p);
      assert.equal(app.instance, 1);
      assert.equal(app.failedRestarts, 1);
      assert.match(String(app.lastError), /exit code 3/);
      assert.equal(app.lastExit.code, 3);
      // Fixed: the next restart goes through.
      await rm(flag);
      const ok = await p.admin("POST", "/restart");
      assert.equal(ok.status, 200, await ok.clone().text());
      assert.equal((await ok.json()).restarted.instance, 3);
    } finally {
      await p.stop();
    }
  });
});

test("the app crashes (kill -9) while requests arrive: they are held and answered by the restarted app", async () => {
  const p = await startProxy(["--", "python3", APP, "{port}"]);
  let l: ReturnType<typeof load> | undefined;
  try {
    const pid1 = await serving(p, 1);
    l = load(p.url, 5);
    await sleep(300);
    const killedAt = Date.now();
    process.kill(pid1, "SIGKILL");
    const pid2 = await serving(p, 2);
    await sleep(300);
    const results = await l.stop();
    assertOk(results, 0);
    const late = results.filter((r) => r.sentAt > killedAt + 50);
    assert.ok(late.length > 0 && late.every((r) => r.pid === pid2), "requests after the crash were answered by the new instance");
    const exitLine = await p.waitForLine("crash logged", (x) => x.msg === "app exited; holding requests while it restarts");
    assert.equal(exitLine.exit, "killed by SIGKILL");
    const app = await appStatus(p);
    assert.equal(app.pid, pid2);
    assert.equal(app.restarts, 1);
    assert.equal(app.lastExit.signal, "SIGKILL");
  } finally {
    await l?.stop();
    await p.stop();
  }
});

test("idle stop: the app is stopped after the idle time; the next request starts it and gets its answer", async () => {
  const p = await startProxy(["--idle-stop", "600ms", "--", "python3", APP, "{port}"]);
  try {
    const pid1 = await serving(p, 1);
    assert.equal((await get(p.url + "/a")).status, 200);
    await until("the idle app to be stopped", () => !alive(pid1), 10_000);
    assert.equal((await appStatus(p)).phase, "idle");
    const r = await get(p.url + "/b");
    assert.equal(r.status, 200, r.text);
    const answer = JSON.parse(r.text);
    assert.notEqual(answer.pid, pid1);
    assert.equal(answer.envPort, String(answer.port), "PORT is in the environment");
    assert.ok(r.held > 0);
    console.log(`cold start after idle stop: ${Math.round(r.ms)} ms`);
  } finally {
    await p.stop();
  }
});

test("idle stop: an open WebSocket is activity; the app is stopped only after it closes", async () => {
  // websocketd (one `cat` per connection) as the app holdup runs.
  const p = await startProxy(["--idle-stop", "500ms", "--", "websocketd", "--port", "{port}", "--address", "127.0.0.1", "--loglevel", "error", "cat"]);
  try {
    const pid = await serving(p, 1);
    const ws = await open(p.url.replace("http", "ws") + "/echo");
    assert.equal(await ws.echo("one"), "one");
    // Four idle times with the socket open but silent, watched every 100 ms.
    const end = performance.now() + 2000;
    while (performance.now() < end) {
      assert.equal((await appStatus(p)).phase, "running", "the app was stopped while a WebSocket was open");
      await sleep(100);
    }
    assert.ok(alive(pid));
    assert.equal(await ws.echo("still here"), "still here");
    ws.ws.close(1000, "done");
    await ws.closed;
    const closedAt = performance.now();
    await until("the idle app to be stopped", () => !alive(pid), 10_000);
    const after = performance.now() - closedAt;
    assert.ok(after >= 300, `stopped ${Math.round(after)} ms after the WebSocket closed, before the idle time`);
    console.log(`app stopped ${Math.round(after)} ms after the WebSocket closed (idleStop 500ms)`);
    assert.equal((await appStatus(p)).phase, "idle");
    // A handshake starts it again.
    const again = await open(p.url.replace("http", "ws") + "/echo");
    assert.equal(await again.echo("back"), "back");
    again.ws.close(1000);
    await again.closed;
  } finally {
    await p.stop();
  }
});

test("--waiting-page-after: a browser held that long gets a self-reloading page; an API client is just held", async () => {
  const p = await startProxy(["--waiting-page-after", "200ms", "--", "python3", APP, "{port}", "--delay", "1.5"]);
  try {
    // The page comes while the app is still starting: before its "serving" line, and held less than the API client.
    const servingSeen = () => p.lines.some((l) => l.msg === "app instance serving");
    const [page, api] = await Promise.all([
      get(p.url + "/", { accept: "text/html,*/*" }).then((r) => ({ ...r, appServing: servingSeen() })),
      get(p.url + "/api"),
    ]);
    assert.equal(page.status, 503);
    assert.match(page.text, /http-equiv="refresh"/);
    assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(page.appServing, false, `the page came after the app was serving (${Math.round(page.ms)} ms)`);
    assert.equal(api.status, 200, api.text);
    // >= 195: holdup rounds its held time, and a timer may fire a millisecond early against performance.now().
    assert.ok(page.held >= 195 && page.held < api.held, `page held ${page.held} ms, the API request ${api.held} ms`);
  } finally {
    await p.stop();
  }
});

test("SIGKILL to holdup: the app goes with it", async () => {
  const p = await startProxy(["--", "python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]);
  const pid = await serving(p, 1);
  assert.ok(alive(pid));
  p.child.kill("SIGKILL");
  await p.exited;
  const t0 = performance.now();
  await until("the app to die with holdup", () => !alive(pid), 10_000, 10);
  console.log(`app gone ${Math.round(performance.now() - t0)} ms after holdup's SIGKILL`);
});

// Runs on both runtimes: from Bun it starts the Deno that scripts/test.mjs uses (the npm package).
test("Deno without --allow-run: a one-line message naming the flag", async () => {
  const deno = RUNTIME === "deno" ? process.execPath : "node_modules/.bin/deno";
  const r = await run(deno, [
    "run", "--allow-net", "--allow-read", "--allow-env", "src/proxy.ts", "--listen", "127.0.0.1:0", "--admin", "off", "--", "true",
  ]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^holdup: running an app needs Deno's --allow-run permission.*\n$/);
});
