/**
 * Forwarding, end to end: a real holdup process on this runtime in front of
 * real node:http upstreams on loopback. Covers the contract's "Forwarding"
 * section: methods, paths and bodies; hop-by-hop headers in both directions;
 * Host and X-Forwarded-*; compressed responses whose Content-Encoding matches
 * the bytes; streaming (SSE); big and chunked uploads; redirects passed
 * through; bodiless responses; base paths; upstream keep-alive; the access log.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import zlib from "node:zlib";
import {
  nodeGet,
  type Proxy,
  rawRequest,
  startProxy,
  startUpstream,
  type Upstream,
} from "./helpers.ts";

// ------------------------------------------------------------------ fixtures

/** Compressible, but not trivially so: ~40 KB of lines with varying numbers. */
const ORIGINAL = Buffer.from(
  Array.from({ length: 800 }, (_, i) => `line ${i}: ${(i * 7919) % 10007} holdup forwards bytes untouched\n`).join(""),
);
const GZIPPED = zlib.gzipSync(ORIGINAL);
const BROTLI = zlib.brotliCompressSync(ORIGINAL);
const DEFLATED = zlib.deflateSync(ORIGINAL);

/** SSE responses waiting for the test to let them finish. */
const sseRelease: Array<() => void> = [];

let up: Upstream; // behind `proxy`
let base: Upstream; // behind `baseProxy`, which names a base path /app
let proxy: Proxy;
let baseProxy: Proxy;

function route(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
  const path = (req.url ?? "/").split("?")[0];
  switch (path) {
    case "/hop-response":
      // Raw header list so that every name goes out exactly as written.
      res.writeHead(200, [
        ["Content-Type", "text/plain"],
        ["Connection", "x-drop"],
        ["X-Drop", "must not reach the client"],
        ["Keep-Alive", "timeout=5, max=100"],
        ["Proxy-Authenticate", "Basic realm=\"upstream\""],
        ["Trailer", "X-Checksum"],
        ["Upgrade", "foo/1"],
        ["X-Keep", "kept"],
      ].flat());
      res.end("hop");
      return;
    case "/gzip":
    case "/br":
    case "/deflate":
    case "/GZIP":
    case "/BR": {
      const encoding = path.slice(1); // content-codings are case-insensitive: "GZIP" is gzip
      const lower = encoding.toLowerCase();
      const bytes = lower === "gzip" ? GZIPPED : lower === "br" ? BROTLI : DEFLATED;
      // Sent compressed whatever the request's Accept-Encoding says, as many apps do.
      res.writeHead(200, { "content-type": "text/plain", "content-encoding": encoding, "content-length": bytes.length });
      res.end(bytes);
      return;
    }
    case "/sse":
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write("data: first\n\n");
      sseRelease.push(() => res.end("data: last\n\n"));
      return;
    case "/redirect":
      res.writeHead(302, { location: "/elsewhere", "content-type": "text/plain" });
      res.end("moved");
      return;
    case "/cookies":
      res.writeHead(200, [
        ["Content-Type", "text/plain"],
        ["Set-Cookie", "a=1; Path=/"],
        ["Set-Cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"],
      ].flat());
      res.end("cookies");
      return;
    case "/fixed":
      res.writeHead(200, { "content-type": "text/plain", "content-length": "11" });
      res.end(req.method === "HEAD" ? undefined : "hello world");
      return;
    case "/status/204":
      res.writeHead(204, { "x-status": "204" });
      res.end();
      return;
    case "/status/304":
      res.writeHead(304, { etag: '"v1"', "x-status": "304" });
      res.end();
      return;
    case "/sha256":
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(createHash("sha256").update(body).digest("hex"));
      return;
    default:
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ method: req.method, url: req.url, bodyLength: body.length }));
  }
}

before(async () => {
  up = await startUpstream(route);
  base = await startUpstream(route);
  proxy = await startProxy(["-u", up.url, "--try-duration", "5s"]);
  baseProxy = await startProxy(["-u", `${base.url}/app`, "--try-duration", "5s"]);
});

after(async () => {
  for (const release of sseRelease.splice(0)) release();
  await Promise.all([proxy?.stop(), baseProxy?.stop()]);
  await Promise.all([up?.close(), base?.close()]);
});

// ------------------------------------------------------------------ helpers

/** The requests `u` received for `path` (query ignored) since index `from`. */
function receivedFor(u: Upstream, path: string, from = 0) {
  return u.received.slice(from).filter((r) => r.url.split("?")[0] === path);
}

/** Header names (lowercased) as they arrived on the wire at the upstream. */
function rawNames(rawHeaders: string[]): string[] {
  return rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
}

