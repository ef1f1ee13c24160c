/**
 * A client that leaves while its request is in flight upstream (sent, no
 * response head yet) cancels it: holdup aborts the upstream request and closes
 * that connection, as nginx and Caddy do, over HTTP/1.1 and HTTP/2 — and
 * never sends it again (Deno's node:http client resends a request aborted on a
 * reused pooled connection unless told not to: runtime/node-client.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, startProxy, startUpstream, until } from "./helpers.ts";

/**
 * An upstream that never answers (but /warm, answered at once: a first request
 * marks it up, so the requests tested are never held — a held request always
 * watched its client); records requests that arrived and those whose connection then closed.
 */
async function silentUpstream() {
  const seen: string[] = [];
  const closed: string[] = [];
  const up = await startUpstream((req, res) => {
    if (req.url === "/warm") return void res.end("warm");
    seen.push(req.url!);
    res.on("close", () => closed.push(req.url!));
  });
  return { up, seen, closed };
}

test("HTTP/1.1: a client that leaves mid-request cancels the upstream request (its connection closes), logged 499", async () => {
  const { up, seen, closed } = await silentUpstream();
  const proxy = await startProxy(["-u", up.url, "--response-timeout", "60s"]);
  try {
    assert.equal((await fetch(`${proxy.url}/warm`)).status, 200);
    for (const [path, head] of [
      ["/slow-get", "GET /slow-get HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["/slow-post", "POST /slow-post HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"],
    ]) {
      const c = net.connect(proxy.port, "127.0.0.1", () => c.write(head));
      c.on("error", () => {});
      await until(`the upstream to see ${path}`, () => seen.includes(path));
      assert.ok(!closed.includes(path));
      c.destroy();
      await until(`the upstream request ${path} to be cancelled`, () => closed.includes(path), 10_000);
      await proxy.waitForLine(`499 for ${path}`, (l) => l.msg === "request" && l.path === path && l.status === 499);
    }
    // One more request through holdup, so a resend of a cancelled one (made as its connection closed) has arrived by now.
    assert.equal((await fetch(`${proxy.url}/warm`)).status, 200);
    assert.deepEqual(up.received.map((r) => r.url), ["/warm", "/slow-get", "/slow-post", "/warm"], "sent once each, never resent");
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("HTTP/2: a client that leaves mid-request cancels the upstream request", async () => {
  const dir = await mkdtemp(join(tmpdir(), "holdup-cancel-"));
  const cert = join(dir, "c.crt"), key = join(dir, "c.key");
  const made = await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ]);
  assert.equal(made.code, 0, made.stderr);
  const { up, seen, closed } = await silentUpstream();
  const proxy = await startProxy(["-u", up.url, "--response-timeout", "60s", "--tls-cert", cert, "--tls-key", key]);
  try {
    const warm = await run("curl", ["-sS", "--http2", "--cacert", cert, `https://localhost:${proxy.port}/warm`]);
    assert.equal(warm.stdout, "warm", warm.stderr);
    const curl = spawn("curl", ["-sS", "--http2", "--cacert", cert, `https://localhost:${proxy.port}/slow-h2`], { stdio: "ignore" });
    await until("the upstream to see the h2 request", () => seen.includes("/slow-h2"));
    curl.kill("SIGKILL"); // the client goes away: its connection closes
    await until("the upstream request to be cancelled", () => closed.includes("/slow-h2"), 10_000);
    await proxy.waitForLine("499", (l) => l.msg === "request" && l.path === "/slow-h2" && l.status === 499);
  } finally {
    await proxy.stop();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  }
});
