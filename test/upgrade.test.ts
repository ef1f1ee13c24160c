/**
 * Self-upgrade (cli/upgrade.ts): SIGUSR2, POST /upgrade and `holdup upgrade`
 * start a new holdup from the executable on disk, which takes the ports; the
 * old one answers what it holds (following the new one's resume) and exits by
 * itself. Real processes, real signals, looping keep-alive clients.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { chmod, copyFile, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { alive, type Proxy, ROOT, run, runtimeCommand, RUNTIME, startProxy, startUpstream, until } from "./helpers.ts";
import { assertOk, load, withDir } from "./load-helpers.ts";
import { open, websocketd } from "./ws-helpers.ts";

const APP = join(ROOT, "test/fixtures/app.py");

/** The old holdup's own exit ('close' waits for stderr, which the new holdup shares). */
function exitOf(p: Proxy): Promise<number | null> {
  if (p.child.exitCode !== null) return Promise.resolve(p.child.exitCode);
  return once(p.child, "exit").then(([code]) => code as number | null);
}

async function successorPid(p: Proxy, from = 0): Promise<number> {
  const l = await p.waitForLine("upgrade: starting new holdup", (x) => String(x.msg).startsWith("upgrade: starting new holdup pid"), 10_000, from);
  return Number(String(l.msg).split(" ").pop());
}

/** Stops the new holdup (not a child of the test) and waits until it is gone. */
async function stopPid(pid: number): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, "SIGTERM");
  try {
    await until(`pid ${pid} to exit`, () => !alive(pid), 15_000);
  } catch (e) {
    process.kill(pid, "SIGKILL");
    throw e;
  }
}

const withTimeout = <T>(what: string, p: Promise<T>, ms: number): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))]);

test("SIGUSR2 under 8 looping keep-alive clients: 0 failed, the new holdup serves the same ports, the old one exits by itself", async () => {
  const up = await startUpstream();
  const p = await startProxy(["-u", up.url]);
  let next = 0;
  const oldExit = exitOf(p);
  const l = load(p.url, 8);
  try {
    await until("requests through the old holdup", () => l.results.length > 40, 20_000);
    p.signal("SIGUSR2");
    next = await successorPid(p);
    assert.notEqual(next, p.child.pid);
    await p.waitForLine("handing over", (x) => x.msg === "upgrade: new holdup serving; handing over", 30_000);
    assert.equal(await withTimeout("the old holdup's exit", oldExit, 20_000), 0);
    await p.waitForLine("the old holdup says why it exits", (x) => String(x.msg).startsWith("upgrade: old holdup exiting (answered 0 held)"));
    const at = l.results.length;
    await until("requests after the old holdup exited", () => l.results.length > at + 40, 20_000);
    const results = await l.stop();
    assertOk(results, 80);
    assert.ok(alive(next), "the new holdup runs");
    // The admin port is the new holdup's now.
    const s = await p.status();
    assert.equal(s.mode, "running");
    console.log(`self-upgrade (SIGUSR2), 8 clients: ${results.length} requests, 0 failed, longest ${Math.round(Math.max(...results.map((r) => r.ms)))} ms`);
  } finally {
    await l.stop();
    if (next) await stopPid(next);
    await p.stop();
    await up.close();
  }
});

test("paused: requests held by the old holdup are answered after a resume sent to the admin port (the new holdup's); POST /upgrade answers the new pid", async () => {
  const up = await startUpstream();
  const p = await startProxy(["-u", up.url, "--try-duration", "60s"]);
  let next = 0;
  const oldExit = exitOf(p);
  try {
    assert.equal((await p.admin("POST", "/pause")).status, 200);
    const held = Array.from({ length: 5 }, (_, i) => fetch(`${p.url}/held/${i}`).then(async (r) => ({ status: r.status, body: await r.text() })));
    await until("5 requests held by the old holdup", async () => (await p.status()).held === 5, 10_000);
    const r = await p.admin("POST", "/upgrade");
    const body = await r.json();
    assert.equal(r.status, 200, JSON.stringify(body));
    next = body.upgraded.pid;
    assert.equal(next, await successorPid(p));
    // The new holdup starts paused, as the old one was (the admin port answers for the new one now).
    assert.equal((await p.status()).mode, "paused");
    const late = fetch(`${p.url}/held/5`).then((r) => r.status);
    await until("a request held by the new holdup", async () => (await p.status()).held === 1, 10_000);
    assert.equal(up.received.filter((x) => x.url.startsWith("/held/")).length, 0, "nothing held reached the upstream before the resume");
    assert.equal((await p.admin("POST", "/resume")).status, 200);
    const answers = await withTimeout("the held requests", Promise.all(held), 10_000);
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200]);
    assert.equal(await late, 200);
    assert.equal(up.received.filter((x) => x.url.startsWith("/held/")).length, 6, "each held request went upstream once");
    assert.equal(await withTimeout("the old holdup's exit", oldExit, 20_000), 0);
    await p.waitForLine("the old holdup counts what it held", (x) => String(x.msg).startsWith("upgrade: old holdup exiting (answered 5 held)"));
  } finally {
    if (next) await stopPid(next);
    await p.stop();
    await up.close();
  }
});

