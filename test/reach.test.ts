/**
 * What the admin API, the app's environment and the redirect listener can
 * reach (issue 21): a reload body cannot change the app's command; holdup's
 * own HOLDUP_* variables (the admin token, the state URL with its password)
 * stay out of the app's environment; the token can come from a file instead
 * of the command line; --redirect-http redirects only names holdup serves;
 * --allow-upstream limits what reloads and deploys may name, and link-local
 * addresses (the cloud metadata service) need it. Real processes on loopback.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { access, chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, ROOT, rawRequest, run, RUNTIME, runtimeCommand, startProxy, startRedis, startUpstream } from "./helpers.ts";

const APP = join(ROOT, "test/fixtures/app.py");
const dir = await mkdtemp(join(tmpdir(), "holdup-reach-"));
test.after?.(() => rm(dir, { recursive: true, force: true }));

const exists = (f: string) => access(f).then(() => true, () => false);

test("a reload body cannot change the app's command (400 naming run); POST /restart still starts the configured one", async () => {
  const marker = join(dir, "pwned");
  const command = ["python3", APP, "{port}"];
  const p = await startProxy(["--", ...command], { env: { HOLDUP_ADMIN_TOKEN: "" } });
  try {
    for (const body of [{ run: { command: ["sh", "-c", `touch ${marker}`] } }, { run: { env: { LD_PRELOAD: "/tmp/x.so" } } }, { run: { cwd: "/tmp" } }]) {
      const r = await p.admin("POST", "/reload", body);
      assert.equal(r.status, 400, JSON.stringify(body));
      const j = await r.json();
      assert.equal(j.errors[0].field, "run");
      assert.match(j.errors[0].problem, /only the config file or the command line can/);
    }
    const restarted = await p.admin("POST", "/restart");
    assert.equal(restarted.status, 200);
    const s = await restarted.json();
    assert.deepEqual(s.config.run.command, command);
    assert.deepEqual(s.config.run.env, {});
    assert.equal(await exists(marker), false, "the command from the reload body never ran");
    // The other keys of a reload body still work.
    assert.equal((await p.admin("POST", "/reload", { tryDuration: "9s" })).status, 200);
  } finally {
    await p.stop();
  }
});

/** An app that answers with its environment. */
const ENV_APP = [
  "python3", "-c",
  "import http.server,json,os,sys\n" +
  "class H(http.server.BaseHTTPRequestHandler):\n" +
  " def do_GET(s):\n" +
  "  b=json.dumps(dict(os.environ)).encode();s.send_response(200);s.send_header('content-length',str(len(b)));s.end_headers();s.wfile.write(b)\n" +
  "http.server.HTTPServer(('127.0.0.1',int(sys.argv[1])),H).serve_forever()",
  "{port}",
];

test("the app does not get holdup's own HOLDUP_* variables (the admin token, the state URL), unless run.env passes them on", async () => {
  const redis = await startRedis();
  const config = join(dir, "env.json");
  await writeFile(config, JSON.stringify({ run: { command: ENV_APP, env: { HOLDUP_PASSED: "on purpose", APP_SETTING: "x" } } }));
  const state = `redis://:${"s3cret"}@127.0.0.1:${redis.port}`;
  await run("redis-cli", ["-p", String(redis.port), "CONFIG", "SET", "requirepass", "s3cret"]);
  const p = await startProxy(["-c", config], { env: { HOLDUP_ADMIN_TOKEN: "admin-secret", HOLDUP_STATE: state, HOLDUP_OTHER: "y", UNRELATED: "kept" } });
  try {
    const env = await (await fetch(`${p.url}/`)).json() as Record<string, string>;
    for (const k of ["HOLDUP_ADMIN_TOKEN", "HOLDUP_STATE", "HOLDUP_OTHER", "HOLDUP_STOP_SIGNAL", "HOLDUP_STOP_TICKS"]) assert.equal(env[k], undefined, k);
    assert.doesNotMatch(JSON.stringify(env), /admin-secret|s3cret/);
    assert.equal(env.UNRELATED, "kept");
    assert.equal(env.HOLDUP_PASSED, "on purpose");
    assert.equal(env.APP_SETTING, "x");
    const s = await (await p.admin("GET", "/status", undefined, { authorization: "Bearer admin-secret" })).json();
    assert.equal(env.PORT, new URL(s.upstreams[0].url).port, "the app's own variables are still set");
  } finally {
    await p.stop();
    await redis.stop();
  }
});

