/**
 * `--restart serial` and `--release CMD` (run/supervisor.ts, run/release.ts):
 * an app that must never run twice (test/fixtures/single.py records its starts
 * and stops and refuses to start beside a live instance) restarted under load;
 * the release step's order, output and failure in both restart modes. Real
 * processes, real signals, 6 looping clients.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseCli } from "../src/cli/flags.ts";
import { defaultLayer, resolve } from "../src/config/layers.ts";
import { type Proxy, ROOT, startProxy, until } from "./helpers.ts";
import { assertOk, load, withDir } from "./load-helpers.ts";

const APP = join(ROOT, "test/fixtures/single.py");

const serving = (p: Proxy, id: number) =>
  p.waitForLine(`instance #${id} serving`, (l) => l.msg === "app instance serving" && l.instance === id, 30_000).then((l) => l.pid as number);

/** The app's own record: ["start 123", "release", "stop 123", …]. */
async function events(file: string): Promise<string[]> {
  return (await readFile(file, "utf8").catch(() => "")).split("\n").filter(Boolean);
}

test("flags: --restart serial and --release CMD set run.restart and run.release; bad values name the flag or key", () => {
  const cli = parseCli(["--restart", "serial", "--release", "./manage.py migrate", "--", "app", "{port}"]);
  if (cli.kind !== "run") return assert.fail(JSON.stringify(cli));
  const r = resolve([defaultLayer({ stderrIsTTY: false }), cli.flags!]);
  if (!("effective" in r)) return assert.fail(JSON.stringify(r));
  assert.equal(r.effective.config.run?.restart, "serial");
  assert.equal(r.effective.config.run?.release, "./manage.py migrate");
  const plain = parseCli(["--", "app"]);
  if (plain.kind !== "run") return assert.fail("parsed");
  const d = resolve([defaultLayer({ stderrIsTTY: false }), plain.flags!]);
  if (!("effective" in d)) return assert.fail(JSON.stringify(d));
  assert.equal(d.effective.config.run?.restart, "overlap", "overlap is the default");
  assert.equal(d.effective.config.run?.release, null);

  const bad = parseCli(["--restart", "serially", "--", "app"]);
  if (bad.kind !== "run") return assert.fail("parsed");
  const e = resolve([defaultLayer({ stderrIsTTY: false }), bad.flags!]);
  assert.ok("errors" in e && e.errors[0].field === "run.restart", JSON.stringify(e));
  const file = { source: "file" as const, label: "config file x.json", raw: { run: { command: ["app"], release: [] } } };
  const e2 = resolve([defaultLayer({ stderrIsTTY: false }), file]);
  assert.ok("errors" in e2 && e2.errors[0].field.startsWith("run.release"), JSON.stringify(e2));
});

test("serial restarts under 6 looping clients: 0 failed, the app's record shows stop → release → start, never two at once", async () => {
  await withDir(async (dir) => {
    const log = join(dir, "app.log");
    const release = `echo release >> ${log}; echo migrating the schema; sleep 0.3`;
    const p = await startProxy(["--restart", "serial", "--release", release, "--", "python3", APP, "{port}", log, join(dir, "lock")]);
    let l = load(p.url, 0);
    try {
      await serving(p, 1);
      l = load(p.url, 6);
      await until("requests answered by instance #1", () => l.results.length > 20, 20_000);
      for (let id = 2; id <= 4; id++) {
        p.signal("SIGHUP");
        await serving(p, id);
        await until("requests answered by the new instance", () => l.results.filter((r) => r.status === 200).length > 20 * id, 20_000);
      }
      const results = await l.stop();
      assertOk(results, 60);
      const record = await events(log);
      assert.ok(!record.some((e) => e.startsWith("SECOND")), `a second instance was started: ${record.join(", ")}`);
      const starts = record.filter((e) => e.startsWith("start")).map((e) => e.split(" ")[1]);
      assert.equal(starts.length, 4, record.join(", "));
      // release, start #1, then for each restart: stop the old one, release, start the new one.
      const expected = ["release", `start ${starts[0]}`];
      for (let i = 1; i < 4; i++) expected.push(`stop ${starts[i - 1]}`, "release", `start ${starts[i]}`);
      assert.deepEqual(record, expected);
      assert.ok(p.lines.some((x) => x.msg === "release output" && x.line === "[release] migrating the schema"), "release output is prefixed [release]");
      const app = (await p.status()).app as Record<string, unknown>;
      assert.equal(app.restartMode, "serial");
      assert.equal(app.restarts, 3);
      const max = Math.max(...results.map((r) => r.ms));
      const took = p.lines.filter((x) => x.msg === "app instance serving" && Number(x.instance) > 1).map((x) => x.readyMs);
      console.log(`serial restarts with a release step (0.3 s), 6 clients: ${results.length} requests, 0 failed, longest ${Math.round(max)} ms; restart took ${took.join(", ")} ms`);
    } finally {
      await l.stop();
      await p.stop();
    }
  });
});

