/**
 * The shipped artifacts, not the sources: dist/proxy.js copied into an empty
 * folder (no node_modules), the `bun build --compile` binary, and the edge
 * entry dist/edge.js under `deno serve` / Bun's auto-serve. Each forwards a
 * request, holds one until its upstream starts, and moves a held one by reload.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { freePort, type Proxy, ROOT, run, RUNTIME, startProxy, startUpstream, until } from "./helpers.ts";
import { startPebble } from "./pebble.ts";

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "holdup-artifacts-"));
  await copyFile(join(ROOT, "dist/proxy.js"), join(dir, "proxy.js"));
  await copyFile(join(ROOT, "dist/edge.js"), join(dir, "edge.js"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Admin {
  reload(p: Proxy, body: unknown): Promise<Response>;
  held(p: Proxy): Promise<number>;
}

const adminListener: Admin = {
  reload: (p, body) => p.admin("POST", "/reload", body),
  held: async (p) => (await p.status()).held,
};

const TOKEN = "edge-test-token";
const adminMounted: Admin = {
  reload: (p, body) =>
    fetch(`${p.url}/_holdup/reload`, { method: "POST", body: JSON.stringify(body), headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" } }),
  held: async (p) =>
    (await (await fetch(`${p.url}/_holdup/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()).held,
};

/** Forward one, hold one until the upstream starts, move one held request by a reload. */
async function exercise(start: (upstream: string) => Promise<Proxy>, admin: Admin) {
  const first = await startUpstream((_q, res) => res.end("first"));
  const lateport = await freePort();
  const proxy = await start(`http://127.0.0.1:${lateport}`);
  const ups = [first];
  try {
    // Held until the upstream starts.
    const held = fetch(`${proxy.url}/held`, { method: "POST", body: "payload" }).then(async (r) => [r.status, await r.text()]);
    await until("1 held", async () => (await admin.held(proxy)) === 1);
    const late = await startUpstream((_q, res, body) => res.end(`late:${body}`), lateport);
    ups.push(late);
    assert.deepEqual(await held, [200, "late:payload"]);
    // Forwarded.
    assert.equal(await (await fetch(`${proxy.url}/plain`)).text(), "late:");
    // Held on a dead upstream, moved by a reload.
    const dead = await freePort();
    assert.equal((await admin.reload(proxy, { upstreams: [`http://127.0.0.1:${dead}`], tryInterval: "30s" })).status, 200);
    const moved = fetch(`${proxy.url}/moved`).then(async (r) => [r.status, await r.text()]);
    await until("1 held", async () => (await admin.held(proxy)) === 1);
    assert.equal((await admin.reload(proxy, { upstreams: [first.url] })).status, 200);
    assert.deepEqual(await moved, [200, "first"]);
    if (admin === adminMounted) {
      // A reload that clears the token must not open the mounted admin API.
      assert.equal((await admin.reload(proxy, { admin: { token: null } })).status, 200);
      assert.equal((await fetch(`${proxy.url}/_holdup/status`)).status, 401);
      assert.equal((await fetch(`${proxy.url}/_holdup/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 401);
    }
  } finally {
    await proxy.stop();
    for (const u of ups) await u.close();
  }
}

test(`dist/proxy.js runs alone (no node_modules) on ${RUNTIME}`, async () => {
  await exercise((upstream) => startProxy(["-u", upstream, "--try-interval", "100ms"], { entry: "proxy.js", cwd: dir }), adminListener);
});

test(`dist/edge.js serves under ${RUNTIME === "deno" ? "deno serve" : "Bun's auto-serve"}, admin API under /_holdup/`, async () => {
  const port = await freePort();
  const env = { HOLDUP_TRY_INTERVAL: "100ms", HOLDUP_ADMIN_TOKEN: TOKEN, HOLDUP_LOG: "json", PORT: String(port) };
  const command: [string, string[]] = RUNTIME === "deno"
    ? [process.execPath, ["serve", "--allow-net", "--allow-env", "--host", "127.0.0.1", "--port", String(port), "edge.js"]]
    : [process.execPath, ["edge.js"]];
  await exercise((upstream) =>
    startProxy([], { command, rawArgs: true, cwd: dir, port, env: { ...env, HOLDUP_UPSTREAMS: upstream } }), adminMounted);
});

test("dist/edge.js without HOLDUP_ADMIN_TOKEN does not mount the admin API", async () => {
  const port = await freePort();
  const up = await startUpstream((req, res) => res.end(`app saw ${req.url}`));
  const command: [string, string[]] = RUNTIME === "deno"
    ? [process.execPath, ["serve", "--allow-net", "--allow-env", "--host", "127.0.0.1", "--port", String(port), "edge.js"]]
    : [process.execPath, ["edge.js"]];
  const proxy = await startProxy([], { command, rawArgs: true, cwd: dir, port, env: { HOLDUP_UPSTREAMS: up.url, PORT: String(port) } });
  try {
    assert.equal(await (await fetch(`${proxy.url}/_holdup/status`)).text(), "app saw /_holdup/status");
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("the compiled binary (bun build --compile) behaves the same, SIGHUP included", async () => {
  const binary = join(ROOT, "dist/holdup");
  const exists = await stat(binary).then(() => true, () => false);
  if (!exists) {
    const built = await run(join(ROOT, "node_modules/.bin/bun"), ["run", "compile"], { timeoutMs: 120_000 });
    assert.equal(built.code, 0, built.stderr);
  }
  await exercise((upstream) => startProxy(["-u", upstream, "--try-interval", "100ms"], { command: [binary, []], cwd: dir }), adminListener);
  const version = await run(binary, ["--version"]);
  assert.match(version.stdout, /^holdup \d+\.\d+\.\d+ \(bun /);

  // SIGHUP re-reads the config file inside the binary too.
  const file = join(dir, "holdup.json");
  const dead = await freePort();
  await writeFile(file, JSON.stringify({ upstreams: [`:${dead}`], tryInterval: "30s" }));
  const up = await startUpstream((_q, res) => res.end("after sighup"));
  const proxy = await startProxy(["-c", file], { command: [binary, []], cwd: dir });
  try {
    const held = fetch(`${proxy.url}/x`).then(async (r) => [r.status, await r.text()]);
    await until("1 held", async () => (await proxy.status()).held === 1);
    await writeFile(file, JSON.stringify({ upstreams: [up.url], tryInterval: "30s" }));
    proxy.signal("SIGHUP");
    assert.deepEqual(await held, [200, "after sighup"]);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test(`ACME from the artifacts: dist/proxy.js alone on ${RUNTIME} and the compiled binary get a certificate from Pebble and serve it`, async () => {
  const binary = join(ROOT, "dist/holdup");
  if (!(await stat(binary).then(() => true, () => false))) {
    const built = await run(join(ROOT, "node_modules/.bin/bun"), ["run", "compile"], { timeoutMs: 120_000 });
    assert.equal(built.code, 0, built.stderr);
  }
  const script: [string, string[]] = RUNTIME === "deno"
    ? [process.execPath, ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-write", "proxy.js"]]
    : [process.execPath, ["proxy.js"]];
  const up = await startUpstream((req, res) => res.end(`upstream saw ${req.url}`));
  try {
    for (const [label, command] of [["dist/proxy.js", script], ["dist/holdup", [binary, []]]] as const) {
      const redirectPort = await freePort();
      const home = join(dir, label.replace("/", "-"));
      await run("mkdir", ["-p", home]);
      const pebble = await startPebble(home, { httpPort: redirectPort });
      const config = join(home, "holdup.json");
      await writeFile(config, JSON.stringify({
        apps: [{ name: "web", hosts: ["app.holdup.test"], upstreams: [up.url] }],
        tls: { redirectHttp: `127.0.0.1:${redirectPort}`, acme: { email: "ops@holdup.test", directory: pebble.directory, ca: pebble.tlsCert, stateDir: join(home, "state") } },
      }));
      const proxy = await startProxy(["-c", config], { command: command as [string, string[]], cwd: dir });
      try {
        await proxy.waitForLine(`${label}: certificate issued`, (l) => l.msg === "acme: certificate issued: new connections get it", 30_000);
        const root = join(home, "root.pem");
        await writeFile(root, await pebble.root());
        const r = await run("curl", ["-sS", "--cacert", root, "--resolve", `app.holdup.test:${proxy.port}:127.0.0.1`, `https://app.holdup.test:${proxy.port}/artifact`]);
        assert.equal(r.code, 0, `${label}: ${r.stderr}`);
        assert.equal(r.stdout, "upstream saw /artifact", label);
      } finally {
        await proxy.stop();
        await pebble.stop();
      }
    }
  } finally {
    await up.close();
  }
});