test("the old holdup follows the new one's reload: its held requests go to the upstream named by POST /reload on the new admin port", async () => {
  const up1 = await startUpstream();
  const up2 = await startUpstream();
  const p = await startProxy(["-u", up1.url, "--try-duration", "60s"]);
  let next = 0;
  const oldExit = exitOf(p);
  try {
    assert.equal((await p.admin("POST", "/pause")).status, 200);
    const held = Array.from({ length: 3 }, (_, i) => fetch(`${p.url}/moved/${i}`).then((r) => r.status));
    await until("3 requests held by the old holdup", async () => (await p.status()).held === 3, 10_000);
    const r = await p.admin("POST", "/upgrade");
    assert.equal(r.status, 200);
    next = (await r.json()).upgraded.pid;
    const reload = await p.admin("POST", "/reload", { upstreams: [up2.url] });
    assert.equal(reload.status, 200, await reload.text());
    assert.equal((await p.admin("POST", "/resume")).status, 200);
    assert.deepEqual(await withTimeout("the held requests", Promise.all(held), 10_000), [200, 200, 200]);
    assert.equal(up2.received.filter((x) => x.url.startsWith("/moved/")).length, 3, "the old holdup's held requests went to the new upstream");
    assert.equal(up1.received.filter((x) => x.url.startsWith("/moved/")).length, 0);
    assert.equal(await withTimeout("the old holdup's exit", oldExit, 20_000), 0);
  } finally {
    if (next) await stopPid(next);
    await p.stop();
    await up1.close();
    await up2.close();
  }
});

test("holdup upgrade: a new holdup that cannot start (its config file now invalid) leaves the old one serving, exit 1; fixed, exit 0", async () => {
  await withDir(async (dir) => {
    const up = await startUpstream();
    const file = join(dir, "holdup.json");
    await writeFile(file, JSON.stringify({ upstreams: [up.url] }));
    const p = await startProxy(["-c", file]);
    let next = 0;
    const client = (args: string[]) => {
      const [cmd, argv] = runtimeCommand(join(ROOT, "src/proxy.ts"), [...args, "--admin", `127.0.0.1:${p.adminPort}`]);
      return run(cmd, argv, { timeoutMs: 60_000 });
    };
    try {
      await writeFile(file, "{ not json");
      const bad = await client(["upgrade"]);
      assert.equal(bad.code, 1, bad.stdout + bad.stderr);
      assert.match(bad.stderr, /upgrade failed; the old holdup keeps serving: upgrade failed: the new holdup exited \(code 2\)/);
      await p.waitForLine("upgrade failed", (x) => x.msg === "upgrade failed; this holdup keeps serving");
      assert.equal((await fetch(`${p.url}/still`)).status, 200, "the old holdup still serves");
      assert.equal((await p.status()).mode, "running", "and its admin API answers");

      await writeFile(file, JSON.stringify({ upstreams: [up.url] }));
      const oldExit = exitOf(p);
      const ok = await client(["upgrade"]);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      next = Number(/pid (\d+)/.exec(ok.stdout)?.[1]);
      assert.ok(next > 0 && next !== p.child.pid, ok.stdout);
      assert.equal(await withTimeout("the old holdup's exit", oldExit, 20_000), 0);
      assert.equal((await fetch(`${p.url}/after`)).status, 200, "the new holdup serves");
    } finally {
      if (next) await stopPid(next);
      await p.stop();
      await up.close();
    }
  });
});

