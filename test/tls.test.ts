/**
 * HTTPS at the front door, over real TLS on loopback: certificates made with
 * openssl per test run, curl and node:tls as clients, the real proxy process.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { freePort, type Proxy, rawRequest, ROOT, run, runtimeCommand, startProxy, startUpstream, tlsRequest, until } from "./helpers.ts";
import { clientFrame, websocketd } from "./ws-helpers.ts";

const dir = await mkdtemp(join(tmpdir(), "holdup-tls-"));
/** A self-signed EC certificate for `names` (DNS) and 127.0.0.1; its files and PEM text. */
async function makeCert(id: string, names: string[]): Promise<{ cert: string; key: string; pem: string; fp: string }> {
  const cert = join(dir, `${id}.crt`), key = join(dir, `${id}.key`);
  const san = [...names.map((n) => `DNS:${n}`), "IP:127.0.0.1"].join(",");
  const r = await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
    "-days", "1", "-subj", `/CN=${names[0]}`, "-addext", `subjectAltName=${san}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const pem = await readFile(cert, "utf8");
  return { cert, key, pem, fp: new X509Certificate(pem).fingerprint256 };
}
const A = await makeCert("a", ["localhost", "a.localhost"]);
const B = await makeCert("b", ["localhost", "b.localhost"]);

test.after?.(() => rm(dir, { recursive: true, force: true }));

/** A TLS connection to the proxy; resolves once the handshake is done. */
async function connect(port: number, opts: { servername?: string; ca?: string[] } = {}): Promise<tls.TLSSocket> {
  const s = tls.connect({
    port,
    host: "127.0.0.1",
    ...(opts.servername ? { servername: opts.servername } : {}),
    ca: opts.ca ?? [A.pem, B.pem],
    checkServerIdentity: () => undefined,
  });
  await new Promise<void>((resolve, reject) => {
    s.once("secureConnect", () => resolve());
    s.once("error", reject);
  });
  return s;
}

const fingerprint = (s: tls.TLSSocket) => s.getPeerCertificate().fingerprint256;

function redirectPort(p: Proxy): number {
  const started = p.lines.find((l) => String(l.msg).startsWith("holdup started"))!;
  return Number(String(started.redirectHttp).split(":").pop());
}

async function curl(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const r = await run("curl", ["-sS", ...args]);
  return { code: r.code, out: r.stdout, err: r.stderr };
}

test("HTTPS from --tls-cert/--tls-key: curl gets the upstream's answer, X-Forwarded-Proto is https, --redirect-http answers 308", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url, "--tls-cert", A.cert, "--tls-key", A.key, "--redirect-http", "127.0.0.1:0"]);
  try {
    const url = `https://localhost:${proxy.port}/hello?x=1`;
    const r = await curl(["--cacert", A.cert, "--http1.1", "-w", "\n%{http_code} %{http_version}", url]);
    assert.equal(r.code, 0, r.err);
    const [json, last] = r.out.split("\n");
    assert.equal(last, "200 1.1");
    const echoed = JSON.parse(json);
    assert.equal(echoed.url, "/hello?x=1");
    assert.equal(echoed.headers["x-forwarded-proto"], "https");
    // HTTP/2 (ALPN): same answer; the upstream gets Host from :authority and no pseudo-headers.
    const h2 = await curl(["--cacert", A.cert, "--http2", "-w", "\n%{http_code} %{http_version}", url]);
    const [json2, last2] = h2.out.split("\n");
    assert.equal(last2, "200 2", h2.err);
    const echoed2 = JSON.parse(json2);
    assert.equal(echoed2.headers.host, `localhost:${proxy.port}`);
    assert.equal(echoed2.headers["x-forwarded-proto"], "https");
    assert.ok(!Object.keys(echoed2.headers).some((k) => k.startsWith(":")), JSON.stringify(echoed2.headers));
    // Plain HTTP on the TLS port is not served.
    const plain = await curl(["-o", "/dev/null", "-w", "%{http_code}", `http://127.0.0.1:${proxy.port}/`]);
    assert.notEqual(plain.out, "200");
    // The redirect listener: 308 to the same host and target on the HTTPS port; ACME paths are not redirected.
    const rp = redirectPort(proxy);
    const red = await curl(["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-X", "POST", `http://localhost:${rp}/p/q?r=1`]);
    assert.equal(red.out, `308 https://localhost:${proxy.port}/p/q?r=1`);
    const acme = await curl(["-o", "/dev/null", "-w", "%{http_code}", `http://localhost:${rp}/.well-known/acme-challenge/nope`]);
    assert.equal(acme.out, "404");
    assert.equal(up.received.length, 2);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("plain HTTP sent to the HTTPS port gets a 400 saying the port speaks HTTPS, then the connection closes; TLS on the port still works", async () => {
  const up = await startUpstream((req, res) => res.end(`ok ${req.url}`));
  const proxy = await startProxy(["-u", up.url, "--tls-cert", A.cert, "--tls-key", A.key]);
  try {
    const r = await rawRequest(proxy.port, "GET /plain HTTP/1.1\nHost: localhost"); // resolves when holdup closes it
    assert.equal(r.status, 400);
    assert.match(r.body.toString(), /this port speaks HTTPS; the plain HTTP request was sent to an HTTPS port/);
    assert.equal(r.header("connection"), "close");
    assert.equal(up.received.length, 0, "nothing reached the upstream");
    const s = await connect(proxy.port);
    // The connection is kept alive: many requests on it (Deno's server closed it after the first until the
    // TLS server behind the front door counted as listening).
    for (const path of ["/tls", "/again", "/3", "/4", "/5"]) assert.deepEqual(await tlsRequest(s, path), { status: 200, body: `ok ${path}` });
    assert.ok(!s.destroyed, "still open after five requests");
    s.destroy();
    const h2 = await curl(["--cacert", A.cert, "--http2", "-w", " %{http_code} %{http_version} %{num_connects}\n",
      ...["/h2a", "/h2b", "/h2c"].map((p) => `https://localhost:${proxy.port}${p}`)]);
    assert.equal(h2.out, "ok /h2a 200 2 1\nok /h2b 200 2 0\nok /h2c 200 2 0\n", `three h2 requests on one connection: ${h2.err}`);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a request held over HTTPS is moved by a reload to the new upstream", async () => {
  const dead = await freePort();
  const proxy = await startProxy(["-u", `:${dead}`, "--tls-cert", A.cert, "--tls-key", A.key, "--try-duration", "20s"]);
  const up = await startUpstream((_req, res) => res.end("from the new upstream"));
  try {
    const s = await connect(proxy.port);
    const answer = tlsRequest(s, "/held");
    await until("1 held", async () => (await proxy.status()).held === 1);
    const res = await proxy.admin("POST", "/reload", { upstreams: [up.url] });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await answer, { status: 200, body: "from the new upstream" });
    assert.equal(up.received[0].headers["x-forwarded-proto"], "https");
    s.destroy();
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("certificate rotation: replaced files and SIGHUP; new connections get the new certificate, an open keep-alive connection and a held request survive", async () => {
  const cert = join(dir, "rot.crt"), key = join(dir, "rot.key");
  await copyFile(A.cert, cert);
  await copyFile(A.key, key);
  const up = await startUpstream((req, res) => res.end(`ok ${req.url}`));
  const proxy = await startProxy(["-u", up.url, "--tls-cert", cert, "--tls-key", key]);
  try {
    const old = await connect(proxy.port);
    assert.equal(fingerprint(old), A.fp);
    assert.deepEqual(await tlsRequest(old, "/1"), { status: 200, body: "ok /1" });
    // Hold a request on a second connection.
    assert.equal((await proxy.admin("POST", "/pause")).status, 200);
    const holder = await connect(proxy.port);
    const held = tlsRequest(holder, "/held");
    await until("1 held", async () => (await proxy.status()).held === 1);

    await copyFile(B.cert, cert);
    await copyFile(B.key, key);
    const from = proxy.lines.length;
    proxy.signal("SIGHUP");
    await proxy.waitForLine("certificates reloaded", (l) => l.msg.startsWith("certificates reloaded"), 10_000, from);

    const fresh = await connect(proxy.port);
    assert.equal(fingerprint(fresh), B.fp, "a new connection gets the new certificate");
    assert.deepEqual((await proxy.status()).certificates, [{ cert, key, fingerprint: B.fp, validTo: new X509Certificate(B.pem).validTo }]);
    assert.equal((await proxy.admin("POST", "/resume")).status, 200);
    assert.deepEqual(await held, { status: 200, body: "ok /held" });
    assert.deepEqual(await tlsRequest(old, "/2"), { status: 200, body: "ok /2" }, "the open connection still serves");
    assert.deepEqual(await tlsRequest(fresh, "/3"), { status: 200, body: "ok /3" });
    for (const s of [old, holder, fresh]) s.destroy();
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a bad certificate pair on reload is refused whole, naming the file; the old certificate stays", async () => {
  const cert = join(dir, "bad.crt"), key = join(dir, "bad.key");
  await copyFile(A.cert, cert);
  await copyFile(A.key, key);
  const up = await startUpstream((_req, res) => res.end("ok"));
  const proxy = await startProxy(["-u", up.url, "--tls-cert", cert, "--tls-key", key]);
  try {
    // A new certificate with the old key: the pair does not match.
    await copyFile(B.cert, cert);
    let res = await proxy.admin("POST", "/reload");
    assert.equal(res.status, 400);
    let text = await res.text();
    assert.match(text, new RegExp(`the key in ${key} does not match the certificate in ${cert}`));
    let s = await connect(proxy.port);
    assert.equal(fingerprint(s), A.fp, "the old certificate stays");
    assert.deepEqual(await tlsRequest(s, "/"), { status: 200, body: "ok" });
    s.destroy();
    // An unreadable key file.
    await copyFile(A.cert, cert);
    await rm(key);
    res = await proxy.admin("POST", "/reload");
    assert.equal(res.status, 400);
    text = await res.text();
    assert.match(text, new RegExp(`${key} \\(the key\\) cannot be read \\(ENOENT\\)`));
    // A reload body that changes something else is refused too, and changes nothing.
    res = await proxy.admin("POST", "/reload", { tryDuration: "5s" });
    assert.equal(res.status, 400);
    assert.equal(((await proxy.status()).config as { tryDuration: string }).tryDuration, "30s");
    s = await connect(proxy.port);
    assert.equal(fingerprint(s), A.fp);
    s.destroy();
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("bad certificate input at start: one clear line naming the file, exit 2", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["--tls-cert", A.cert, "--tls-key", B.key], new RegExp(`the key in ${B.key} does not match the certificate in ${A.cert}`)],
    [["--tls-cert", join(dir, "missing.crt"), "--tls-key", A.key], /missing\.crt \(the certificate\) cannot be read \(ENOENT\)/],
    [["--tls-cert", A.key, "--tls-key", A.key], /a\.key holds no PEM certificate/],
    [["--tls-cert", A.cert], /--tls-key: is missing/],
  ];
  for (const [args, expected] of cases) {
    const [cmd, argv] = runtimeCommand("src/proxy.ts", ["--listen", "127.0.0.1:0", "--admin", "off", ...args]);
    const r = await run(cmd, argv);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, expected);
    if (!/is missing/.test(r.stderr)) assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});

test("two apps with two certificates, chosen by SNI; a name without a certificate fails the handshake; a host the certificate does not name is warned about", async () => {
  const upA = await startUpstream((_req, res) => res.end("app a"));
  const upB = await startUpstream((_req, res) => res.end("app b"));
  const config = join(dir, "apps.json");
  await writeFile(config, JSON.stringify({
    apps: [
      { name: "a", hosts: ["a.localhost"], upstreams: [upA.url], tls: { cert: A.cert, key: A.key } },
      { name: "b", hosts: ["*.b.localhost", "b.localhost"], upstreams: [upB.url], tls: { cert: B.cert, key: B.key } },
    ],
  }));
  const proxy = await startProxy(["-c", config]);
  try {
    // b.crt names b.localhost but not *.b.localhost: served, with a warning.
    await proxy.waitForLine("the coverage warning", (l) => l.msg === `certificate: ${B.cert} (app b) does not cover the host *.b.localhost`, 5000);
    assert.ok(!proxy.lines.some((l) => String(l.msg).includes("(app a)")));
    const a = await connect(proxy.port, { servername: "a.localhost" });
    assert.equal(fingerprint(a), A.fp);
    assert.deepEqual(await tlsRequest(a, "/", "a.localhost"), { status: 200, body: "app a" });
    const b = await connect(proxy.port, { servername: "x.b.localhost" });
    assert.equal(fingerprint(b), B.fp);
    assert.deepEqual(await tlsRequest(b, "/", "x.b.localhost"), { status: 200, body: "app b" });
    a.destroy();
    b.destroy();
    // No top-level certificate: a name no app covers (or none at all) gets no certificate.
    await assert.rejects(connect(proxy.port, { servername: "other.localhost" }));
    await assert.rejects(connect(proxy.port));
    // curl, by name, resolving to loopback.
    const r = await curl(["--cacert", B.cert, "--resolve", `b.localhost:${proxy.port}:127.0.0.1`, `https://b.localhost:${proxy.port}/`]);
    assert.equal(r.out, "app b", r.err);
  } finally {
    await proxy.stop();
    await upA.close();
    await upB.close();
  }
});

test("over HTTPS, a request head that never ends and an idle keep-alive connection are closed (headerTimeout, keepAliveTimeout)", async () => {
  const up = await startUpstream((_req, res) => res.end("ok"));
  const proxy = await startProxy(["-u", up.url, "--tls-cert", A.cert, "--tls-key", A.key, "--header-timeout", "600ms", "--keep-alive-timeout", "600ms"]);
  try {
    const closedWithin = async (s: tls.TLSSocket, ms: number) => {
      const t0 = Date.now();
      await until("the connection to close", () => s.destroyed || s.readyState === "closed" || (s as unknown as { _closed?: boolean })._closed, ms);
      return Date.now() - t0;
    };
    const slow = await connect(proxy.port);
    slow.on("data", () => {});
    slow.on("close", () => slow.destroy());
    slow.write("GET / HTTP/1.1\r\nHost: localhost\r\n");
    const idle = await connect(proxy.port);
    idle.on("close", () => idle.destroy());
    assert.deepEqual(await tlsRequest(idle, "/"), { status: 200, body: "ok" });
    assert.ok(await closedWithin(slow, 5000) < 5000);
    assert.ok(await closedWithin(idle, 5000) < 5000);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("wss://: a WebSocket over HTTPS reaches a real WebSocket server (websocketd) with X-Forwarded-Proto https; messages echo exactly", async () => {
  // websocketd hands request headers to its command as HTTP_* variables: the first message says what it got.
  const up = await websocketd(undefined, "sh", "-c", 'printf "proto=%s\\n" "$HTTP_X_FORWARDED_PROTO"; exec cat');
  const proxy = await startProxy(["-u", up.url, "--tls-cert", A.cert, "--tls-key", A.key]);
  try {
    const s = await connect(proxy.port);
    let got = Buffer.alloc(0);
    s.on("data", (d: Buffer) => got = Buffer.concat([got, d]));
    const key = randomBytes(16).toString("base64");
    s.write(`GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    const end = await until("the 101", () => got.indexOf("\r\n\r\n") + 1, 5000) - 1;
    const head = got.subarray(0, end).toString("latin1");
    assert.match(head, /^HTTP\/1\.1 101/);
    const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
    assert.match(head, new RegExp(`\r\nSec-WebSocket-Accept: ${accept.replace(/[+/]/g, "\\$&")}(\r|$)`, "i"));
    got = got.subarray(end + 4);
    // Unmasked text frames from the server, one at a time.
    const next = async (): Promise<string> => {
      const f = (await until("a server frame", () => got.length >= 2 && got.length >= 2 + (got[1] & 0x7f) ? got : null, 5000))!;
      assert.equal(f[0], 0x81, "a final text frame");
      assert.ok(f[1] < 126, "unmasked, short");
      const text = f.subarray(2, 2 + f[1]).toString();
      got = got.subarray(2 + f[1]);
      return text;
    };
    assert.equal(await next(), "proto=https");
    for (const text of ["hi", "über ✓ twice"]) {
      s.write(clientFrame(text));
      assert.equal(await next(), text);
    }
    s.destroy();
  } finally {
    await proxy.stop();
    await up.stop();
  }
});

test("HTTP/2: a held request is moved by a reload, an abandoned one released; server-sent events stream unbuffered; a POST body arrives whole", async () => {
  const dead = await freePort();
  const up = await startUpstream((req, res, body) => {
    if (req.url === "/sse") {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
      let i = 0;
      const t = setInterval(() => {
        res.write(`data: ${i++}\n\n`);
        if (i === 3) {
          clearInterval(t);
          res.end();
        }
      }, 300);
      return;
    }
    res.end(`${req.method} ${req.url} ${body.length}`);
  });
  const proxy = await startProxy(["-u", `:${dead}`, "--tls-cert", A.cert, "--tls-key", A.key, "--try-duration", "20s"]);
  try {
    const base = `https://localhost:${proxy.port}`;
    // A held h2 request whose client gives up (stream reset) is let go at once.
    const gone = await curl(["--cacert", A.cert, "--http2", "-m", "1", `${base}/gone`]);
    assert.equal(gone.code, 28);
    await until("the abandoned request to be released", async () => (await proxy.status()).held === 0, 3000);
    const held = curl(["--cacert", A.cert, "--http2", "-w", " %{http_version}", `${base}/held`]);
    await until("1 held", async () => (await proxy.status()).held === 1);
    const res = await proxy.admin("POST", "/reload", { upstreams: [up.url] });
    assert.equal(res.status, 200);
    assert.equal((await held).out, "GET /held 0 2");
    const big = join(dir, "big.bin");
    await writeFile(big, Buffer.alloc(3 * 1024 * 1024, 7));
    const post = await curl(["--cacert", A.cert, "--http2", "--data-binary", `@${big}`, "-w", " %{http_version}", `${base}/post`]);
    assert.equal(post.out, `POST /post ${3 * 1024 * 1024} 2`, post.err);
    // SSE: each event reaches the client as it is sent, not at the end.
    const { spawn } = await import("node:child_process");
    const child = spawn("curl", ["-sSN", "--cacert", A.cert, "--http2", `${base}/sse`], { stdio: ["ignore", "pipe", "pipe"] });
    const arrivals: number[] = [];
    child.stdout!.on("data", (d: Buffer) => {
      for (const _ of String(d).matchAll(/data: \d/g)) arrivals.push(Date.now());
    });
    await new Promise((r) => child.on("close", r));
    assert.equal(arrivals.length, 3);
    assert.ok(arrivals[2] - arrivals[0] >= 400, `events arrived ${arrivals[2] - arrivals[0]}ms apart: buffered`);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("dist/proxy.js alone (no node_modules) serves HTTPS and HTTP/2", async () => {
  const alone = await mkdtemp(join(tmpdir(), "holdup-tls-dist-"));
  await copyFile(join(ROOT, "dist/proxy.js"), join(alone, "proxy.js"));
  const up = await startUpstream((req, res) => res.end(`dist ${req.headers["x-forwarded-proto"]}`));
  const proxy = await startProxy(["-u", up.url, "--tls-cert", A.cert, "--tls-key", A.key], { entry: "proxy.js", cwd: alone });
  try {
    for (const v of ["--http1.1", "--http2"]) {
      const r = await curl(["--cacert", A.cert, v, "-w", " %{http_version}", `https://localhost:${proxy.port}/`]);
      assert.equal(r.out, `dist https ${v === "--http2" ? "2" : "1.1"}`, r.err);
    }
  } finally {
    await proxy.stop();
    await up.close();
    await rm(alone, { recursive: true, force: true });
  }
});
