/**
 * Automatic certificates (ACME) against Pebble, the ACME test server: real
 * holdup processes, real HTTP-01 validation of holdup's redirect listener,
 * real TLS clients trusting Pebble's root. Each test has its own Pebble (it
 * starts in ~0.1 s) and its own state directory.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import tls from "node:tls";
import { freePort, type LogLine, type Proxy, rawRequest, run, RUNTIME, startProxy, startUpstream, tlsRequest, until } from "./helpers.ts";
import { type Pebble, startPebble } from "./pebble.ts";
import { Challenges } from "../src/acme/challenges.ts";
import { redirectHandler } from "../src/serve/redirect.ts";
import type { Incoming, Reply } from "../src/serve/types.ts";

const dir = await mkdtemp(join(tmpdir(), "holdup-acme-"));
test.after?.(() => rm(dir, { recursive: true, force: true }));

const HOST = "app.holdup.test";
/** holdup on this runtime; Deno needs --allow-write for the state directory. */
const COMMAND: [string, string[]] = RUNTIME === "deno"
  ? [process.execPath, ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-write", "--allow-sys", "src/proxy.ts"]]
  : [process.execPath, ["src/proxy.ts"]];

let n = 0;
/** A Pebble, an upstream and a config for holdup with ACME for `hosts`; nothing started for holdup yet. */
async function setup(o: { validitySeconds?: number; blocklist?: string[]; hosts?: string[]; directory?: string } = {}) {
  const base = join(dir, `t${++n}`);
  await run("mkdir", ["-p", base]);
  const redirectPort = await freePort();
  const pebble = await startPebble(base, { httpPort: redirectPort, validitySeconds: o.validitySeconds, blocklist: o.blocklist });
  const up = await startUpstream((req, res) => {
    if (req.url === "/slow") return void slowGate.then(() => res.end("slow answer"));
    res.end(`upstream saw ${req.headers.host} ${req.url} ${req.headers["x-forwarded-proto"]}`);
  });
  const stateDir = join(base, "state");
  const config = join(base, "holdup.json");
  await writeFile(config, JSON.stringify({
    apps: [{ name: "web", hosts: o.hosts ?? [HOST], upstreams: [up.url] }, { name: "rest", upstreams: [up.url] }],
    tls: {
      redirectHttp: `127.0.0.1:${redirectPort}`,
      acme: { email: "ops@holdup.test", directory: o.directory ?? pebble.directory, ca: pebble.tlsCert, stateDir },
    },
  }));
  let slowRelease = () => {};
  const slowGate = new Promise<void>((r) => slowRelease = r);
  return {
    base, pebble, up, stateDir, config, redirectPort, slowRelease,
    start: (args: string[] = []) => startProxy(["-c", config, ...args], { command: COMMAND }),
    async close(...proxies: Proxy[]) {
      slowRelease();
      for (const p of proxies) await p.stop();
      await up.close();
      await pebble.stop();
    },
  };
}

const issued = (host: string) => (l: LogLine) => l.msg === "acme: certificate issued: new connections get it" && l.host === host;
const index = (p: Proxy, pred: (l: LogLine) => boolean) => p.lines.findIndex(pred);

/** A TLS connection asking for `servername`, trusting only `ca`; rejects when the handshake fails. */
async function connect(port: number, servername: string, ca: string): Promise<tls.TLSSocket> {
  const s = tls.connect({ port, host: "127.0.0.1", servername, ca: [ca], ALPNProtocols: ["http/1.1"] });
  await new Promise<void>((resolve, reject) => {
    s.once("secureConnect", () => resolve());
    s.once("error", reject);
  });
  return s;
}

/** curl trusting `caFile` only, with `host` resolved to loopback. */
async function curl(port: number, path: string, caFile: string, extra: string[] = [], host = HOST) {
  const r = await run("curl", ["-sS", "--cacert", caFile, "--resolve", `${host}:${port}:127.0.0.1`, "-w", "\n%{http_version}", ...extra, `https://${host}:${port}${path}`]);
  const lines = r.stdout.split("\n");
  return { code: r.code, body: lines.slice(0, -1).join("\n"), version: lines.at(-1), err: r.stderr };
}

async function rootFile(pebble: Pebble, base: string): Promise<{ path: string; pem: string }> {
  const pem = await pebble.root();
  const path = join(base, "pebble-root.pem");
  await writeFile(path, pem);
  return { path, pem };
}

test(`holdup gets a certificate from Pebble over HTTP-01 and serves it: curl trusting Pebble's root gets the upstream's answer over HTTP/1.1 and h2; keys are 0600`, async () => {
  const t = await setup();
  const began = Date.now();
  const p = await t.start();
  try {
    const done = await p.waitForLine("certificate issued", issued(HOST), 30_000);
    const seconds = (Date.parse(String(done.time)) - began) / 1000;
    console.log(`start to first certificate (${RUNTIME}, from spawning holdup): ${seconds.toFixed(2)} s; the order itself: ${done.seconds} s`);
    // Progress in the log, in order: ordering, the challenge, issued with the next renewal.
    const ordering = index(p, (l) => l.msg === "acme: ordering a certificate" && l.host === HOST);
    const challenge = index(p, (l) => l.msg === "acme: answering the HTTP-01 challenge on the redirect listener" && l.host === HOST);
    assert.ok(ordering >= 0 && challenge > ordering && index(p, issued(HOST)) > challenge, p.stderr);
    assert.ok(Date.parse(String(done.nextRenewal)) > Date.now(), "the next renewal is in the future");
    assert.match(t.pebble.log(), new RegExp(`Attempting to validate w/ HTTP: http://${HOST.replace(/\./g, "\\.")}:${t.redirectPort}/\\.well-known/acme-challenge/`));

    const root = await rootFile(t.pebble, t.base);
    const h1 = await curl(p.port, "/hello", root.path, ["--http1.1"]);
    assert.equal(h1.code, 0, h1.err);
    assert.deepEqual([h1.body, h1.version], [`upstream saw ${HOST}:${p.port} /hello https`, "1.1"]);
    const h2 = await curl(p.port, "/h2", root.path, ["--http2"]);
    assert.equal(h2.code, 0, h2.err);
    assert.deepEqual([h2.body, h2.version], [`upstream saw ${HOST}:${p.port} /h2 https`, "2"]);

    // The state directory: 0700; private keys 0600.
    const [sub] = await readdir(join(t.stateDir, "acme"));
    const where = join(t.stateDir, "acme", sub);
    assert.equal((await stat(where)).mode & 0o777, 0o700);
    assert.equal((await stat(join(where, "account.key"))).mode & 0o777, 0o600);
    assert.equal((await stat(join(where, `${HOST}.key`))).mode & 0o777, 0o600);
    assert.match(await readFile(join(where, `${HOST}.crt`), "utf8"), /BEGIN CERTIFICATE/);

    // The redirect listener still redirects everything but a pending challenge; no token is pending now.
    const r = await rawRequest(t.redirectPort, `GET /.well-known/acme-challenge/${"A".repeat(43)} HTTP/1.1\nHost: ${HOST}\nConnection: close`);
    assert.equal(r.status, 404);
    const moved = await rawRequest(t.redirectPort, `GET /x?y=1 HTTP/1.1\nHost: ${HOST}\nConnection: close`);
    assert.equal(moved.status, 308);
    assert.equal(moved.header("location"), `https://${HOST}:${p.port}/x?y=1`);
  } finally {
    await t.close(p);
  }
});

test("a restart reuses the stored certificate: no new order, the same certificate is served", async () => {
  const t = await setup();
  const p1 = await t.start();
  let p2: Proxy | null = null;
  try {
    const first = await p1.waitForLine("certificate issued", issued(HOST), 30_000);
    await p1.stop();
    const orders = t.pebble.orders();
    assert.ok(orders >= 1, t.pebble.log());
    p2 = await t.start();
    const reused = await p2.waitForLine("stored certificate", (l) => l.msg === "acme: using the stored certificate" && l.host === HOST);
    assert.equal(reused.fingerprint, first.fingerprint);
    const root = await rootFile(t.pebble, t.base);
    const s = await connect(p2.port, HOST, root.pem);
    try {
      assert.equal(s.getPeerCertificate().fingerprint256.slice(0, 23), first.fingerprint);
      assert.deepEqual(await tlsRequest(s, "/again", HOST), { status: 200, body: `upstream saw ${HOST} /again https` });
    } finally {
      s.destroy();
    }
    assert.equal(t.pebble.orders(), orders, "no new order at the CA");
    assert.equal(index(p2, (l) => String(l.msg).startsWith("acme: ordering")), -1, p2.stderr);
  } finally {
    await t.close(p1, ...(p2 ? [p2] : []));
  }
});

test("renewal: a short-lived certificate is renewed without a restart; new connections get the new one, an open connection, its in-flight request and a held request survive; with the CA gone, the renewal error is one line and the current certificate stays", async () => {
  const validity = 12;
  const t = await setup({ validitySeconds: validity });
  const p = await t.start();
  try {
    const first = await p.waitForLine("first certificate", issued(HOST), 30_000);
    const root = await rootFile(t.pebble, t.base);
    const open = await connect(p.port, HOST, root.pem);
    assert.equal(open.getPeerCertificate().fingerprint256.slice(0, 23), first.fingerprint);
    assert.equal((await tlsRequest(open, "/before", HOST)).status, 200);
    // A request in flight across the renewal: the upstream answers it only after the swap.
    const slow = tlsRequest(open, "/slow", HOST);
    await until("the slow request to reach the upstream", () => t.up.received.some((r) => r.url === "/slow"));
    // And a request held by holdup (paused) on another connection.
    assert.equal((await p.admin("POST", "/pause")).status, 200);
    const heldConn = await connect(p.port, HOST, root.pem);
    const held = tlsRequest(heldConn, "/held", HOST);
    await until("1 held", async () => (await p.status()).held === 1);

    const firstAt = p.lines.indexOf(first);
    const renewed = await p.waitForLine("renewal", (l) => issued(HOST)(l) && l.fingerprint !== first.fingerprint, validity * 1000 + 20_000, firstAt + 1);
    assert.ok(index(p, (l) => l.msg === "acme: renewing the certificate" && l.host === HOST) > firstAt, p.stderr);
    // The held request is still held across the swap, and answered on resume.
    assert.equal((await p.status()).held, 1);
    assert.equal((await p.admin("POST", "/resume")).status, 200);
    assert.deepEqual(await held, { status: 200, body: `upstream saw ${HOST} /held https` });
    heldConn.destroy();
    const fresh = await connect(p.port, HOST, root.pem);
    try {
      assert.equal(fresh.getPeerCertificate().fingerprint256.slice(0, 23), renewed.fingerprint);
      assert.deepEqual(await tlsRequest(fresh, "/after", HOST), { status: 200, body: `upstream saw ${HOST} /after https` });
    } finally {
      fresh.destroy();
    }
    t.slowRelease();
    assert.deepEqual(await slow, { status: 200, body: "slow answer" });

    assert.deepEqual(await tlsRequest(open, "/still", HOST), { status: 200, body: `upstream saw ${HOST} /still https` });
    assert.equal(open.getPeerCertificate().fingerprint256.slice(0, 23), first.fingerprint, "the open connection kept its certificate");
    open.destroy();

    // The CA goes away: the next renewal fails with one clear line, and the current certificate is still served.
    await t.pebble.stop();
    const renewedAt = p.lines.indexOf(renewed);
    const failed = await p.waitForLine("renewal failure", (l) => String(l.msg).startsWith(`acme: cannot get a certificate for ${HOST}:`), validity * 1000 + 20_000, renewedAt + 1);
    assert.match(String(failed.msg), /^acme: cannot get a certificate for app\.holdup\.test: cannot reach the ACME directory https:\/\/127\.0\.0\.1:\d+\/dir: connection refused \(ECONNREFUSED\); retrying in 10s$/);
    assert.match(String(failed.serving), /^the stored certificate, valid to /);
    // Still offered (verification aside: 12 s certificates expire fast on a loaded machine).
    const after = tls.connect({ port: p.port, host: "127.0.0.1", servername: HOST, rejectUnauthorized: false });
    await new Promise((r, j) => after.once("secureConnect", r).once("error", j));
    assert.equal(after.getPeerCertificate().fingerprint256.slice(0, 23), renewed.fingerprint);
    after.destroy();
    assert.equal(p.child.exitCode, null, "holdup keeps running");
  } finally {
    await t.close(p);
  }
});

test("the challenge path answers only the exact pending token, with its key authorization", () => {
  const challenges = new Challenges();
  const token = "Zm9vYmFyYmF6cXV4LXRva2VuXzEyMzQ1Njc4OTA";
  challenges.add(token, `${token}.thumbprint`);
  const handler = redirectHandler(() => 443, (t) => challenges.answer(t));
  const get = (target: string) => {
    const req = { method: "GET", target, scheme: "http", clientIP: "127.0.0.1", header: (n: string) => (n === "host" ? HOST : null) } as unknown as Incoming;
    return handler(req) as Reply;
  };
  const hit = get(`/.well-known/acme-challenge/${token}`);
  assert.deepEqual([hit.status, hit.body], [200, `${token}.thumbprint`]);
  for (const target of [
    `/.well-known/acme-challenge/${token}x`,
    `/.well-known/acme-challenge/${token.slice(1)}`,
    `/.well-known/acme-challenge/../${token}`,
    `/.well-known/acme-challenge/${token}/..`,
    `/.well-known/acme-challenge/%2e%2e%2f${token}`,
    "/.well-known/acme-challenge/",
  ]) {
    const r = get(target);
    assert.equal(r.status, 404, target);
    assert.doesNotMatch(String(r.body), /thumbprint/, target);
  }
  assert.throws(() => challenges.add("../../etc/passwd", "x"), /not base64url/);
  challenges.remove(token);
  assert.equal(get(`/.well-known/acme-challenge/${token}`).status, 404);
});

test("bad ACME input: one line naming the flag (exit 2) or the missing Deno permission", async () => {
  const base = ["--listen", "127.0.0.1:0", "--admin", "off", "--log", "json"];
  await writeFile(join(dir, "a-file"), "not a directory");
  const cases: Array<[string[], RegExp]> = [
    [["--acme", "nope", "--acme-host", HOST, "--redirect-http", "127.0.0.1:0"], /^ {2}--acme: must be an email address, e\.g\. you@example\.com$/m],
    [["--acme", "ops@holdup.test", "--acme-host", HOST], /--acme: needs the redirect listener, .*add --redirect-http :80/],
    [["--acme", "ops@holdup.test", "--acme-host", "*.holdup.test", "--redirect-http", "127.0.0.1:0"], /--acme-host: must be an exact host name: HTTP-01 cannot get a certificate for \*\.domain/],
    [["--acme", "ops@holdup.test", "--acme-host", HOST, "--acme-directory", "http://127.0.0.1/dir", "--redirect-http", "127.0.0.1:0"], /--acme-directory: must be the https:\/\/ URL of an ACME directory/],
    [["--acme", "ops@holdup.test", "--redirect-http", "127.0.0.1:0"], /--acme-host: no name to get a certificate for/],
    [["--acme", "ops@holdup.test", "--acme-host", HOST, "--redirect-http", "127.0.0.1:0", "--acme-ca", join(dir, "missing.pem")], /^holdup: cannot serve HTTPS: tls\.acme\.ca: .*missing\.pem cannot be read \(ENOENT\)$/m],
    [["--acme", "ops@holdup.test", "--acme-host", HOST, "--redirect-http", "127.0.0.1:0", "--acme-state-dir", join(dir, "a-file", "state")], /^holdup: cannot serve HTTPS: tls\.acme\.stateDir: cannot write the ACME state directory .*a-file\/state \(ENOTDIR\): choose another with --acme-state-dir DIR/m],
  ];
  for (const [args, expected] of cases) {
    const r = await run(COMMAND[0], [...COMMAND[1], ...base, ...args]);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, expected, args.join(" "));
    assert.equal(r.stderr.split("\n").filter((l) => expected.test(l)).length, 1, r.stderr);
  }
  // No --acme-ca: the system's CA certificates are used (on Deno through --allow-sys, which COMMAND gives).
  const nowhere = `https://127.0.0.1:${await freePort()}/dir`;
  const p = await startProxy(["--acme", "ops@holdup.test", "--acme-host", HOST, "--redirect-http", "127.0.0.1:0", "--acme-directory", nowhere, "--acme-state-dir", join(dir, "system-cas")], { command: COMMAND });
  try {
    const line = await p.waitForLine("the first try", (l) => String(l.msg).startsWith(`acme: cannot get a certificate for ${HOST}:`), 30_000);
    assert.equal(String(line.msg), `acme: cannot get a certificate for ${HOST}: cannot reach the ACME directory ${nowhere}: connection refused (ECONNREFUSED); retrying in 10s`);
  } finally {
    await p.stop();
  }
  if (RUNTIME === "deno") {
    // Deno without --allow-sys (the system's CA certificates) or --allow-write (the state directory): one line naming the flag, at start.
    const acme = [...base, "--acme", "ops@holdup.test", "--acme-host", HOST, "--redirect-http", "127.0.0.1:0", "--acme-directory", nowhere];
    const noSys = await run(process.execPath, ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-write", "src/proxy.ts", ...acme, "--acme-state-dir", join(dir, "nosys")]);
    assert.equal(noSys.code, 1, noSys.stderr);
    assert.match(noSys.stderr, /^holdup: --acme needs Deno's --allow-sys permission/m);
    assert.equal(noSys.stderr.trim().split("\n").length, 1, noSys.stderr);
    const noWrite = await run(process.execPath, ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-sys", "src/proxy.ts", ...acme, "--acme-state-dir", join(dir, "nowrite")]);
    assert.equal(noWrite.code, 1, noWrite.stderr);
    assert.match(noWrite.stderr, /^holdup: --acme needs Deno's --allow-write permission/m);
  }
});

test("an ACME directory that refuses or is unreachable: one log line with the reason and the retry, holdup keeps serving the names it has certificates for, and never hands a managed name another name's certificate", async () => {
  // A self-signed fallback certificate (--tls-cert) for "localhost".
  const cert = join(dir, "fallback.crt"), key = join(dir, "fallback.key");
  const made = await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]);
  assert.equal(made.code, 0, made.stderr);
  const BLOCKED = "blocked.holdup.test";

  // Refuses: Pebble will not issue for BLOCKED; the other name gets its certificate.
  const t = await setup({ blocklist: [BLOCKED], hosts: [HOST, BLOCKED] });
  const p = await t.start(["--tls-cert", cert, "--tls-key", key]);
  // Unreachable: nothing listens where the directory should be.
  const gone = await setup({ directory: `https://127.0.0.1:${await freePort()}/dir` });
  const q = await gone.start(["--tls-cert", cert, "--tls-key", key]);
  try {
    const refused = await p.waitForLine("the refusal", (l) => String(l.msg).startsWith(`acme: cannot get a certificate for ${BLOCKED}:`), 30_000);
    assert.match(String(refused.msg), /^acme: cannot get a certificate for blocked\.holdup\.test: ACME at https:\/\/127\.0\.0\.1:\d+\/dir: [^\n]*blocked[^\n]*; retrying in 10s$/);
    assert.equal(refused.serving, "nothing: handshakes for this name fail");
    await p.waitForLine("the other name's certificate", issued(HOST), 30_000);
    const root = await rootFile(t.pebble, t.base);
    const ok = await curl(p.port, "/fine", root.path);
    assert.equal(ok.code, 0, ok.err);
    assert.equal(ok.body, `upstream saw ${HOST}:${p.port} /fine https`);

    const unreachable = await q.waitForLine("unreachable", (l) => String(l.msg).startsWith(`acme: cannot get a certificate for ${HOST}:`), 30_000);
    assert.match(String(unreachable.msg), /^acme: cannot get a certificate for app\.holdup\.test: cannot reach the ACME directory https:\/\/127\.0\.0\.1:\d+\/dir: connection refused \(ECONNREFUSED\); retrying in 10s$/);

    for (const [proxy, name] of [[p, BLOCKED], [q, HOST]] as const) {
      // The managed name without a certificate: the handshake fails; the fallback certificate is not offered.
      const s = tls.connect({ port: proxy.port, host: "127.0.0.1", servername: name, rejectUnauthorized: false });
      const outcome = await new Promise<string>((resolve) => {
        s.once("secureConnect", () => resolve(`handshake done with ${s.getPeerCertificate().subject?.CN}`));
        s.once("error", (e) => resolve(`failed: ${e.message}`));
        s.once("close", () => resolve("failed: closed"));
      });
      s.destroy();
      assert.match(outcome, /^failed/, `${name}: ${outcome}`);
      // Every other name still gets the fallback, and the proxy answers.
      const fine = await run("curl", ["-sS", "--cacert", cert, "--resolve", `localhost:${proxy.port}:127.0.0.1`, `https://localhost:${proxy.port}/still`]);
      assert.equal(fine.code, 0, fine.stderr);
      assert.match(fine.stdout, /^upstream saw localhost:\d+ \/still https$/);
      assert.equal(proxy.child.exitCode, null);
    }
  } finally {
    await t.close(p);
    await gone.close(q);
  }
});

test("a reload that adds an app host gets a certificate for it without a restart; other tls.acme changes are noted as taking effect on restart", async () => {
  const t = await setup();
  const p = await t.start();
  try {
    const first = await p.waitForLine("first certificate", issued(HOST), 30_000);
    const TWO = "two.holdup.test";
    const r = await p.admin("POST", "/reload", { apps: [{ name: "two", hosts: [TWO], upstreams: [t.up.url] }] });
    assert.equal(r.status, 200, await r.clone().text());
    await p.waitForLine("the new host's certificate", issued(TWO), 30_000);
    const root = await rootFile(t.pebble, t.base);
    const two = await curl(p.port, "/two", root.path, [], TWO);
    assert.equal(two.code, 0, two.err);
    assert.equal(two.body, `upstream saw ${TWO}:${p.port} /two https`);
    // The first name keeps its certificate: no second order for it.
    assert.equal(p.lines.filter(issued(HOST)).length, 1);
    const s = await connect(p.port, HOST, root.pem);
    assert.equal(s.getPeerCertificate().fingerprint256.slice(0, 23), first.fingerprint);
    s.destroy();

    const changed = await p.admin("POST", "/reload", { tls: { acme: { email: "someone-else@holdup.test" } } });
    assert.equal(changed.status, 200);
    assert.match(await changed.text(), /tls\.acme takes effect on restart, except its hosts/);
  } finally {
    await t.close(p);
  }
});