test("--admin-token-file: the token comes from a file, never from the command line; a missing or empty file is named", async () => {
  const file = join(dir, "token");
  await writeFile(file, "file-token-123\n");
  await chmod(file, 0o600);
  const up = await startUpstream();
  const p = await startProxy(["-u", up.url, "--admin-token-file", file], { env: { HOLDUP_ADMIN_TOKEN: "" } });
  try {
    assert.equal((await p.admin("GET", "/status")).status, 401);
    assert.equal((await p.admin("GET", "/status", undefined, { authorization: "Bearer file-token-123" })).status, 200);
    // What every local user can read (through cat: Deno's test permissions keep /proc from the test itself).
    const cmdline = (await run("cat", [`/proc/${p.child.pid}/cmdline`])).stdout;
    assert.match(cmdline, /--admin-token-file/);
    assert.doesNotMatch(cmdline, /file-token-123/);
  } finally {
    await p.stop();
    await up.close();
  }
  const [cmd, args] = runtimeCommand("src/proxy.ts", ["--admin-token-file", join(dir, "nope")]);
  const missing = await run(cmd, args);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--admin-token-file .*nope: cannot be read \(ENOENT\)/);
  await writeFile(join(dir, "empty"), "\n");
  const [cmd2, args2] = runtimeCommand("src/proxy.ts", ["--admin-token-file", join(dir, "empty")]);
  const empty = await run(cmd2, args2);
  assert.equal(empty.code, 2);
  assert.match(empty.stderr, /--admin-token-file .*empty: is empty/);
});

/** A self-signed certificate for `names` (DNS) and 127.0.0.1. */
async function makeCert(id: string, names: string[]): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${id}.crt`), key = join(dir, `${id}.key`);
  const san = [...names.map((n) => `DNS:${n}`), "IP:127.0.0.1"].join(",");
  const r = await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
    "-days", "1", "-subj", `/CN=${names[0]}`, "-addext", `subjectAltName=${san}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return { cert, key };
}

test("--redirect-http redirects only names holdup serves (an app's host, a certificate's name); any other Host gets 404", async () => {
  const { cert, key } = await makeCert("site", ["localhost", "www.site.test"]);
  const up = await startUpstream();
  const config = join(dir, "redirect.json");
  await writeFile(config, JSON.stringify({
    apps: [{ name: "web", hosts: ["*.apps.test"], upstreams: [up.url] }, { name: "rest", upstreams: [up.url] }],
    tls: { cert, key, redirectHttp: "127.0.0.1:0" },
  }));
  const p = await startProxy(["-c", config]);
  try {
    const started = p.lines.find((l) => String(l.msg).startsWith("holdup started"))!;
    const rp = Number(String(started.redirectHttp).split(":").pop());
    const location = (r: { headers: [string, string][] }) => r.headers.find(([k]) => k.toLowerCase() === "location")?.[1];
    const get = (host: string) => rawRequest(rp, `GET /a?b=1 HTTP/1.1\nHost: ${host}\nConnection: close`);
    for (const [host, name] of [["www.site.test", "www.site.test"], ["localhost:80", "localhost"], ["x.apps.test", "x.apps.test"], ["127.0.0.1", "127.0.0.1"]]) {
      const r = await get(host);
      assert.equal(r.status, 308, host);
      assert.equal(location(r), `https://${name}:${p.port}/a?b=1`, host);
    }
    for (const host of ["evil.example", "apps.test", "site.test", "attacker.www.site.test"]) {
      const r = await get(host);
      assert.equal(r.status, 404, host);
      assert.equal(location(r), undefined, host);
    }
  } finally {
    await p.stop();
    await up.close();
  }
});