function assertHeldMs(value: string | string[] | undefined | null): void {
  assert.ok(typeof value === "string" && /^\d+$/.test(value), `X-Holdup-Held-Ms should be a whole number, got ${value}`);
}

/**
 * A request through node:http: `chunks` are written one by one with `pauseMs`
 * between them (no Content-Length unless given: chunked on the wire).
 */
function nodeRequest(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; chunks?: Buffer[]; pauseMs?: number } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? "GET", headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    const chunks = [...(opts.chunks ?? [])];
    const next = () => {
      const c = chunks.shift();
      if (!c) return req.end();
      req.write(c);
      setTimeout(next, opts.pauseMs ?? 0);
    };
    next();
  });
}

/** Decodes `body` as `encoding` says; throws when it does not decode. */
function decode(encoding: string, body: Buffer): Buffer {
  switch (encoding.trim().toLowerCase()) {
    case "gzip":
      return zlib.gunzipSync(body);
    case "br":
      return zlib.brotliDecompressSync(body);
    case "deflate":
      return zlib.inflateSync(body);
    default:
      throw new Error(`unexpected content-encoding ${encoding}`);
  }
}

/**
 * Content-Encoding must match the bytes: decoding with the header's encoding
 * gives the original; without the header, the bytes are the original.
 */
function assertEncodingMatches(res: { headers: http.IncomingHttpHeaders; body: Buffer }, what: string): void {
  const encoding = res.headers["content-encoding"];
  let plain: Buffer;
  try {
    plain = encoding ? decode(String(encoding), res.body) : res.body;
  } catch (e) {
    assert.fail(`${what}: says content-encoding ${encoding}, but the body does not decode (${(e as Error).message})`);
  }
  assert.ok(plain.equals(ORIGINAL), `${what}: content-encoding ${encoding ?? "(none)"} does not match the body bytes`);
  const length = res.headers["content-length"];
  if (length !== undefined) assert.equal(Number(length), res.body.length, `${what}: content-length is stale`);
}

// ------------------------------------------------------------------ methods, paths, bodies

test("forwards any method, path and query, with the body", async () => {
  const cases: Array<{ method: string; path: string; body?: string }> = [
    { method: "GET", path: "/a/b%20c/d?x=1&y=%2F&q=a+b" },
    { method: "POST", path: "/submit?id=7", body: "name=holdup&kind=proxy" },
    { method: "PUT", path: "/items/42", body: JSON.stringify({ n: 42 }) },
    { method: "PATCH", path: "/items/42?fields=n", body: "{\"n\":43}" },
    { method: "DELETE", path: "/items/42", body: "" },
    { method: "OPTIONS", path: "/cors?origin=x", body: "" },
    { method: "PROPFIND", path: "/dav/?depth=1", body: "<propfind xmlns=\"DAV:\"/>" },
  ];
  for (const c of cases) {
    const from = up.received.length;
    const headers: Record<string, string> = { "x-case": c.method };
    if (c.body !== undefined) headers["content-length"] = String(Buffer.byteLength(c.body));
    const res = await nodeRequest(proxy.url + c.path, {
      method: c.method,
      headers,
      chunks: c.body ? [Buffer.from(c.body)] : [],
    });
    assert.equal(res.status, 200, `${c.method} ${c.path}`);
    assertHeldMs(res.headers["x-holdup-held-ms"]);
    const got = up.received.slice(from);
    assert.equal(got.length, 1, `${c.method} ${c.path} reached the upstream once`);
    assert.equal(got[0].method, c.method);
    assert.equal(got[0].url, c.path);
    assert.equal(got[0].headers["x-case"], c.method);
    assert.equal(got[0].body.toString(), c.body ?? "");
  }
});

// ------------------------------------------------------------------ headers

test("request: hop-by-hop headers, and the headers Connection names, are not forwarded", async () => {
  const from = up.received.length;
  const res = await rawRequest(
    proxy.port,
    [
      "GET /hop-request HTTP/1.1",
      `Host: 127.0.0.1:${proxy.port}`,
      "Connection: close, x-custom",
      "Keep-Alive: timeout=5",
      "Proxy-Connection: keep-alive",
      "TE: trailers",
      "Trailer: X-Checksum",
      "Upgrade: foo/1",
      "Proxy-Authorization: Basic dXNlcjpwYXNz",
      "X-Custom: named by Connection",
      "X-Keep: kept",
    ].join("\r\n"),
  );
  assert.equal(res.status, 200);
  const [r] = receivedFor(up, "/hop-request", from);
  assert.ok(r, "the upstream got the request");
  const names = rawNames(r.rawHeaders);
  for (const hop of ["keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authorization", "x-custom"]) {
    assert.ok(!names.includes(hop), `${hop} reached the upstream: ${JSON.stringify(r.rawHeaders)}`);
  }
  // Connection is per hop: holdup may open its own with keep-alive, never pass the client's tokens on.
  const connection = r.headers.connection ?? "";
  assert.ok(!/x-custom|close/i.test(connection), `client's Connection reached the upstream: ${connection}`);
  assert.equal(r.headers["x-keep"], "kept", "an end-to-end header was dropped");
});