test("serial, the release command exits 1: the app is started again, 0 failed, the failure is reported (log, /status, POST /restart 502)", async () => {
  await withDir(async (dir) => {
    const log = join(dir, "app.log");
    const flag = join(dir, "fail");
    const release = `echo release >> ${log}; if [ -e ${flag} ]; then echo 'migration failed' >&2; exit 1; fi`;
    const p = await startProxy(["--restart", "serial", "--release", release, "--", "python3", APP, "{port}", log, join(dir, "lock")]);
    let l = load(p.url, 0);
    try {
      await serving(p, 1);
      l = load(p.url, 6);
      await writeFile(flag, "");
      const r = await p.admin("POST", "/restart");
      assert.equal(r.status, 502);
      const body = await r.json();
      assert.match(body.error, /the release command failed \(exit code 1\); the app was started again as instance #2/);
      await serving(p, 2);
      await p.waitForLine("the failure logged", (x) => x.msg === "the release command failed; starting the app again");
      assert.ok(p.lines.some((x) => x.msg === "release output" && x.line === "[release] migration failed"));
      const app = (await p.status()).app as Record<string, unknown>;
      assert.equal(app.instance, 2);
      assert.equal(app.failedRestarts, 1);
      assert.match(String(app.lastError), /release command failed/);
      await until("requests answered by instance #2", () => l.results.filter((x) => x.status === 200).length > 40, 20_000);
      const results = await l.stop();
      assertOk(results, 40);
      const record = await events(log);
      assert.ok(!record.some((e) => e.startsWith("SECOND")), record.join(", "));
      assert.deepEqual(record.map((e) => e.split(" ")[0]), ["release", "start", "stop", "release", "start"]);
    } finally {
      await l.stop();
      await p.stop();
    }
  });
});

test("overlap with a release step: it runs while the old instance serves; when it exits 1 the old one keeps serving and POST /restart is 502", async () => {
  await withDir(async (dir) => {
    const log = join(dir, "app.log");
    const flag = join(dir, "fail");
    const release = ["sh", "-c", `echo release >> ${log}; [ ! -e ${flag} ]`];
    // Overlap mode: each instance needs its own lock file, or the new one would refuse to start.
    const app = ["python3", "-c", `import runpy, sys; sys.argv = [sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] + sys.argv[2]]; runpy.run_path(sys.argv[0], run_name="__main__")`, APP, "{port}", log, join(dir, "lock")];
    const cfg = join(dir, "holdup.json");
    await writeFile(cfg, JSON.stringify({ run: { command: app, release } }));
    const p = await startProxy(["-c", cfg]);
    let l = load(p.url, 0);
    try {
      const pid1 = await serving(p, 1);
      l = load(p.url, 6);
      p.signal("SIGHUP");
      const pid2 = await serving(p, 2);
      await until("instance #1 stopped", async () => (await events(log)).includes(`stop ${pid1}`), 20_000);
      // Overlap: release while #1 serves, then #2 starts, then #1 stops.
      assert.deepEqual(await events(log), ["release", `start ${pid1}`, "release", `start ${pid2}`, `stop ${pid1}`]);

      await writeFile(flag, "");
      const r = await p.admin("POST", "/restart");
      assert.equal(r.status, 502);
      assert.match((await r.json()).error, /the release command failed \(exit code 1\); instance #2 keeps serving/);
      await p.waitForLine("the failure logged", (x) => x.msg === "restart failed: the release command failed; the old instance keeps serving");
      const st = (await p.status()).app as Record<string, unknown>;
      assert.equal(st.instance, 2);
      assert.equal(st.pid, pid2);
      assert.equal(st.failedRestarts, 1);
      assert.match(String(st.lastError), /release command failed/);
      const n = l.results.length;
      await until("more requests answered", () => l.results.length > n + 20, 20_000);
      const results = await l.stop();
      assertOk(results, 40);
      assert.ok(results.slice(n).every((x) => x.pid === pid2), "the old instance kept serving");
      assert.deepEqual((await events(log)).slice(5), ["release"], "no instance was started after the failed release");
    } finally {
      await l.stop();
      await p.stop();
    }
  });
});