test("link-local upstreams (169.254.169.254, fe80::) are refused in reload bodies and deploys unless allowed; --allow-upstream limits them to its patterns, shared ops too", async () => {
  const up = await startUpstream();
  const p = await startProxy(["-u", up.url], { env: { HOLDUP_ADMIN_TOKEN: "" } });
  try {
    for (const body of [{ upstreams: ["http://169.254.169.254"] }, { upstreams: ["[fe80::1]:8080"] }, { apps: [{ name: "default", upstreams: ["169.254.169.254:80"] }] }]) {
      const r = await p.admin("POST", "/reload", body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(JSON.stringify(await r.json()), /"field":"(apps\[0\]\.)?upstreams","problem":"\\".*\\" is a link-local address/);
    }
    const d = await p.admin("POST", "/deploy", { app: "default", upstreams: ["http://169.254.169.254"], deployTimeout: "30s" });
    assert.equal(d.status, 400);
    assert.match((await d.json()).error, /^upstreams: "http:\/\/169\.254\.169\.254" is a link-local address/);
    const own = await p.admin("POST", "/reload", { allowUpstreams: ["*"] });
    assert.equal(own.status, 400);
    assert.equal((await own.json()).errors[0].field, "allowUpstreams");
    assert.deepEqual(((await p.status()).config as { upstreams: string[] }).upstreams, [up.url], "nothing changed");
  } finally {
    await p.stop();
  }

  const redis = await startRedis();
  const q = await startProxy(["-u", up.url, "--allow-upstream", "127.0.0.1:*", "--allow-upstream", "169.254.169.254", "--state", redis.url], { env: { HOLDUP_ADMIN_TOKEN: "" } });
  try {
    const far = await q.admin("POST", "/reload", { upstreams: ["http://10.1.2.3:8080"] });
    assert.equal(far.status, 400);
    assert.match(JSON.stringify(await far.json()), /is not among the allowed upstreams \(allowUpstreams \/ --allow-upstream: 127\.0\.0\.1:\*, 169\.254\.169\.254\)/);
    assert.equal((await q.admin("POST", "/deploy", { app: "default", upstreams: ["10.1.2.3:8080"] })).status, 400);
    assert.equal((await q.admin("POST", "/reload", { upstreams: ["http://169.254.169.254"] })).status, 200, "allowed explicitly");
    assert.equal((await q.admin("POST", "/reload", { upstreams: [up.url] })).status, 200);
    // A shared op naming another upstream, written straight to Redis: refused here and logged.
    await run("redis-cli", ["-p", String(redis.port), "RPUSH", "holdup:ops", JSON.stringify({ kind: "patch", by: "evil", body: { upstreams: ["http://10.6.6.6"] } })]);
    await run("redis-cli", ["-p", String(redis.port), "PUBLISH", "holdup:events", "op"]);
    const refused = await q.waitForLine("the shared op refused", (l) => l.msg === "reload rejected; the old config stays" && String(l.trigger).startsWith("shared reload (from evil)"));
    assert.match(JSON.stringify(refused.errors), /upstreams: \\"http:\/\/10\.6\.6\.6\\" is not among the allowed upstreams/);
    assert.deepEqual(((await q.status()).config as { upstreams: string[] }).upstreams, [up.url]);
  } finally {
    await q.stop();
    await redis.stop();
    await up.close();
  }
  const [cmd, args] = runtimeCommand("src/proxy.ts", ["--allow-upstream", "http://x/"]);
  const bad = await run(cmd, args);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--allow-upstream: must be host\[:port\] with \* wildcards/);
});

test("POST /reload without a body re-reads the config file at once while holdup runs an app that has served (no health gate on the default upstream)", async () => {
  const config = join(dir, "run.json");
  await writeFile(config, JSON.stringify({ run: { command: ["python3", APP, "{port}"] } }));
  const p = await startProxy(["-c", config], { env: { HOLDUP_ADMIN_TOKEN: "" } });
  try {
    assert.equal((await fetch(`${p.url}/`)).status, 200); // the app's instance is now known to be up
    await writeFile(config, JSON.stringify({ run: { command: ["python3", APP, "{port}"] }, tryDuration: "8s" }));
    const r = await fetch(`${p.adminUrl}/reload`, { method: "POST", signal: AbortSignal.timeout(10_000) });
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal((await r.json()).config.tryDuration, "8s");
  } finally {
    await p.stop();
  }
});

test("the edge entry: HOLDUP_ALLOW_UPSTREAMS bounds what POST /_holdup/reload may name", async () => {
  const up = await startUpstream();
  const port = await freePort();
  const command: [string, string[]] = RUNTIME === "deno"
    ? [`${ROOT}node_modules/.bin/deno`, ["serve", "--allow-net", "--allow-env", "--host", "127.0.0.1", "--port", String(port), "src/edge.ts"]]
    : [`${ROOT}node_modules/.bin/bun`, ["src/edge.ts"]];
  const p = await startProxy([], {
    command, rawArgs: true, port,
    env: { HOLDUP_UPSTREAMS: up.url, HOLDUP_LOG: "json", HOLDUP_ADMIN_TOKEN: "edge-token", HOLDUP_ALLOW_UPSTREAMS: "127.0.0.1:*, *.internal", PORT: String(port), HOSTNAME: "127.0.0.1" },
  });
  try {
    const reload = (upstreams: string[]) =>
      fetch(`${p.url}/_holdup/reload`, { method: "POST", body: JSON.stringify({ upstreams }), headers: { authorization: "Bearer edge-token", "content-type": "application/json" } });
    for (const u of ["http://10.1.2.3:8080", "http://169.254.169.254"]) {
      const r = await reload([u]);
      assert.equal(r.status, 400, u);
      assert.match(JSON.stringify(await r.json()), /is not among the allowed upstreams \(allowUpstreams \/ --allow-upstream: 127\.0\.0\.1:\*, \*\.internal\)/);
    }
    const ok = await reload([up.url]);
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
  } finally {
    await p.stop();
    await up.close();
  }
});