test("response: hop-by-hop headers, and the headers Connection names, are not passed back", async () => {
  const res = await rawRequest(proxy.port, `GET /hop-response HTTP/1.1\r\nHost: 127.0.0.1:${proxy.port}\r\nConnection: close`);
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), "hop");
  const names = res.headers.map(([k]) => k);
  for (const hop of ["x-drop", "keep-alive", "proxy-authenticate", "trailer", "upgrade"]) {
    assert.ok(!names.includes(hop), `${hop} reached the client: ${JSON.stringify(res.headers)}`);
  }
  for (const [k, v] of res.headers) {
    if (k === "connection") assert.ok(!/x-drop/i.test(v), `upstream's Connection reached the client: ${v}`);
  }
  assert.equal(res.header("x-keep"), "kept");
  assertHeldMs(res.header("x-holdup-held-ms"));
});

test("each Set-Cookie from the upstream reaches the client as its own header", async () => {
  const res = await rawRequest(proxy.port, "GET /cookies HTTP/1.1\r\nHost: x\r\nConnection: close");
  assert.equal(res.status, 200);
  const cookies = res.headers.filter(([k]) => k === "set-cookie").map(([, v]) => v);
  assert.deepEqual(cookies, ["a=1; Path=/", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"]);
});

test("the upstream sees the client's Host, X-Forwarded-Host/-Proto and X-Forwarded-For with the client appended", async () => {
  const from = up.received.length;
  const res = await rawRequest(
    proxy.port,
    "GET /whoami HTTP/1.1\r\nHost: app.example.test:8443\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: close",
  );
  assert.equal(res.status, 200);
  const [r] = receivedFor(up, "/whoami", from);
  assert.ok(r, "the upstream got the request");
  assert.equal(r.headers.host, "app.example.test:8443");
  assert.equal(r.headers["x-forwarded-host"], "app.example.test:8443");
  assert.equal(r.headers["x-forwarded-proto"], "http");
  assert.equal(r.headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");

  // Without a prior value, X-Forwarded-For is just the client.
  const from2 = up.received.length;
  await rawRequest(proxy.port, "GET /whoami2 HTTP/1.1\r\nHost: other.test\r\nConnection: close");
  const [r2] = receivedFor(up, "/whoami2", from2);
  assert.equal(r2.headers.host, "other.test");
  assert.equal(r2.headers["x-forwarded-for"], "127.0.0.1");
});

// ------------------------------------------------------------------ compression

for (const encoding of ["gzip", "br", "deflate", "GZIP", "BR"]) {
  test(`a ${encoding} response: Content-Encoding matches the bytes, and it decodes to the original`, async () => {
    // node:http does not decode: these are the bytes on the wire.
    const wire = await nodeGet(`${proxy.url}/${encoding}`, { "accept-encoding": "gzip, deflate, br" });
    assert.equal(wire.status, 200);
    assertEncodingMatches(wire, `${encoding} via node:http`);
    assertHeldMs(wire.headers["x-holdup-held-ms"]);

    // And byte-exact on a raw socket (no client-side framing help).
    const raw = await rawRequest(
      proxy.port,
      `GET /${encoding} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: close`,
    );
    assertEncodingMatches({ headers: Object.fromEntries(raw.headers), body: raw.body }, `${encoding} raw`);

    // fetch() on this runtime decodes it back to the original. (Deno's fetch does not decode
    // deflate at all, even straight from an upstream; the wire checks above cover deflate there.)
    if (encoding === "deflate" && "Deno" in globalThis) return;
    const res = await fetch(`${proxy.url}/${encoding}`, { headers: { "accept-encoding": "gzip, deflate, br" } });
    assert.equal(res.status, 200);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(ORIGINAL), `${encoding} via fetch`);
  });
}

test("a client asking for identity still gets a body that matches its Content-Encoding", async () => {
  for (const encoding of ["gzip", "br", "GZIP"]) {
    const wire = await nodeGet(`${proxy.url}/${encoding}`, { "accept-encoding": "identity" });
    assert.equal(wire.status, 200);
    assertEncodingMatches(wire, `${encoding} with Accept-Encoding: identity`);
    const none = await nodeGet(`${proxy.url}/${encoding}`); // no Accept-Encoding at all
    assertEncodingMatches(none, `${encoding} without Accept-Encoding`);
  }
});

test("compressed responses pass through as the upstream sent them: same bytes, same Content-Length", async () => {
  for (const [encoding, bytes] of [["gzip", GZIPPED], ["br", BROTLI]] as const) {
    const wire = await nodeGet(`${proxy.url}/${encoding}`, { "accept-encoding": "gzip, br" });
    assert.equal(wire.status, 200);
    assert.equal(wire.headers["content-encoding"], encoding);
    assert.equal(wire.headers["content-length"], String(bytes.length), `${encoding}: Content-Length kept`);
    assert.ok(wire.body.equals(bytes), `${encoding}: ${wire.body.length} bytes on the wire, the upstream sent ${bytes.length}`);
  }
});

test("Accept-Encoding reaches the upstream as the client sent it, and is not added when it sent none", async () => {
  const from = up.received.length;
  await nodeGet(`${proxy.url}/ae-none`);
  await nodeGet(`${proxy.url}/ae-some`, { "accept-encoding": "br;q=1, gzip;q=0.5" });
  assert.equal(receivedFor(up, "/ae-none", from)[0].headers["accept-encoding"], undefined);
  assert.equal(receivedFor(up, "/ae-some", from)[0].headers["accept-encoding"], "br;q=1, gzip;q=0.5");
});

// ------------------------------------------------------------------ streaming

test("server-sent events: the first event reaches the client while the upstream still holds the response open", async () => {
  const pending = sseRelease.length;
  let holdingWhenFirstArrived = false;
  const result = await new Promise<{ first: string; rest: string; status: number; type: string | undefined }>(
    (resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no complete SSE response within 10s")), 10_000);
      const req = http.get(`${proxy.url}/sse`, { agent: false, headers: { accept: "text/event-stream" } }, (res) => {
        let text = "";
        let first = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          text += d;
          if (!first && text.includes("\n\n")) {
            first = text;
            // The upstream has written one event and not ended: only now is it let go.
            holdingWhenFirstArrived = sseRelease.length === pending + 1;
            sseRelease.pop()?.();
          }
        });
        res.on("end", () => {
          clearTimeout(timer);
          resolve({ first, rest: text.slice(first.length), status: res.statusCode!, type: res.headers["content-type"] });
        });
        res.on("error", reject);
      });
      req.on("error", reject);
    },
  );
  assert.ok(holdingWhenFirstArrived, "the first event arrived only after the upstream ended its response");
  assert.equal(result.status, 200);
  assert.equal(result.type, "text/event-stream");
  assert.equal(result.first, "data: first\n\n");
  assert.equal(result.rest, "data: last\n\n");
});

