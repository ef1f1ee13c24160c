/**
 * --max-body (config maxBody): a request body larger than the limit gets 413
 * and nothing of it reaches the upstream — declared (Content-Length: refused
 * before a byte of the body is sent), streamed (chunked: refused once the
 * limit is passed, also past maxBodyBuffer, where a body would otherwise be
 * streamed upstream), and for requests that would have been held.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { freePort, rawRequest, run, runtimeCommand, startProxy, startUpstream } from "./helpers.ts";

const chunked = (parts: number[]) => parts.map((n) => `${n.toString(16)}\r\n${"x".repeat(n)}\r\n`).join("") + "0\r\n\r\n";

test("--max-body: a declared or chunked body over the limit gets 413 naming maxBody and never reaches the upstream; one within it passes whole", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url, "--max-body", "1KiB", "--max-body-buffer", "512"]);
  try {
    // Declared too large: answered from the head alone, before the client sends any of the body.
    const s = net.connect(proxy.port, "127.0.0.1");
    await once(s, "connect");
    s.write("POST /declared HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n");
    const head = await new Promise<string>((resolve) => s.once("data", (d: Buffer) => resolve(d.toString())));
    assert.match(head, /^HTTP\/1.1 413 /);
    assert.match(head, /the request body is larger than maxBody \(1024 bytes\)/);
    assert.match(head, /connection: close/i);
    s.destroy();

    // Chunked, past maxBodyBuffer (512) and then past maxBody: 413, nothing sent upstream.
    const big = await rawRequest(proxy.port, "POST /chunked HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\nConnection: close", chunked([600, 600]));
    assert.equal(big.status, 413);
    assert.match(big.body.toString(), /larger than maxBody/);

    // Within the limit: declared and chunked (past maxBodyBuffer) arrive whole.
    const ok = await rawRequest(proxy.port, "POST /ok HTTP/1.1\nHost: x\nContent-Length: 1024\nConnection: close", "y".repeat(1024));
    assert.equal(ok.status, 200);
    const okChunked = await rawRequest(proxy.port, "POST /ok-chunked HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\nConnection: close", chunked([600, 424]));
    assert.equal(okChunked.status, 200);
    assert.deepEqual(up.received.map((r) => [r.url, r.body.length]), [["/ok", 1024], ["/ok-chunked", 1024]], "only the bodies within the limit reached the upstream");
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("--max-body applies to requests that would be held, and per app; a bad size names the field", async () => {
  const down = await freePort();
  const proxy = await startProxy(["-u", `http://127.0.0.1:${down}`, "--max-body", "100", "--try-duration", "20s"]);
  try {
    const t0 = performance.now();
    const declared = await rawRequest(proxy.port, "POST /held HTTP/1.1\nHost: x\nContent-Length: 101\nConnection: close", "z".repeat(101));
    assert.equal(declared.status, 413);
    const streamed = await rawRequest(proxy.port, "POST /held HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\nConnection: close", chunked([60, 60]));
    assert.equal(streamed.status, 413);
    assert.ok(performance.now() - t0 < 10_000, "answered at once, not held for tryDuration");
    assert.equal((await proxy.status()).held, 0);
    // Per app, through a reload body: one app with its own limit.
    const r = await proxy.admin("POST", "/reload", { apps: [{ name: "a", maxBody: "1MiB" }] });
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal(((await proxy.status()).apps as Array<{ name: string }>)[0].name, "a");
    const cfg = (await proxy.status()).config as { apps: Array<{ maxBody: number }>; maxBody: number };
    assert.equal(cfg.apps[0].maxBody, 1024 * 1024);
    assert.equal(cfg.maxBody, 100);
    const bad = await proxy.admin("POST", "/reload", { maxBody: "lots" });
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(await bad.json()), /maxBody/);
  } finally {
    await proxy.stop();
  }
  const [cmd, args] = runtimeCommand("src/proxy.ts", ["--max-body", "12 parsecs", "-u", ":9"]);
  const r = await run(cmd, args);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /max-body|maxBody/);
});
