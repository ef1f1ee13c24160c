/**
 * Hostile input, as an attacker sends it: foreign web pages against the admin
 * API, Host headers that try to steer the upstream path, clients that leave,
 * stall or never speak, file-descriptor exhaustion, broken upstream framing.
 * Raw sockets wherever a polite client would hide the attack.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { once } from "node:events";
import { gunzipSync, gzipSync } from "node:zlib";
import { freePort, rawRequest, run, runtimeCommand, RUNTIME, startProxy, startUpstream, until } from "./helpers.ts";

/** A raw connection that records what it receives and when it closes. */
async function rawConn(port: number) {
  const sock = net.connect(port, "127.0.0.1");
  await once(sock, "connect");
  const t0 = performance.now();
  const state = { data: "", closed: false, closedAfter: -1 };
  sock.on("data", (d) => state.data += d.toString("latin1"));
  sock.on("error", () => {});
  sock.on("close", () => {
    state.closed = true;
    state.closedAfter = performance.now() - t0;
  });
  return { sock, state };
}

// ------------------------------------------------------------------ admin API

test("a foreign web page's text/plain POST to /pause, /reload and /stop is refused 403; nothing changes", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url]);
  try {
    const evil = { origin: "http://evil.example", "content-type": "text/plain" };
    for (const [path, body] of [["/pause", ""], ["/reload", JSON.stringify({ upstreams: ["http://attacker.example"] })], ["/stop", '{"message":"pwned"}'], ["/resume", ""]]) {
      const r = await fetch(proxy.adminUrl + path, { method: "POST", headers: evil, body });
      assert.equal(r.status, 403, path);
      await r.body?.cancel();
    }
    // A page on another loopback port is a foreign origin too.
    const r = await fetch(proxy.adminUrl + "/pause", { method: "POST", headers: { origin: "http://127.0.0.1:1" } });
    assert.equal(r.status, 403);
    await r.body?.cancel();
    const s = await proxy.status();
    assert.equal(s.mode, "running");
    assert.equal(s.configVersion, 1);
    assert.deepEqual((s.config as { upstreams: string[] }).upstreams, [up.url]);
    // The admin listener's own origin may (the dashboard's calls).
    const own = await fetch(proxy.adminUrl + "/pause", { method: "POST", headers: { origin: proxy.adminUrl } });
    assert.equal(own.status, 200);
    assert.equal((await own.json()).mode, "paused");
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a JSON body without Content-Type: application/json is refused 415; the config stays", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url]);
  try {
    const r = await fetch(proxy.adminUrl + "/reload", { method: "POST", body: '{"tryInterval":"1s"}', headers: { "content-type": "text/plain" } });
    assert.equal(r.status, 415);
    assert.match((await r.json()).error, /application\/json/);
    assert.equal((await proxy.status()).configVersion, 1);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a Host that is not the admin API's (DNS rebinding) gets 403 on every admin path; admin.hosts allows a name, and *.domain its subdomains", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url, "--admin-host", "holdup.internal", "--admin-host", "*.ops.example"]);
  try {
    for (const [method, path] of [["GET", "/status"], ["GET", "/metrics"], ["GET", "/healthz"], ["POST", "/pause"], ["POST", "/reload"], ["GET", "/nope"]]) {
      const r = await rawRequest(proxy.adminPort, `${method} ${path} HTTP/1.1\nHost: evil.example:${proxy.adminPort}\nContent-Length: 0\nConnection: close`);
      assert.equal(r.status, 403, `${method} ${path}`);
      assert.doesNotMatch(r.body.toString(), /upstreams|holdup_requests/);
    }
    for (const host of [`localhost:${proxy.adminPort}`, `127.0.0.1:${proxy.adminPort}`, "[::1]", `holdup.internal:${proxy.adminPort}`, "a.ops.example", `A.B.Ops.Example:${proxy.adminPort}`]) {
      const r = await rawRequest(proxy.adminPort, `GET /healthz HTTP/1.1\nHost: ${host}\nConnection: close`);
      assert.equal(r.status, 200, host);
    }
    for (const host of ["ops.example", "evilops.example", "a.ops.example.evil", "sub.holdup.internal"]) {
      const r = await rawRequest(proxy.adminPort, `GET /status HTTP/1.1\nHost: ${host}\nConnection: close`);
      assert.equal(r.status, 403, host);
    }
    assert.equal((await proxy.status()).mode, "running");
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a 200 MB admin body is refused 413 before it is read, and a chunked one past 1 MiB too", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url]);
  try {
    const { sock, state } = await rawConn(proxy.adminPort);
    sock.write(`POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${200 * 1024 * 1024}\r\n\r\n{"a":`);
    await until("a 413 answer", () => state.data.includes("\r\n\r\n"), 5000);
    assert.match(state.data, /^HTTP\/1\.1 413 /);
    await until("the connection closed", () => state.closed, 5000);

    const chunked = await rawConn(proxy.adminPort);
    chunked.sock.write("POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    const chunk = "x".repeat(64 * 1024);
    for (let i = 0; i < 20 && !chunked.state.closed; i++) {
      chunked.sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      await new Promise((r) => setImmediate(r));
    }
    await until("a 413 answer to the chunked body", () => chunked.state.data.includes("\r\n\r\n"), 5000);
    assert.match(chunked.state.data, /^HTTP\/1\.1 413 /);
    chunked.sock.destroy();
    assert.equal((await proxy.status()).configVersion, 1);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a reload error never quotes the config file's contents", async () => {
  const dir = await mkdtemp(join(tmpdir(), "holdup-sec-"));
  const up = await startUpstream();
  const file = join(dir, "holdup.json");
  await writeFile(file, JSON.stringify({ upstreams: [up.url] }));
  const proxy = await startProxy(["-c", file]);
  try {
    await writeFile(file, "root:x:0:0:SECRET-LINE:/root:/bin/bash\n");
    const r = await fetch(proxy.adminUrl + "/reload", { method: "POST" });
    assert.equal(r.status, 400);
    const text = await r.text();
    assert.match(text, /not valid JSON/);
    assert.doesNotMatch(text, /SECRET|root:x/);
    assert.doesNotMatch(proxy.stderr, /SECRET/);
  } finally {
    await proxy.stop();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------ request-target and Host

test("the Host header cannot steer the upstream path: the upstream gets the client's own target, or holdup answers 400", async () => {
  const up = await startUpstream();
  const base = await startUpstream();
  const proxy = await startProxy(["-u", up.url]);
  const based = await startProxy(["-u", `${base.url}/app`]);
  try {
    for (const host of ["a/admin#", "a b", "a?x", "a@b", ""]) {
      const r = await rawRequest(proxy.port, `GET /public/page HTTP/1.1\nHost: ${host}\nConnection: close`);
      assert.equal(r.status, 400, JSON.stringify(host));
    }
    const r2 = await rawRequest(based.port, "GET /x HTTP/1.1\nHost: a b\nConnection: close");
    assert.equal(r2.status, 400);
    assert.equal(up.received.length + base.received.length, 0, "nothing reached an upstream");
    // A well-formed request reaches it with exactly its own path.
    const ok = await rawRequest(based.port, "GET /x/y?z=%2F&w=[1] HTTP/1.1\nHost: shop.example:8080\nConnection: close");
    assert.equal(ok.status, 200);
    assert.equal(base.received[0].url, "/app/x/y?z=%2F&w=[1]");
    assert.equal(base.received[0].headers.host, "shop.example:8080");
  } finally {
    await proxy.stop();
    await based.stop();
    await up.close();
    await base.close();
  }
});

test("two Host headers get 400, CONNECT gets 405, and an absolute-form target cannot claim https", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url]);
  try {
    const two = await rawRequest(proxy.port, "GET /x HTTP/1.1\nHost: a\nHost: b\nConnection: close");
    assert.equal(two.status, 400);
    const connect = await rawRequest(proxy.port, "CONNECT example.com:443 HTTP/1.1\nHost: example.com:443");
    assert.equal(connect.status, 405);
    assert.equal(up.received.length, 0);
    const abs = await rawRequest(proxy.port, "GET https://a/x?y HTTP/1.1\nHost: a\nConnection: close");
    assert.equal(abs.status, 200);
    assert.equal(up.received[0].url, "/x?y");
    assert.equal(up.received[0].headers["x-forwarded-proto"], "http");
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("edge entry: Host: a/_holdup cannot reach the mounted admin API", async () => {
  const up = await startUpstream();
  const port = await freePort();
  const env = { HOLDUP_UPSTREAMS: up.url, HOLDUP_ADMIN_TOKEN: "t0ken", HOLDUP_LOG: "json", PORT: String(port) };
  const command: [string, string[]] = RUNTIME === "deno"
    ? [process.execPath, ["serve", "--allow-net", "--allow-env", "--allow-read", "--host", "127.0.0.1", "--port", String(port), "src/edge.ts"]]
    : [process.execPath, ["src/edge.ts"]];
  const proxy = await startProxy([], { command, rawArgs: true, port, env });
  try {
    const r = await rawRequest(port, "GET /status HTTP/1.1\nHost: a/_holdup\nAuthorization: Bearer t0ken\nConnection: close");
    assert.equal(r.status, 400);
    assert.doesNotMatch(r.body.toString(), /configVersion/);
    const ok = await rawRequest(port, "GET /status HTTP/1.1\nHost: a\nConnection: close");
    assert.equal(ok.status, 200);
    assert.equal(up.received.at(-1)!.url, "/status");
  } finally {
    await proxy.stop();
    await up.close();
  }
});

// ------------------------------------------------------------------ clients that leave, stall or never speak

test("held POSTs whose clients left (1 KB+ bodies, Expect: 100-continue) are never delivered later", async () => {
  const dead = await freePort();
  const proxy = await startProxy(["-u", `:${dead}`, "--try-interval", "100ms", "--max-held", "30"]);
  try {
    const conns = [];
    for (let i = 0; i < 10; i++) {
      const c = await rawConn(proxy.port);
      const body = `ghost-${i}-` + "x".repeat(2048);
      const expect = i % 2 ? "Expect: 100-continue\r\n" : "";
      c.sock.write(`POST /ghost HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n${expect}\r\n${body}`);
      conns.push(c);
    }
    await until("10 held", async () => (await proxy.status()).held === 10);
    for (const c of conns) c.sock.destroy();
    await until("none held", async () => (await proxy.status()).held === 0);
    const up = await startUpstream(undefined, dead);
    try {
      assert.equal((await fetch(proxy.url + "/alive")).status, 200);
      assert.deepEqual(up.received.map((r) => r.url), ["/alive"], "no ghost POST reached the upstream");
      assert.equal(proxy.accessLines().filter((l) => l.status === 499).length, 10);
    } finally {
      await up.close();
    }
  } finally {
    await proxy.stop();
  }
});

test("a half-sent request head is closed after headerTimeout; an idle keep-alive connection after keepAliveTimeout; a stalled body after bodyTimeout", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url, "--header-timeout", "400ms", "--keep-alive-timeout", "400ms", "--body-timeout", "400ms"]);
  try {
    const half = await rawConn(proxy.port);
    half.sock.write("GET / HTTP/1.1\r\nHost: a\r\n");
    const idle = await rawConn(proxy.port);
    idle.sock.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    const body = await rawConn(proxy.port);
    body.sock.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc");
    await until("all three closed", () => half.state.closed && idle.state.closed && body.state.closed, 8000);
    assert.ok(half.state.closedAfter >= 300, `head closed after ${half.state.closedAfter} ms`);
    assert.match(idle.state.data, /^HTTP\/1\.1 200 /, "the keep-alive request was answered first");
    assert.ok(idle.state.closedAfter >= 300, `idle closed after ${idle.state.closedAfter} ms`);
    assert.ok(body.state.closedAfter >= 300, `body closed after ${body.state.closedAfter} ms`);
    assert.equal(up.received.filter((r) => r.method === "POST").length, 0);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a held request is exempt from the connection timeouts", async () => {
  const port = await freePort();
  const proxy = await startProxy(["-u", `:${port}`, "--header-timeout", "300ms", "--keep-alive-timeout", "300ms", "--body-timeout", "300ms", "--try-interval", "100ms"]);
  try {
    const held = fetch(proxy.url + "/held", { method: "POST", body: "kept" }).then(async (r) => [r.status, await r.text()]);
    await until("1 held", async () => (await proxy.status()).held === 1);
    // Time itself is what is tested here: stay held for four times every timeout, then start the upstream.
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal((await proxy.status()).held, 1);
    const up = await startUpstream((_q, res, b) => res.end(`got ${b}`), port);
    try {
      assert.deepEqual(await held, [200, "got kept"]);
    } finally {
      await up.close();
    }
  } finally {
    await proxy.stop();
  }
});

test("400 idle connections under ulimit -n 256 do not end or wedge holdup: a normal request still succeeds", async () => {
  const up = await startUpstream((_q, res) => res.end("fine"));
  const [cmd, args] = runtimeCommand("src/proxy.ts", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log", "json", "-u", up.url]);
  const proxy = await startProxy([], { rawArgs: true, command: ["bash", ["-c", 'ulimit -n 256 && exec "$0" "$@"', cmd, ...args]] });
  const socks: net.Socket[] = [];
  try {
    for (let i = 0; i < 400; i++) {
      const s = net.connect(proxy.port, "127.0.0.1");
      s.on("error", () => {});
      socks.push(s);
    }
    await until("the connections were made or refused", () => socks.every((s) => !s.connecting), 10_000);
    const text = await until("a normal request to succeed", async () => {
      try {
        const r = await fetch(proxy.url + "/", { signal: AbortSignal.timeout(2000) });
        return r.status === 200 ? await r.text() : null;
      } catch {
        return null;
      }
    }, 15_000, 100);
    assert.equal(text, "fine");
    assert.equal(proxy.child.exitCode, null, "holdup is still running");
    for (const s of socks) s.destroy();
    // And it keeps serving afterwards.
    assert.equal(await until("served after the flood", async () => {
      try {
        return (await fetch(proxy.url + "/", { signal: AbortSignal.timeout(2000) })).status === 200;
      } catch {
        return false;
      }
    }, 10_000, 100), true);
  } finally {
    for (const s of socks) s.destroy();
    await proxy.stop();
    await up.close();
  }
});

test("maxHeldBodyBytes bounds the bodies held at once: past it, 503 with Retry-After", async () => {
  const dead = await freePort();
  const proxy = await startProxy(["-u", `:${dead}`, "--max-held-body-bytes", "10KiB", "--try-duration", "5s"]);
  try {
    const first = fetch(proxy.url + "/a", { method: "POST", body: "a".repeat(6000) }).then((r) => r.status);
    await until("1 held", async () => (await proxy.status()).held === 1);
    const second = await fetch(proxy.url + "/b", { method: "POST", body: "b".repeat(6000) });
    assert.equal(second.status, 503);
    assert.equal(second.headers.get("retry-after"), "1", "delay-seconds, as for maxHeld");
    await second.body?.cancel();
    assert.equal((await proxy.status()).held, 1);
    // A bodiless request is still held.
    const third = fetch(proxy.url + "/c").then((r) => r.status);
    await until("2 held", async () => (await proxy.status()).held === 2);
    const up = await startUpstream(undefined, dead);
    try {
      assert.deepEqual(await Promise.all([first, third]), [200, 200]);
    } finally {
      await up.close();
    }
  } finally {
    await proxy.stop();
  }
});

// ------------------------------------------------------------------ broken upstreams

/** An upstream that answers every request with `reply` bytes, then closes. */
async function rawUpstream(reply: Buffer | string) {
  const server = net.createServer((s) => {
    s.once("data", () => s.end(reply));
    s.on("error", () => {});
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

test("an upstream with both Content-Length and Transfer-Encoding gets 502, never a silently truncated 200", async () => {
  const up = await rawUpstream("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  const proxy = await startProxy(["-u", up.url]);
  try {
    const r = await rawRequest(proxy.port, "GET /x HTTP/1.1\nHost: a\nConnection: close");
    assert.equal(r.status, 502);
    assert.doesNotMatch(r.body.toString(), /127\.0\.0\.1|hel/);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("two Content-Encoding values: passed through with both labels and the bytes as sent, never decoded bytes labelled gzip", async () => {
  const inner = gzipSync(gzipSync(Buffer.from("double-gzipped body")));
  const up = await rawUpstream(Buffer.concat([
    Buffer.from(`HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: gzip\r\nContent-Length: ${inner.length}\r\nConnection: close\r\n\r\n`),
    inner,
  ]));
  const proxy = await startProxy(["-u", up.url]);
  try {
    const r = await rawRequest(proxy.port, "GET /x HTTP/1.1\nHost: a\nAccept-Encoding: gzip\nConnection: close");
    // Both runtimes pass it through untouched (a 502 would also be safe; a decoded body would not).
    assert.equal(r.status, 200);
    assert.deepEqual(r.headers.filter(([k]) => k === "content-encoding").flatMap(([, v]) => v.split(/\s*,\s*/)), ["gzip", "gzip"]);
    assert.deepEqual(r.body, inner);
    assert.equal(gunzipSync(gunzipSync(r.body)).toString(), "double-gzipped body");
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a 502 tells the client what happened without the upstream's address or the runtime's error text", async () => {
  const server = net.createServer((s) => s.once("data", () => s.destroy()));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as net.AddressInfo).port;
  const proxy = await startProxy(["-u", `:${port}`]);
  try {
    const r = await fetch(proxy.url + "/pay", { method: "POST", body: "once" });
    assert.equal(r.status, 502);
    const text = await r.text();
    assert.match(text, /upstream failed/);
    assert.doesNotMatch(text, new RegExp(`127\\.0\\.0\\.1|${port}|ECONN|reset|error`, "i"));
    await proxy.waitForLine("the log has the detail", (l) => l.status === 502 && String(l.reason).includes(String(port)));
  } finally {
    await proxy.stop();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

/**
 * An upstream that records when each request starts and ends; /1 is answered
 * slowly, so a proxy that forwards a pipeline all at once lets /2 overtake it.
 */
async function orderedUpstream() {
  const order: string[] = [];
  const up = await startUpstream((req, res) => {
    order.push(`start ${req.url}`);
    setTimeout(() => {
      order.push(`end ${req.url}`);
      res.end(`answer ${req.url}`);
    }, req.url === "/1" ? 300 : 0);
  });
  return { order, up };
}

test("pipelined requests are each answered, in order, and reach the upstream one after another", async () => {
  const { order, up } = await orderedUpstream();
  const proxy = await startProxy(["-u", up.url]);
  try {
    const { sock, state } = await rawConn(proxy.port);
    const post = (path: string, last = false) =>
      `POST ${path} HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n${last ? "Connection: close\r\n" : ""}\r\nok`;
    sock.write(post("/1") + post("/2") + post("/3", true));
    await until("the connection closed after the third answer", () => state.closed, 5000);
    const answers = [...state.data.matchAll(/answer (\/\d)/g)].map((m) => m[1]);
    assert.deepEqual(answers, ["/1", "/2", "/3"]);
    assert.deepEqual(order, ["start /1", "end /1", "start /2", "end /2", "start /3", "end /3"]);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a client that leaves mid-pipeline: the requests still waiting in its pipeline never reach the upstream", async () => {
  const { order, up } = await orderedUpstream();
  const proxy = await startProxy(["-u", up.url]);
  try {
    const { sock } = await rawConn(proxy.port);
    sock.write("POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nokPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok");
    await until("the upstream got /1", () => order.length > 0, 5000);
    sock.destroy();
    await until("the upstream finished /1", () => order.includes("end /1"), 5000);
    assert.equal((await (await fetch(proxy.url + "/3")).text()), "answer /3");
    assert.deepEqual(order, ["start /1", "end /1", "start /3", "end /3"]);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

// ------------------------------------------------------------------ config

test("durations past their bound are rejected with the field named (flag, file and reload)", async () => {
  const flag = await run(...runtimeCommand("src/proxy.ts", ["--try-interval", "600h", "--admin", "off"]), { timeoutMs: 20_000 });
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /--try-interval: "600h" is too long; the most is 1h/);
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url]);
  try {
    const r = await proxy.admin("POST", "/reload", { tryDuration: "9999h" });
    assert.equal(r.status, 400);
    assert.deepEqual((await r.json()).errors.map((e: { field: string }) => e.field), ["tryDuration"]);
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("a config file that is endless (a symlink to /dev/zero) is refused without reading it all", async () => {
  const dir = await mkdtemp(join(tmpdir(), "holdup-sec-"));
  try {
    await symlink("/dev/zero", join(dir, "zero.json"));
    const r = await run(...runtimeCommand("src/proxy.ts", ["-c", join(dir, "zero.json"), "--admin", "off"]), { timeoutMs: 20_000 });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /larger than 1048576 bytes/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("reloads apply in the order they arrived: a SIGHUP still reading its file cannot overwrite a later POST /reload", async () => {
  const dir = await mkdtemp(join(tmpdir(), "holdup-sec-"));
  const a = await startUpstream((_q, res) => res.end("A"));
  const b = await startUpstream((_q, res) => res.end("B"));
  const fifo = join(dir, "holdup.json");
  assert.equal((await run("mkfifo", [fifo])).code, 0);
  // The first read (at start) gets upstream A.
  const feed = (text: string) => writeFile(fifo, text);
  const starting = startProxy(["-c", fifo]);
  await feed(JSON.stringify({ upstreams: [a.url] }));
  const proxy = await starting;
  try {
    // SIGHUP: holdup opens the FIFO and blocks until something writes to it.
    proxy.signal("SIGHUP");
    await proxy.waitForLine("the SIGHUP reload is under way", (l) => l.msg === "reloading: reading the config file" && l.trigger === "SIGHUP");
    const post = proxy.admin("POST", "/reload", { upstreams: [b.url] });
    // Only now does the file's content arrive (still naming A).
    await feed(JSON.stringify({ upstreams: [a.url] }));
    assert.equal((await post).status, 200);
    const s = await proxy.status();
    assert.deepEqual((s.config as { upstreams: string[] }).upstreams, [b.url], "the later POST wins");
    assert.equal(await (await fetch(proxy.url + "/")).text(), "B");
  } finally {
    await proxy.stop();
    await a.close();
    await b.close();
    await rm(dir, { recursive: true, force: true });
  }
});