test("-- COMMAND: the new holdup starts its own app instance; the old instance is stopped with the old holdup, none is orphaned, 0 failed", async () => {
  const p = await startProxy(["--", "python3", APP, "{port}"]);
  let next = 0;
  const oldExit = exitOf(p);
  const l = load(p.url, 4);
  try {
    const first = await p.waitForLine("instance serving", (x) => x.msg === "app instance serving", 30_000);
    const oldApp = Number(first.pid);
    await until("requests answered by the first instance", () => l.results.filter((r) => r.pid === oldApp).length > 20, 20_000);
    const from = p.lines.length;
    p.signal("SIGUSR2");
    next = await successorPid(p, from);
    const started = await p.waitForLine("the new holdup's instance", (x) => x.msg === "app instance serving" && Number(x.pid) !== oldApp, 30_000, from);
    const newApp = Number(started.pid);
    assert.equal(await withTimeout("the old holdup's exit", oldExit, 30_000), 0);
    await until("the old app instance to be gone", () => !alive(oldApp), 10_000);
    await until("requests answered by the new instance", () => l.results.filter((r) => r.pid === newApp).length > 20, 20_000);
    const results = await l.stop();
    assertOk(results, 40);
    assert.ok(alive(newApp), "the new instance runs");
    await stopPid(next);
    await until("the new app instance to stop with its holdup", () => !alive(newApp), 10_000);
  } finally {
    await l.stop();
    if (next) await stopPid(next);
    await p.stop();
  }
});

// The compiled binary is Bun's (bun build --compile): built and run once, on the Bun run.
if (RUNTIME === "bun") {
  test("the compiled binary replaced on disk: SIGUSR2 starts the new file, which serves the same port", { timeout: 240_000 }, async () => {
    await withDir(async (dir) => {
      const bin = join(dir, "holdup");
      const built = await run(join(ROOT, "node_modules/.bin/bun"), ["build", "--compile", "src/proxy.ts", "--outfile", bin], { timeoutMs: 180_000, cwd: ROOT });
      assert.equal(built.code, 0, built.stderr);
      const up = await startUpstream();
      const p = await startProxy(["-u", up.url], { command: [bin, []] });
      let next = 0;
      const oldExit = exitOf(p);
      try {
        // The new release: a wrapper that notes it ran, then runs the real binary (kept under another name).
        const real = join(dir, "holdup-real");
        const mark = join(dir, "new-binary-ran");
        await copyFile(bin, real);
        const script = join(dir, "holdup.next");
        await writeFile(script, `#!/bin/sh\necho "$$" > '${mark}'\nexec '${real}' "$@"\n`);
        await chmod(script, 0o755);
        await rename(script, bin);
        p.signal("SIGUSR2");
        next = await successorPid(p);
        assert.equal(await withTimeout("the old holdup's exit", oldExit, 30_000), 0);
        assert.equal(Number((await readFile(mark, "utf8")).trim()), next, "the new holdup is the file now on disk");
        assert.equal((await fetch(`${p.url}/after`)).status, 200);
      } finally {
        if (next) await stopPid(next);
        await p.stop();
        await up.close();
      }
    });
  });
}

