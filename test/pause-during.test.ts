/**
 * `holdup pause [APP] --during -- CMD` (client.ts, during.ts): requests sent
 * while CMD runs are held and answered after it; CMD's exit status is the
 * client's; a SIGTERM to the client reaches CMD and the app is resumed still.
 * A real holdup, a real upstream, the client as a real process.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { access, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { type Proxy, ROOT, runtimeCommand, startProxy, startUpstream, until } from "./helpers.ts";

/** Starts the client; resolves its exit code and output once it exits. */
function client(args: string[]) {
  const [cmd, argv] = runtimeCommand("src/proxy.ts", args);
  const child = spawn(cmd, argv, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "", stderr = "";
  child.stdout!.on("data", (d) => stdout += d);
  child.stderr!.on("data", (d) => stderr += d);
  const done = once(child, "close").then(([code]) => ({ code: code as number | null, stdout, stderr }));
  return { child, done };
}

const exists = (f: string) => access(f).then(() => true, () => false);
const mode = async (p: Proxy) => (await p.status()).mode;

test("pause --during -- CMD: requests sent while CMD runs are held and answered after it; CMD's status is holdup's", async () => {
  const up = await startUpstream((_q, res) => res.end("served"));
  const p = await startProxy(["-u", up.url, "--try-duration", "60s"]);
  const dir = await mkdtemp(join(tmpdir(), "holdup-during-"));
  try {
    const started = join(dir, "started"), go = join(dir, "go");
    // CMD: says it runs, waits for the test's go, then exits 7.
    const c = client(["pause", "--during", "--admin", `127.0.0.1:${p.adminPort}`, "--", "sh", "-c",
      `echo migrating; : > ${started}; while [ ! -e ${go} ]; do sleep 0.02; done; exit 7`]);
    await until("CMD to run", () => exists(started), 20_000);
    assert.equal(await mode(p), "paused", "paused while CMD runs");
    const answered: number[] = [];
    const reqs = Array.from({ length: 5 }, (_, i) =>
      fetch(`${p.url}/r${i}`).then(async (r) => {
        answered.push(Date.now());
        return { status: r.status, text: await r.text() };
      }));
    await until("5 requests held", async () => (await p.status()).held === 5);
    assert.equal(answered.length, 0, "no answer while CMD runs");
    const goAt = Date.now();
    await writeFile(go, "");
    const r = await c.done;
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stdout, /^migrating\n$/, "CMD's stdout is the client's, holdup's words go to stderr");
    assert.match(r.stderr, /paused every app: paused, 0 held; running sh -c/);
    assert.match(r.stderr, /sh exited with 7; resumed every app/);
    for (const x of await Promise.all(reqs)) assert.deepEqual(x, { status: 200, text: "served" });
    assert.ok(answered.every((t) => t >= goAt), "every held request was answered after CMD ended");
    assert.equal(await mode(p), "running");
    assert.equal(up.received.filter((x) => x.url.startsWith("/r")).length, 5, "each delivered once");

    // A CMD that exits 0: exit 0; one that cannot start: 127, and still resumed.
    const ok = await client(["pause", "default", "--during", "--admin", `127.0.0.1:${p.adminPort}`, "--", "true"]).done;
    assert.equal(ok.code, 0, ok.stderr);
    const missing = await client(["pause", "--during", "--admin", `127.0.0.1:${p.adminPort}`, "--", join(dir, "no-such-program")]).done;
    assert.equal(missing.code, 127, missing.stderr);
    assert.match(missing.stderr, /cannot run/);
    assert.equal(await mode(p), "running");

    // Usage: --during without a command, a command without --during.
    const noCmd = await client(["pause", "--during", "--admin", `127.0.0.1:${p.adminPort}`]).done;
    assert.equal(noCmd.code, 2);
    const noFlag = await client(["pause", "--admin", `127.0.0.1:${p.adminPort}`, "--", "true"]).done;
    assert.equal(noFlag.code, 2);
    assert.equal(await mode(p), "running", "a usage error pauses nothing");
  } finally {
    await p.stop();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("pause --during: SIGTERM to holdup is passed on to CMD; the app is resumed and CMD's status returned", async () => {
  const up = await startUpstream((_q, res) => res.end("served"));
  const p = await startProxy(["-u", up.url, "--try-duration", "60s"]);
  const dir = await mkdtemp(join(tmpdir(), "holdup-during-"));
  try {
    const started = join(dir, "started");
    const c = client(["pause", "--during", "--admin", `127.0.0.1:${p.adminPort}`, "--", "sh", "-c",
      `trap 'echo interrupted; exit 9' TERM; : > ${started}; while :; do sleep 0.02; done`]);
    await until("CMD to run", () => exists(started), 20_000);
    const held = fetch(p.url + "/x").then((r) => r.text());
    await until("a request held", async () => (await p.status()).held === 1);
    process.kill(c.child.pid!, "SIGTERM");
    const r = await c.done;
    assert.equal(r.code, 9, r.stderr);
    assert.match(r.stdout, /interrupted/);
    assert.equal(await held, "served");
    assert.equal(await mode(p), "running");

    // A CMD that SIGTERM ends: 128+15.
    const s = join(dir, "s2");
    const c2 = client(["pause", "--during", "--admin", `127.0.0.1:${p.adminPort}`, "--", "sh", "-c", `: > ${s}; exec sleep 30`]);
    await until("CMD to run", () => exists(s), 20_000);
    await new Promise((r) => setTimeout(r, 50)); // sh has exec'd sleep by now, or SIGTERM reaches sh: 143 either way
    process.kill(c2.child.pid!, "SIGTERM");
    const r2 = await c2.done;
    assert.equal(r2.code, 143, r2.stderr);
    assert.equal(await mode(p), "running");
  } finally {
    await p.stop();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  }
});
