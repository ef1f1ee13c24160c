/**
 * docs/operations.md's recipes, read from the file and run: the systemd unit passes
 * `systemd-analyze verify` and its ExecStart serves with its EnvironmentFile's token
 * (and ExecReload's SIGHUP re-reads the config); the Prometheus scrape job's request
 * gets the metrics; nginx with the documented block in front of holdup delivers a
 * request held while the app was down.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { canConnect, freePort, nodeGet, ROOT, run, startProxy, startUpstream, until } from "./helpers.ts";

let dir = "";
let doc = "";

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "holdup-ops-"));
  doc = await readFile(path.join(ROOT, "docs/operations.md"), "utf8");
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The fenced block of `lang` whose text contains `marker`. */
function block(lang: string, marker: string): string {
  for (const m of doc.matchAll(/```(\w*)\n([\s\S]*?)```/g)) if (m[1] === lang && m[2].includes(marker)) return m[2];
  throw new Error(`docs/operations.md has no ${lang} block with ${marker}`);
}

test("the systemd unit verifies; its ExecStart serves with the EnvironmentFile's token; ExecReload re-reads the config; the scrape job gets metrics", async () => {
  const unit = block("ini", "[Service]");
  const unitFile = path.join(dir, "holdup.service");
  await writeFile(unitFile, unit.replace("/usr/local/bin/holdup", path.join(ROOT, "bin/holdup.mjs")));
  const verify = await run("systemd-analyze", ["verify", unitFile]);
  assert.equal(verify.code, 0, verify.stderr);
  assert.equal(verify.stderr.trim(), "", "systemd-analyze has no complaint");
  const setting = (key: string) => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, "gm"))].map((m) => m[1]);
  assert.deepEqual(setting("EnvironmentFile"), ["/etc/holdup/env"]);
  assert.deepEqual(setting("StateDirectory"), ["holdup"]);
  assert.deepEqual(setting("KillMode"), ["mixed"], "one SIGTERM, to the main process (a second one means exit now)");
  assert.ok(!/HOLDUP_ADMIN_TOKEN/.test(setting("Environment").join(" ")), "the token is not in the unit");

  // The environment file, as systemd parses it (KEY=VALUE lines; # comments).
  const env: Record<string, string> = {};
  for (const line of block("sh", "/etc/holdup/env").split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2];
  }
  const token = env.HOLDUP_ADMIN_TOKEN;
  assert.ok(token, "the env file sets HOLDUP_ADMIN_TOKEN");

  // ExecStart (the npm-installed command) with the documented config, its ports, upstream and
  // state directory made local; the ACME directory is unreachable (certificates are ordered in the background).
  const [exe, ...args] = setting("ExecStart")[0].split(/\s+/);
  assert.equal(exe, "/usr/local/bin/holdup");
  assert.deepEqual(args, ["--config", "/etc/holdup/holdup.json"]);
  const documented = JSON.parse(block("json", '"stateDir": "/var/lib/holdup"'));
  const [a, b] = await Promise.all([startUpstream(), startUpstream()]);
  const adminPort = await freePort();
  const config = path.join(dir, "holdup.json");
  const stateDir = path.join(dir, "state");
  await mkdir(stateDir);
  const write = (u: number) => {
    const c = structuredClone(documented);
    c.listen = "127.0.0.1:0";
    c.upstreams = [`127.0.0.1:${u}`];
    c.tls.redirectHttp = "127.0.0.1:0";
    c.tls.acme.stateDir = stateDir;
    c.tls.acme.directory = "https://127.0.0.1:1/directory";
    c.admin = { listen: `127.0.0.1:${adminPort}` };
    return writeFile(config, JSON.stringify(c));
  };
  await write(a.port);
  const proxy = await startProxy(["--config", config], { rawArgs: true, command: ["node", [path.join(ROOT, "bin/holdup.mjs")]], env: { ...env, HOLDUP_ADMIN: "" } });
  try {
    assert.equal((await proxy.admin("GET", "/status")).status, 401, "the admin API wants the token");
    const auth = { authorization: `Bearer ${token}` };
    const status = await (await proxy.admin("GET", "/status", undefined, auth)).json();
    assert.equal(status.config.tls.acme.stateDir, stateDir);

    // ExecReload: kill -HUP $MAINPID.
    assert.match(setting("ExecReload")[0], /kill -HUP \$MAINPID$/);
    await write(b.port);
    proxy.signal("SIGHUP");
    await until("the reload to name the new upstream", async () => {
      const s = await (await proxy.admin("GET", "/status", undefined, auth)).json();
      return JSON.stringify(s.config.upstreams) === JSON.stringify([`http://127.0.0.1:${b.port}`]);
    });

    // The Prometheus job: its path, its bearer credentials file, its target (the default admin address, here the test's).
    const job = block("yaml", "scrape_configs");
    const metricsPath = /metrics_path: (\S+)/.exec(job)![1];
    assert.match(job, /type: Bearer/);
    const credentials = path.join(dir, "holdup-token");
    await writeFile(credentials, token + "\n");
    assert.match(job, /targets: \["127\.0\.0\.1:2019"\]/);
    const scrape = await fetch(`http://127.0.0.1:${adminPort}${metricsPath}`, {
      headers: { authorization: `Bearer ${(await readFile(credentials, "utf8")).trim()}` },
    });
    assert.equal(scrape.status, 200);
    assert.match(scrape.headers.get("content-type") ?? "", /^text\/plain/);
    const text = await scrape.text();
    assert.match(text, /^holdup_held_requests\{app="default"\} 0$/m);
    assert.match(text, /^# TYPE holdup_hold_seconds histogram$/m);
    const denied = await fetch(`http://127.0.0.1:${adminPort}${metricsPath}`);
    assert.equal(denied.status, 401);
    await denied.body?.cancel();
  } finally {
    await proxy.stop();
    await a.close();
    await b.close();
  }
});

