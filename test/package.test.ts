/**
 * Getting holdup without a clone, as a user would: the npm package (npm pack →
 * npm install -g into a temporary prefix → the `holdup` command, on the Deno the
 * package brings), `deno install -g`, the compiled binary, `node dist/proxy.js`'s
 * one line, and `deno task` after `npm install`. The package is built from src/
 * into a temporary directory, so the tracked dist/ is never touched.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { canConnect, ROOT, run, startProxy, startUpstream, until } from "./helpers.ts";

const DENO = path.join(ROOT, "node_modules/.bin/deno");
const BUN = path.join(ROOT, "node_modules/.bin/bun");
const VERSION = JSON.parse(await (await import("node:fs/promises")).readFile(path.join(ROOT, "package.json"), "utf8")).version;
let dir = "";
let packed: { filename: string; files: Array<{ path: string }> };

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "holdup-pkg-"));
  const stage = path.join(dir, "stage");
  await mkdir(path.join(stage, "bin"), { recursive: true });
  for (const f of ["package.json", "LICENSE", "README.md", "bin/holdup.mjs"]) await cp(path.join(ROOT, f), path.join(stage, f));
  const built = await run("node", ["scripts/build.mjs", path.join(stage, "dist")], { timeoutMs: 60_000 });
  assert.equal(built.code, 0, built.stderr);
  // --ignore-scripts: prepack would rebuild into the stage's (absent) scripts/; it was built just above.
  const pack = await run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dir], { cwd: stage, timeoutMs: 60_000 });
  assert.equal(pack.code, 0, pack.stderr);
  packed = JSON.parse(pack.stdout)[0];
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("npm pack ships the launcher, the bundles, LICENSE and README only", () => {
  assert.deepEqual(packed.files.map((f) => f.path).sort(), ["LICENSE", "README.md", "bin/holdup.mjs", "dist/edge.js", "dist/proxy.js", "package.json"]);
});

test("npm install -g of the packed tarball gives a holdup command that runs on the Deno it brings, with no install-script warning", async () => {
  const prefix = path.join(dir, "global");
  const install = await run("npm", ["install", "-g", "--prefix", prefix, path.join(dir, packed.filename)], { timeoutMs: 180_000 });
  assert.equal(install.code, 0, install.stderr);
  assert.doesNotMatch(install.stderr, /install-scripts|allowScripts/, "no package with an install script to approve");
  const holdup = path.join(prefix, "bin/holdup");

  const v = await run(holdup, ["--version"], { env: { PATH: "/usr/bin:/bin" } }); // no deno or bun on PATH
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stdout.trim(), `holdup ${VERSION} (deno 2.9.6)`);

  // npx: npm exec of the tarball gives the same command.
  const npx = await run("npm", ["exec", "--yes", "--package", path.join(dir, packed.filename), "--", "holdup", "--version"], { cwd: dir, timeoutMs: 180_000 });
  assert.equal(npx.code, 0, npx.stderr);
  assert.equal(npx.stdout.trim(), `holdup ${VERSION} (deno 2.9.6)`);
  // bunx runs the bin with Bun when it runs it itself (bun --bun, or no node): the launcher then runs holdup in-process.
  const onBun = await run(BUN, [path.join(prefix, "lib/node_modules/holdup/bin/holdup.mjs"), "--version"]);
  assert.equal(onBun.code, 0, onBun.stderr);
  assert.equal(onBun.stdout.trim(), `holdup ${VERSION} (bun 1.4.5)`);

  // Exit statuses pass through: bad flags are 2.
  const bad = await run(holdup, ["--try-duraton", "5s"], { env: { PATH: "/usr/bin:/bin" } });
  assert.equal(bad.code, 2, bad.stderr);

  // A real app run by the installed command (needs --allow-run), then SIGTERM through the launcher.
  const p = await startProxy(["--", "python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"], {
    command: [holdup, []],
    env: { PATH: `/usr/bin:/bin` },
  });
  try {
    const res = await until("the app to answer through holdup", async () => {
      const r = await fetch(p.url + "/");
      return r.status === 200 ? r : (await r.body?.cancel(), null);
    }, 30_000, 100);
    assert.match(await res!.text(), /Directory listing/);
    p.signal("SIGTERM");
    assert.equal(await p.exited, 0, p.stderr);
    assert.ok(p.lines.some((l) => l.msg === "stopped"), "holdup itself got the SIGTERM and shut down cleanly");
    assert.equal(await canConnect(p.port), false, "nothing listens once the command has exited");
  } finally {
    await p.stop();
  }
});

test("node dist/proxy.js says in one line that holdup runs on Deno or Bun, exit 1", async () => {
  const r = await run("node", [path.join(dir, "stage/dist/proxy.js"), "--version"]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, /^holdup runs on Deno or Bun, not Node\.js: .*npm install -g holdup.*deno run -A dist\/proxy\.js.*bun dist\/proxy\.js/);
});

test("deno install -g -n holdup from a clone gives a working holdup command", async () => {
  const root = path.join(dir, "deno-root");
  const perms = ["--allow-net", "--allow-read", "--allow-env", "--allow-run", "--allow-write", "--allow-sys"];
  const r = await run(DENO, ["install", "-g", "-n", "holdup", "--root", root, ...perms, "--config", "deno.json", "src/proxy.ts"], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const PATH = `${path.dirname(await (await import("node:fs/promises")).realpath(DENO))}:/usr/bin:/bin`;
  const v = await run(path.join(root, "bin/holdup"), ["--version"], { cwd: os.tmpdir(), env: { PATH } });
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stdout.trim(), `holdup ${VERSION} (deno 2.9.6)`);
});

test("the compiled binary (npm run compile: bun build --compile) runs on its own and serves", async () => {
  const out = path.join(dir, "holdup-compiled");
  const c = await run(BUN, ["build", "--compile", "--minify-syntax", "--minify-whitespace", "src/proxy.ts", "--outfile", out], { timeoutMs: 120_000 });
  assert.equal(c.code, 0, c.stderr);
  const v = await run(out, ["--version"], { env: { PATH: "/usr/bin:/bin" } });
  assert.equal(v.stdout.trim(), `holdup ${VERSION} (bun 1.4.5)`);
  const up = await startUpstream();
  const p = await startProxy(["-u", `127.0.0.1:${up.port}`], { command: [out, []] });
  try {
    const res = await fetch(p.url + "/hello");
    assert.equal(res.status, 200);
    await res.body?.cancel();
  } finally {
    await p.stop();
    await up.close();
  }
});

test("deno task start|check|fmt|lint run deno (not node_modules/.bin/deno as a script) after npm install", async () => {
  const start = await run(DENO, ["task", "start", "--version"], { timeoutMs: 60_000 });
  assert.equal(start.code, 0, start.stderr);
  assert.equal(start.stdout.trim(), `holdup ${VERSION} (deno 2.9.6)`);
  const lint = await run(DENO, ["task", "lint"], { timeoutMs: 120_000 });
  assert.equal(lint.code, 0, lint.stderr);
  assert.match(lint.stderr, /Checked \d+ files/);
  // --check: report, do not rewrite the tree. The sources are not all deno-fmt clean, so only "it ran" is asserted.
  const fmt = await run(DENO, ["task", "fmt", "--check"], { timeoutMs: 60_000 });
  assert.doesNotMatch(fmt.stderr, /SyntaxError|Invalid or unexpected token/);
  assert.match(fmt.stderr + fmt.stdout, /Checked \d+ files?|Found \d+ not formatted/);
  const check = await run(DENO, ["task", "check"], { timeoutMs: 300_000 });
  assert.equal(check.code, 0, check.stderr);
});