// ------------------------------------------------------------------ uploads

test("a 5 MB POST arrives byte-exact", async () => {
  const payload = randomBytes(5 * 1024 * 1024);
  const from = up.received.length;
  const res = await nodeRequest(`${proxy.url}/sha256`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream", "content-length": String(payload.length) },
    chunks: [payload],
  });
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), createHash("sha256").update(payload).digest("hex"));
  const [r] = receivedFor(up, "/sha256", from);
  assert.ok(r.body.equals(payload), `upstream got ${r.body.length} bytes, not the ${payload.length} sent`);
});

test("a chunked upload (no Content-Length, written with pauses) arrives byte-exact", async () => {
  // Small (buffered for replay) and larger than maxBodyBuffer's 1 MiB (streamed).
  for (const [count, size] of [[5, 3_000], [6, 256 * 1024]]) {
    const chunks = Array.from({ length: count }, () => randomBytes(size));
    const whole = Buffer.concat(chunks);
    const from = up.received.length;
    const res = await nodeRequest(`${proxy.url}/sha256`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" }, // node:http sends chunked
      chunks,
      pauseMs: 30,
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), createHash("sha256").update(whole).digest("hex"), `${count}×${size} upload`);
    const [r] = receivedFor(up, "/sha256", from);
    assert.ok(r.body.equals(whole), `${count}×${size}: upstream got ${r.body.length} bytes`);
  }

  // The same over a raw socket, with explicit chunk framing.
  const from = up.received.length;
  const parts = ["hello, ", "chunked ", "world"];
  const framed = parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join("") + "0\r\n\r\n";
  const raw = await rawRequest(
    proxy.port,
    "POST /sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close",
    framed,
  );
  assert.equal(raw.status, 200);
  const [r] = receivedFor(up, "/sha256", from);
  assert.equal(r.body.toString(), parts.join(""));
});

