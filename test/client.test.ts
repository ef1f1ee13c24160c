/**
 * The command-line client against a running holdup: every subcommand, its
 * words and --json, exit codes, the token, an unreachable admin API.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { freePort, ROOT, run, runtimeCommand, startProxy, startUpstream, until } from "./helpers.ts";

const holdup = (args: string[], env: Record<string, string> = {}) => run(...runtimeCommand("src/proxy.ts", args), { env, timeoutMs: 30_000 });

test("holdup deploy, pause, resume, stop, status and reload drive a running holdup; exit codes and --json", async () => {
  const v1 = await startUpstream((_q, res) => res.end("v1"));
  const v2 = await startUpstream((req, res) => res.end(req.url === "/up" ? "ok" : "v2"));
  const proxy = await startProxy(["-u", v1.url, "--admin-token", "s3cret"]);
  const admin = ["--admin", `127.0.0.1:${proxy.adminPort}`];
  const env = { HOLDUP_ADMIN_TOKEN: "s3cret" };
  const dir = await mkdtemp(join(tmpdir(), "holdup-client-"));
  try {
    // Without the token: refused, exit 1, one line that says why.
    const denied = await holdup(["status", ...admin]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /unauthorized.*HTTP 401/);

    const st = await holdup(["status", ...admin], env);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, new RegExp(`default: running, 0 held\\n  ${v1.url}`));

    const dep = await holdup(["deploy", "default", "--upstream", v2.url, "--health-path", "/up", ...admin, "--admin-token", "s3cret"]);
    assert.equal(dep.code, 0, dep.stderr);
    assert.match(dep.stdout, new RegExp(`deployed default: now ${v2.url}`));
    assert.match(dep.stdout, /drained .*0 cut/);
    assert.equal(await (await fetch(proxy.url + "/")).text(), "v2");

    const bad = await holdup(["deploy", "default", "--upstream", `:${await freePort()}`, "--deploy-timeout", "300ms", ...admin], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /deploy of default failed: .*did not become healthy.*HTTP 422/);

    const paused = await holdup(["pause", "default", ...admin, "--json"], env);
    assert.equal(paused.code, 0);
    assert.equal(JSON.parse(paused.stdout).mode, "paused");
    assert.equal((await holdup(["resume", ...admin], env)).code, 0);
    const stop = await holdup(["stop", "--message", "Back at ten", ...admin], env);
    assert.equal(stop.code, 0);
    assert.match(stop.stdout, /stopped every app: requests get 503 "Back at ten"/);
    assert.equal((await fetch(proxy.url + "/")).status, 503);
    assert.equal((await holdup(["resume", ...admin], env)).code, 0);

    const file = join(dir, "patch.json");
    await writeFile(file, JSON.stringify({ tryInterval: "1s" }));
    const rl = await holdup(["reload", file, ...admin], env);
    assert.equal(rl.code, 0, rl.stderr);
    assert.match(rl.stdout, /reloaded: config version \d+/);
    await writeFile(file, JSON.stringify({ tryInterval: "soon" }));
    const rejected = await holdup(["reload", file, ...admin], env);
    assert.equal(rejected.code, 1);
    assert.match(rejected.stderr, /reload rejected.*tryInterval/);

    const restart = await holdup(["restart", ...admin], env);
    assert.equal(restart.code, 1, "this holdup runs no app");
    assert.match(restart.stderr, /does not run the app itself/);

    assert.equal((await holdup(["pause", "nosuchapp", ...admin], env)).code, 1);
    assert.equal((await holdup(["deploy", ...admin], env)).code, 2, "bad usage");
    assert.equal((await holdup(["status", "--bogus"], env)).code, 2);
  } finally {
    await proxy.stop();
    await v1.close();
    await v2.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("an unreachable admin API gives a one-line error and exit 1", async () => {
  const port = await freePort();
  const r = await holdup(["status", "--admin", `127.0.0.1:${port}`]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split("\n").length, 1);
  assert.match(r.stderr, new RegExp(`cannot reach the admin API at http://127.0.0.1:${port} \\(connection refused\\)`));
});

test("holdup restart starts a new instance of the app holdup runs, and says which", async () => {
  const proxy = await startProxy(["--", "python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]);
  try {
    const r = await holdup(["restart", "--admin", `127.0.0.1:${proxy.adminPort}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /restarted: instance #2 \(pid \d+\) ready after .* and serving/);
    assert.equal((await fetch(proxy.url + "/")).status, 200);
  } finally {
    await proxy.stop();
  }
});

test("holdup status --watch prints events and changes as they happen, from the dashboard's stream, and follows holdup across a restart", async () => {
  const up = await startUpstream((_q, res) => res.end("ok"));
  const proxy = await startProxy(["-u", up.url]);
  const [cmd, args] = runtimeCommand("src/proxy.ts", ["status", "--watch", "--admin", `127.0.0.1:${proxy.adminPort}`]);
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  child.stdout!.on("data", (d) => out += d);
  child.stderr!.on("data", (d) => err += d);
  let second: Awaited<ReturnType<typeof startProxy>> | null = null;
  const wait = (what: string, re: RegExp) => until(what, () => re.test(out)).catch((e) => assert.fail(`${e.message}\nstdout:\n${out}\nstderr:\n${err}`));
  try {
    await wait("the first status", /default: running, 0 held/);
    assert.equal((await proxy.admin("POST", "/pause")).status, 200);
    await wait("the pause event", /paused: new requests are held/);
    await wait("the new mode", /default: paused/);
    // holdup restarts on the same admin port: the watch says so, reconnects, and loses no event from meanwhile.
    await proxy.stop();
    await wait("the watch to notice", /holdup went away; reconnecting/);
    second = await startProxy(["-u", up.url, "--admin", `127.0.0.1:${proxy.adminPort}`]);
    assert.equal((await second.admin("POST", "/stop", { message: "back soon" })).status, 200);
    await wait("the reconnect", /reconnected/);
    await wait("the stop event of the new holdup", /stopped: answering every request 503/);
    await wait("its mode", /default: stopped/);
  } finally {
    child.kill("SIGKILL");
    await proxy.stop();
    await second?.stop();
    await up.close();
  }
});

test("the client from dist/proxy.js (alone in an empty folder) and from the compiled binary: a deploy and a status", async () => {
  const binary = join(ROOT, "dist/holdup");
  if (!(await stat(binary).then(() => true, () => false))) {
    const built = await run(join(ROOT, "node_modules/.bin/bun"), ["run", "compile"], { timeoutMs: 120_000 });
    assert.equal(built.code, 0, built.stderr);
  }
  const dir = await mkdtemp(join(tmpdir(), "holdup-client-dist-"));
  await copyFile(join(ROOT, "dist/proxy.js"), join(dir, "proxy.js"));
  const [cmd, pre] = runtimeCommand(join(dir, "proxy.js"), []);
  const v1 = await startUpstream((_q, res) => res.end("v1"));
  const v2 = await startUpstream((_q, res) => res.end("v2"));
  const proxy = await startProxy(["-u", v1.url]);
  const admin = ["--admin", `127.0.0.1:${proxy.adminPort}`];
  try {
    for (const [label, client, args, target] of [
      ["dist/proxy.js", cmd, pre, v2.url],
      ["dist/holdup", binary, [], v1.url],
    ] as const) {
      const dep = await run(client, [...args, "deploy", "default", "-u", target, ...admin], { cwd: dir, timeoutMs: 30_000 });
      assert.equal(dep.code, 0, `${label}: ${dep.stderr}`);
      assert.match(dep.stdout, new RegExp(`deployed default: now ${target}`), label);
      const st = await run(client, [...args, "status", "--json", ...admin], { cwd: dir, timeoutMs: 30_000 });
      assert.equal(st.code, 0, `${label}: ${st.stderr}`);
      assert.deepEqual(JSON.parse(st.stdout).config.upstreams, [target], label);
      assert.equal(await (await fetch(proxy.url + "/")).text(), target === v2.url ? "v2" : "v1", label);
    }
  } finally {
    await proxy.stop();
    await v1.close();
    await v2.close();
    await rm(dir, { recursive: true, force: true });
  }
});