test("nginx with the documented block in front of holdup delivers a request held while the app was down", async () => {
  const nginxBlock = block("nginx", "proxy_pass http://holdup");
  const appPort = await freePort();
  const proxy = await startProxy(["-u", `127.0.0.1:${appPort}`, "--try-interval", "100ms"]);
  const front = await freePort();
  const prefix = path.join(dir, "nginx");
  await mkdir(path.join(prefix, "logs"), { recursive: true });
  const conf = path.join(prefix, "nginx.conf");
  const http = nginxBlock
    .replace("server 127.0.0.1:8080;", `server 127.0.0.1:${proxy.port};`)
    .replace("listen 80;", `listen 127.0.0.1:${front};`);
  assert.notEqual(http, nginxBlock);
  await writeFile(conf, `daemon off;
master_process off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log;
events {}
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
${http}
}
`);
  const nginx = spawn("nginx", ["-p", prefix, "-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let nginxErr = "";
  nginx.stderr!.on("data", (d) => nginxErr += d);
  let app: Awaited<ReturnType<typeof startUpstream>> | null = null;
  try {
    await until("nginx to listen", async () => {
      if (nginx.exitCode !== null) throw new Error(`nginx exited ${nginx.exitCode}: ${nginxErr}`);
      return await canConnect(front);
    });
    // The app is down: the request is held by holdup behind nginx, then the app comes up.
    const pending = nodeGet(`http://127.0.0.1:${front}/held`);
    await proxy.waitForLine("the request to be held", (l) => /unreachable/.test(String(l.msg)));
    await until("holdup to hold it", async () => (await proxy.status()).held === 1);
    app = await startUpstream(undefined, appPort);
    const res = await pending;
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(JSON.parse(res.body.toString()).url, "/held");
    assert.equal(app.received.filter((r) => r.url === "/held").length, 1, "delivered once");
  } finally {
    nginx.kill("SIGTERM");
    await proxy.stop();
    await app?.close();
  }
});
