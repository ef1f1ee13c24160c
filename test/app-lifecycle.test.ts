/**
 * holdup running the app, past the happy path (test/run.test.ts): what the app
 * forks is stopped with it; an app that ignores SIGTERM is killed after
 * stopTimeout; a crash loop backs off (0.5 s, 1 s, 2 s …); restarts asked for
 * together coalesce; a first instance that fails or is never ready makes
 * holdup exit 1. Real processes (Python, sh, sleep), real signals.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { alive, type Proxy, ROOT, startProxy, until } from "./helpers.ts";
import { withDir } from "./load-helpers.ts";

const APP = join(ROOT, "test/fixtures/app.py");

async function configFile(dir: string, run: Record<string, unknown>): Promise<string> {
  const file = join(dir, "holdup.json");
  await writeFile(file, JSON.stringify({ run }));
  return file;
}

const serving = (p: Proxy, id: number) =>
  p.waitForLine(`instance #${id} serving`, (l) => l.msg === "app instance serving" && l.instance === id, 20_000).then((l) => l.pid as number);

/**
 * An app that ignores SIGTERM (and says so on stdout), forks a child that ignores it too
 * (its pid written to argv[2]), and serves HTTP on argv[1].
 */
const STUBBORN = `
import http.server, signal, subprocess, sys
signal.signal(signal.SIGTERM, lambda *a: print("app: ignoring SIGTERM", flush=True))
child = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 1000"])
open(sys.argv[2], "w").write(str(child.pid))
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()
`;

test("stop: the app and what it forked get stopSignal, then SIGKILL after stopTimeout when they ignore it; nothing is left", async () => {
  await withDir(async (dir) => {
    const childFile = join(dir, "child.pid");
    const file = await configFile(dir, { command: ["python3", "-c", STUBBORN, "{port}", childFile], stopTimeout: "1s" });
    const p = await startProxy(["-c", file]);
    try {
      const pid = await serving(p, 1);
      const child = Number(await until("the forked child's pid", async () => (await readFile(childFile, "utf8").catch(() => "")).trim()));
      assert.ok(alive(pid) && alive(child));
      p.signal("SIGTERM");
      // In order: SIGTERM reached the app (ignored), the app was still alive then, and SIGKILL ended it.
      await p.waitForLine("the app ignoring SIGTERM", (l) => l.msg === "app output" && l.line === "app: ignoring SIGTERM");
      const stopped = await p.waitForLine("the instance stopped", (l) => l.msg === "app instance stopped", 20_000);
      assert.match(String(stopped.exit), /SIGKILL/);
      // holdup logs "stopping the app" just before it sends stopSignal; SIGKILL follows stopTimeout later.
      const stoppingAt = Date.parse(String(p.lines.find((l) => l.msg === "stopping the app")!.time));
      const after = Date.parse(String(stopped.time)) - stoppingAt;
      assert.ok(after >= 950, `the app was gone ${after} ms after holdup began stopping it: before stopTimeout (1 s)`);
      assert.equal(await p.exited, 0);
      assert.equal(alive(pid), false, "the app is gone");
      await until("the forked child to be gone", () => !alive(child), 5000);
    } finally {
      await p.stop();
    }
  });
});

test("a restart stops the old instance's forked processes too", async () => {
  await withDir(async (dir) => {
    const childFile = join(dir, "child.pid");
    // This one lets SIGTERM end it; its child (sleep) is in its process group.
    const app = `import http.server, subprocess, sys
child = subprocess.Popen(["sleep", "1000"])
open(sys.argv[2], "w").write(str(child.pid))
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()`;
    const p = await startProxy(["--", "python3", "-c", app, "{port}", childFile]);
    try {
      await serving(p, 1);
      const child1 = Number(await until("child #1", async () => (await readFile(childFile, "utf8").catch(() => "")).trim()));
      await rm(childFile);
      assert.equal((await p.admin("POST", "/restart")).status, 200);
      const child2 = Number(await until("child #2", async () => (await readFile(childFile, "utf8").catch(() => "")).trim()));
      assert.notEqual(child1, child2);
      await p.waitForLine("instance #1 stopped", (l) => l.msg === "app instance stopped" && l.instance === 1);
      await until("instance #1's child to be gone", () => !alive(child1), 5000);
      assert.ok(alive(child2), "the serving instance's child is untouched");
      await p.stop();
      await until("instance #2's child to be gone with holdup", () => !alive(child2), 5000);
    } finally {
      await p.stop();
    }
  });
});