/** holdup on this runtime, allowed to write (Deno: a self-upgrade passes on whole permissions only). */
const writingIn = (_dir: string): [string, string[]] | undefined =>
  RUNTIME === "deno"
    ? [process.execPath, ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-run", "--allow-write", "src/proxy.ts"]]
    : undefined;

test("--pid-file: the new holdup's pid replaces the old one's before the old one exits (systemd PIDFile= follows it); it goes at a clean exit", async () => {
  await withDir(async (dir) => {
    const file = join(dir, "holdup.pid");
    const up = await startUpstream();
    const p = await startProxy(["-u", up.url, "--pid-file", file], { command: writingIn(dir) });
    let next = 0;
    const oldExit = exitOf(p);
    try {
      assert.equal((await readFile(file, "utf8")).trim(), String(p.child.pid));
      p.signal("SIGUSR2");
      next = await successorPid(p);
      // systemd reads the file when it reaps the old main process: by then it must name the new one.
      assert.equal(await withTimeout("the old holdup's exit", oldExit, 20_000), 0);
      assert.equal(readFileSync(file, "utf8").trim(), String(next), "the pid file names the new holdup when the old one has exited");
      assert.equal((await fetch(`${p.url}/after`)).status, 200);
      await stopPid(next);
      await until("the pid file removed at the new holdup's clean exit", async () => !(await readFile(file, "utf8").then(() => true, () => false)), 10_000);
    } finally {
      if (next) await stopPid(next);
      await p.stop();
      await up.close();
    }
  });
});

test("--pid-file in a directory that does not exist: exit 1 with a line naming the flag, before serving", async () => {
  await withDir(async (dir) => {
    const file = join(dir, "missing", "holdup.pid");
    const [cmd, argv] = writingIn(dir) ?? runtimeCommand("src/proxy.ts", []);
    const r = await run(cmd, [...argv, "--listen", "127.0.0.1:0", "--admin", "off", "-u", "127.0.0.1:9", "--pid-file", file], { timeoutMs: 20_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /--pid-file .*missing\/holdup\.pid: cannot write it \(ENOENT\)/);
  });
});

test("the proxy port is bound shareable (SO_REUSEPORT) for an upgrade, yet a second holdup on it is refused, not silently shared", async () => {
  const up = await startUpstream((_q, res) => res.end("first"));
  const p = await startProxy(["-u", up.url]);
  let next = 0;
  try {
    const [cmd, args] = runtimeCommand("src/proxy.ts", ["-l", `127.0.0.1:${p.port}`, "--admin", "off", "-u", up.url]);
    const second = await run(cmd, args, { timeoutMs: 20_000 });
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${p.port} for the proxy: address already in use`));
    // And the port is shareable: an upgrade binds it beside this one.
    p.signal("SIGUSR2");
    next = await successorPid(p);
    assert.equal(await (await fetch(`${p.url}/`)).text(), "first");
  } finally {
    if (next) await stopPid(next);
    await p.stop();
    await up.close();
  }
});

test("WebSockets open through the old holdup echo until it closes them 1001 (going away) after the upgrade; their clients reconnect at once, to the new holdup", async () => {
  const up = await websocketd();
  const p = await startProxy(["-u", up.url]);
  let next = 0;
  const oldExit = exitOf(p);
  try {
    const url = `ws://127.0.0.1:${p.port}/`;
    const clients = await Promise.all(Array.from({ length: 8 }, () => open(url)));
    for (const [i, ws] of clients.entries()) assert.match(String(await ws.echo(`before ${i}`)), new RegExp(`^before ${i}\n?$`));
    p.signal("SIGUSR2");
    next = await successorPid(p);
    // Like a browser's reconnect logic: a new WebSocket as soon as the old one closes.
    const again = await Promise.all(clients.map(async (ws, i) => {
      const closed = await withTimeout("the old holdup to close a WebSocket", ws.closed, 20_000);
      const fresh = await open(url);
      return { code: closed.code, echo: String(await fresh.echo(`after ${i}`)), fresh };
    }));
    assert.deepEqual(again.map((r) => r.code), Array(8).fill(1001));
    for (const [i, r] of again.entries()) assert.match(r.echo, new RegExp(`^after ${i}\n?$`));
    assert.equal(await withTimeout("the old holdup's exit", oldExit, 20_000), 0);
    // Still open after the old holdup exited: they are the new holdup's.
    for (const [i, r] of again.entries()) assert.match(String(await r.fresh.echo(`later ${i}`)), new RegExp(`^later ${i}\n?$`));
    for (const r of again) r.fresh.ws.close();
    await Promise.all(again.map((r) => r.fresh.closed));
  } finally {
    if (next) await stopPid(next);
    await p.stop();
    await up.stop();
  }
});

test("the metrics port moves to the new holdup too (its counters start again), and the admin port with it", async () => {
  const up = await startUpstream((_q, res) => res.end("ok"));
  const p = await startProxy(["-u", up.url, "--metrics-listen", "127.0.0.1:0"]);
  let next = 0;
  const oldExit = exitOf(p);
  try {
    const metricsUrl = String(p.lines.find((l) => l.msg === "holdup started")!.metrics);
    const reloads = async () => /holdup_reloads_total\{result="ok"\} (\d+)/.exec(await (await fetch(metricsUrl)).text())?.[1];
    assert.equal((await p.admin("POST", "/reload", { upstreams: [up.url] })).status, 200);
    assert.equal(await reloads(), "1", "the old holdup counted its reload");
    p.signal("SIGUSR2");
    next = await successorPid(p);
    assert.equal(await withTimeout("the old holdup's exit", oldExit, 20_000), 0);
    assert.equal(await reloads(), "0", "the same metrics address answers from the new holdup");
    assert.equal((await p.admin("GET", "/status")).status, 200, "the admin port answers with the old holdup gone");
    assert.equal((await fetch(`${p.url}/`)).status, 200);
  } finally {
    if (next) await stopPid(next);
    await p.stop();
    await up.close();
  }
});