// ------------------------------------------------------------------ status codes

test("a 302 is passed through with its Location, never followed", async () => {
  const from = up.received.length;
  const res = await nodeGet(`${proxy.url}/redirect`);
  assert.equal(res.status, 302);
  assert.equal(res.headers.location, "/elsewhere");
  assert.equal(res.body.toString(), "moved");
  assertHeldMs(res.headers["x-holdup-held-ms"]);
  const got = up.received.slice(from);
  assert.deepEqual(got.map((r) => r.url), ["/redirect"], "the upstream saw exactly one request");
});

test("HEAD, 204 and 304 responses have no body", async () => {
  const from = up.received.length;
  const head = await rawRequest(proxy.port, "HEAD /fixed HTTP/1.1\r\nHost: x\r\nConnection: close");
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0, `HEAD got a body: ${head.body}`);
  // The upstream's Content-Length describes the GET body: it is passed on, as nginx and Caddy do.
  assert.equal(head.header("content-length"), "11");
  assertHeldMs(head.header("x-holdup-held-ms"));
  assert.deepEqual(receivedFor(up, "/fixed", from).map((r) => r.method), ["HEAD"]);

  for (const status of [204, 304]) {
    const res = await rawRequest(proxy.port, `GET /status/${status} HTTP/1.1\r\nHost: x\r\nConnection: close`);
    assert.equal(res.status, status);
    assert.equal(res.body.length, 0, `${status} got a body: ${res.body}`);
    assert.equal(res.header("x-status"), String(status));
    assert.equal(res.header("transfer-encoding"), undefined, `${status} must not be chunked`);
    assertHeldMs(res.header("x-holdup-held-ms"));
    if (status === 304) assert.equal(res.header("etag"), '"v1"');
  }
});

// ------------------------------------------------------------------ upstream URL and connections

test("an upstream with a base path gets it prefixed to the request's path", async () => {
  const from = base.received.length;
  const res = await nodeGet(`${baseProxy.url}/x?y=1`);
  assert.equal(res.status, 200);
  assert.deepEqual(JSON.parse(res.body.toString()).url, "/app/x?y=1");
  assert.deepEqual(base.received.slice(from).map((r) => r.url), ["/app/x?y=1"]);

  const root = await nodeGet(`${baseProxy.url}/`);
  assert.equal(JSON.parse(root.body.toString()).url, "/app/");
});

test("upstream connections are kept alive and reused", async () => {
  await nodeGet(`${baseProxy.url}/warm-up`); // the first request may come after a reachability probe
  const before = base.connections;
  for (let i = 0; i < 20; i++) {
    const res = await nodeGet(`${baseProxy.url}/reuse/${i}`);
    assert.equal(res.status, 200);
  }
  const opened = base.connections - before;
  assert.ok(opened <= 3, `20 sequential GETs opened ${opened} upstream connections`);
});

// ------------------------------------------------------------------ access log

test("each request writes a JSON access line", async () => {
  const path = `/logged?id=${randomBytes(6).toString("hex")}`;
  const res = await nodeGet(proxy.url + path);
  assert.equal(res.status, 200);
  const line = await proxy.waitForLine(`access line for ${path}`, (l) => l.msg === "request" && l.path === path);
  assert.equal(line.method, "GET");
  assert.equal(line.status, 200);
  assert.equal(line.bytes, res.body.length);
  assert.equal(typeof line.duration_ms, "number");
  assert.ok((line.duration_ms as number) >= 0);
  assert.equal(typeof line.held_ms, "number");
  assert.equal(line.upstream, up.url);
});

test("--log off writes no access line, while events stay JSON lines", async () => {
  const proxy = await startProxy(["-u", up.url, "--log", "off"]);
  try {
    const path = `/not-logged-${randomBytes(4).toString("hex")}`;
    const from = up.received.length;
    assert.equal((await nodeGet(`${proxy.url}${path}`)).status, 200);
    assert.equal(receivedFor(up, path, from).length, 1);
    await nodeGet(`${proxy.url}${path}/2`);
  } finally {
    await proxy.stop();
  }
  // The log is batched per tick and flushed on shutdown: check once it exited.
  assert.ok(proxy.lines.some((l) => l.msg === "stopped"), "holdup flushed its log on shutdown");
  assert.ok(proxy.lines.every((l) => l.time), `every line is JSON:\n${proxy.stderr}`);
  assert.ok(!proxy.stderr.includes("/not-logged-"), `an access line was written with --log off:\n${proxy.stderr}`);
});