test("crash back-off: a crash loop waits 0.5 s, 1 s, 2 s between attempts (phase backoff), holding requests; once the app starts, they are served", async () => {
  await withDir(async (dir) => {
    const flag = join(dir, "broken");
    const p = await startProxy(["--try-duration", "60s", "--", "python3", APP, "{port}", "--fail-if", flag]);
    try {
      const pid1 = await serving(p, 1);
      await writeFile(flag, ""); // every new instance now exits at once with code 3
      process.kill(pid1, "SIGKILL");
      const crash = await p.waitForLine("the crash", (l) => l.msg === "app exited; holding requests while it restarts");
      assert.equal(crash.restartInMs, 500);
      const held = fetch(p.url + "/held").then(async (r) => [r.status, JSON.parse(await r.text()).pid]);
      await until("phase backoff", async () => ((await p.status()).app as { phase: string }).phase === "backoff");
      await until("held", async () => (await p.status()).held === 1);
      // Instances #2 and #3 fail; the fix lands while #4 waits its turn.
      await p.waitForLine("#3 failed", (l) => l.msg === "app failed to start" && l.instance === 3, 20_000);
      await rm(flag);
      const pid4 = await serving(p, 4);
      const [status, pid] = await held;
      assert.deepEqual([status, pid], [200, pid4]);
      // The gaps between the crash and each start: at least 0.5 s, 1 s, 2 s (lower bounds only: load can only add).
      const at = (pred: (l: Record<string, unknown>) => boolean) => Date.parse(String(p.lines.find(pred)!.time));
      const starts = [2, 3, 4].map((id) => at((l) => l.msg === "app starting" && l.instance === id));
      const ends = [at((l) => l === crash), at((l) => l.msg === "app failed to start" && l.instance === 2), at((l) => l.msg === "app failed to start" && l.instance === 3)];
      const gaps = starts.map((s, i) => s - ends[i]);
      console.log(`crash back-off gaps: ${gaps.join(", ")} ms`);
      [500, 1000, 2000].forEach((min, i) => assert.ok(gaps[i] >= min - 50, `gap ${i + 1}: ${gaps[i]} ms < ${min} ms`));
    } finally {
      await p.stop();
    }
  });
});

test("restart coalescing: restarts asked for while one runs join one queued restart (five at once make two)", async () => {
  // A slow start (2 s) keeps the first restart running while the others arrive.
  const p = await startProxy(["--", "python3", APP, "{port}", "--delay", "2"]);
  try {
    await serving(p, 1);
    const first = p.admin("POST", "/restart").then((r) => r.json());
    await p.waitForLine("#2 starting", (l) => l.msg === "app starting" && l.instance === 2);
    const more = await Promise.all([1, 2, 3, 4].map(() => p.admin("POST", "/restart").then((r) => r.json())));
    assert.equal((await first).restarted.instance, 2);
    assert.deepEqual(more.map((b) => b.restarted.instance), [3, 3, 3, 3]);
    // Every restart asked for has answered: the instances started were #1, #2 and #3, no more.
    assert.deepEqual(p.lines.filter((l) => l.msg === "app starting").map((l) => l.instance), [1, 2, 3]);
    assert.equal(((await p.status()).app as { instance: number }).instance, 3);
  } finally {
    await p.stop();
  }
});

test("the first instance fails: holdup exits 1 saying why (an exit, or not ready within readyTimeout), and leaves no process behind", async () => {
  await withDir(async (dir) => {
    const flag = join(dir, "broken");
    await writeFile(flag, "");
    const exits = await startProxy(["--", "python3", APP, "{port}", "--fail-if", flag]);
    assert.equal(await exits.exited, 1);
    const failed = exits.lines.find((l) => l.msg === "app failed to start");
    assert.match(String(failed?.error), /exit code 3/, exits.stderr);

    const pidFile = join(dir, "never.pid");
    const file = await configFile(dir, { command: ["sh", "-c", `echo $$ > ${pidFile}; exec sleep 1000`], readyTimeout: "1s" });
    const never = await startProxy(["-c", file]);
    assert.equal(await never.exited, 1);
    assert.match(String(never.lines.find((l) => l.msg === "app failed to start")?.error), /not ready|1s|1000/, never.stderr);
    const pid = Number((await readFile(pidFile, "utf8")).trim());
    await until("the never-ready app to be gone", () => !alive(pid), 5000);
  });
});
