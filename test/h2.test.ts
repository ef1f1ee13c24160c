/**
 * HTTP/2 as a hostile client uses it: the stream limit holdup announces, and a
 * rapid reset (CVE-2023-44487: open a stream, reset it at once, repeat)
 * against an upstream that counts the requests it gets. node:http2 client,
 * real TLS on loopback, certificates made with openssl per run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http2 from "node:http2";
import tls from "node:tls";
import process from "node:process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, startProxy, startUpstream, until } from "./helpers.ts";

const dir = await mkdtemp(join(tmpdir(), "holdup-h2-"));
const cert = join(dir, "a.crt"), key = join(dir, "a.key");
{
  const r = await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ]);
  assert.equal(r.code, 0, r.stderr);
}
const ca = await readFile(cert, "utf8");
test.after?.(() => rm(dir, { recursive: true, force: true }));

function connect(port: number): http2.ClientHttp2Session {
  const s = http2.connect(`https://localhost:${port}`, { ca, host: "127.0.0.1" } as http2.SecureClientSessionOptions);
  s.on("error", () => {});
  return s;
}

/** An upstream that answers after `delayMs`, counting requests started and in flight (a cancelled one closes early). */
async function countingUpstream(delayMs: number) {
  const counts = { started: 0, inFlight: 0, maxInFlight: 0, answered: 0 };
  const up = await startUpstream();
  up.server.removeAllListeners("request");
  up.server.on("request", (req, res) => {
    counts.started++;
    counts.maxInFlight = Math.max(counts.maxInFlight, ++counts.inFlight);
    const t = setTimeout(() => res.end("late"), delayMs);
    res.once("close", () => {
      clearTimeout(t);
      counts.inFlight--;
      if (res.writableFinished) counts.answered++;
    });
    req.resume();
  });
  return { up, counts };
}

test("HTTP/2: the server's SETTINGS announce a stream limit (128), and a request still works", async () => {
  const up = await startUpstream();
  const proxy = await startProxy(["-u", up.url, "--tls-cert", cert, "--tls-key", key]);
  const client = connect(proxy.port);
  try {
    const settings = await new Promise<http2.Settings>((resolve) => client.once("remoteSettings", resolve));
    assert.equal(settings.maxConcurrentStreams, 128);
    const req = client.request({ ":path": "/x" });
    const [headers] = await Promise.all([new Promise<http2.IncomingHttpHeaders>((r) => req.once("response", r)), req.end()]);
    assert.equal(headers[":status"], 200);
    req.resume();
    await new Promise((r) => req.once("end", r));
  } finally {
    client.destroy();
    await proxy.stop();
    await up.close();
  }
});

/**
 * A raw HTTP/2 client over TLS that opens `n` streams and resets each at once
 * (HEADERS with END_STREAM, a few ms later RST_STREAM CANCEL), ignoring the stream
 * limit as an attacker does. Written frame by frame: Deno's node:http2 client
 * sends no RST_STREAM for a closed stream. Resolves with the GOAWAY error
 * code the server sent (null: none) and how many streams went out before the
 * connection closed.
 */
async function rapidReset(port: number, n: number): Promise<{ goaway: number | null; sent: number }> {
  const s = tls.connect({ port, host: "127.0.0.1", servername: "localhost", ca, ALPNProtocols: ["h2"] });
  s.on("error", () => {});
  await new Promise((r) => s.once("secureConnect", r));
  assert.equal(s.alpnProtocol, "h2");
  const frame = (type: number, flags: number, id: number, payload: Buffer) => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(payload.length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(id, 5);
    return Buffer.concat([h, payload]);
  };
  let goaway: number | null = null, buf = Buffer.alloc(0);
  s.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
      const len = buf.readUIntBE(0, 3), type = buf[3], flags = buf[4];
      if (process.env.H2DEBUG) console.log("frame", type, flags, buf.readUInt32BE(5), buf.subarray(9, 9 + len).toString("hex"));
      if (type === 4 && !(flags & 1)) s.write(frame(4, 1, 0, Buffer.alloc(0))); // ACK the server's SETTINGS
      if (type === 7) goaway ??= buf.readUInt32BE(9 + 4);
      buf = buf.subarray(9 + len);
    }
  });
  const closed = new Promise((r) => s.once("close", r));
  s.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame(4, 0, 0, Buffer.alloc(0))]));
  // :method GET, :scheme https, :path / from the static table; :authority localhost as a literal.
  const block = Buffer.concat([Buffer.from([0x82, 0x87, 0x84, 0x01, 9]), Buffer.from("localhost")]);
  const cancel = Buffer.alloc(4);
  cancel.writeUInt32BE(http2.constants.NGHTTP2_CANCEL);
  // Bursts of 20: their HEADERS, a few ms for holdup to start forwarding them, then their RST_STREAMs.
  let sent = 0;
  for (let i = 0; i < n && !s.destroyed; i += 20) {
    const ids = Array.from({ length: Math.min(20, n - i) }, (_, k) => 1 + 2 * (i + k));
    s.write(Buffer.concat(ids.map((id) => frame(1, 0x5, id, block))));
    await new Promise((r) => setTimeout(r, 5));
    s.write(Buffer.concat(ids.map((id) => frame(3, 0, id, cancel))));
    sent += ids.length;
  }
  await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
  s.destroy();
  return { goaway, sent };
}

test("HTTP/2 rapid reset: 1,000 streams opened and reset at once start few upstream requests, none answered (cancelled), and the connection is closed past the reset bound", async () => {
  const { up, counts } = await countingUpstream(3000);
  const proxy = await startProxy(["-u", up.url, "--tls-cert", cert, "--tls-key", key]);
  try {
    const { goaway, sent } = await rapidReset(proxy.port, 1000);
    // Whatever reached the upstream is either cancelled or answered: wait for it to settle.
    await until("no upstream request in flight", () => counts.inFlight === 0, 15_000);
    console.log(`h2 rapid reset: ${sent} streams sent, upstream requests started ${counts.started}, max in flight ${counts.maxInFlight}, answered ${counts.answered}, GOAWAY code ${goaway}`);
    assert.equal(goaway, 0xb, "GOAWAY ENHANCE_YOUR_CALM past the reset bound");
    assert.ok(counts.started < 300, `upstream requests started: ${counts.started}`);
    assert.equal(counts.answered, 0, "every reset stream's upstream request was cancelled before its answer");
    await proxy.waitForLine("a warning naming the flood", (l) => /reset too many streams/.test(String(l.msg)));
    // A new connection is served.
    const again = connect(proxy.port);
    const req = again.request({ ":path": "/after" });
    req.end();
    const headers = await new Promise<http2.IncomingHttpHeaders>((r) => req.once("response", r));
    assert.equal(headers[":status"], 200);
    again.destroy();
  } finally {
    await proxy.stop();
    await up.close();
  }
});

test("HTTPS, HTTP/1.1: 200 pipelined GETs on one TLS connection are all answered, in order (reading stops and starts again past 16 waiting)", async () => {
  const up = await startUpstream((req, res) => res.end(req.url));
  const proxy = await startProxy(["-u", up.url, "--tls-cert", cert, "--tls-key", key]);
  const s = tls.connect({ port: proxy.port, host: "127.0.0.1", servername: "localhost", ca, ALPNProtocols: ["http/1.1"] });
  s.on("error", () => {});
  try {
    await new Promise((r) => s.once("secureConnect", r));
    let got = "";
    s.on("data", (d: Buffer) => got += d.toString("latin1"));
    s.write(Array.from({ length: 200 }, (_, i) => `GET /${i} HTTP/1.1\r\nHost: localhost\r\n\r\n`).join(""));
    await until("200 answers", () => (got.match(/HTTP\/1\.1 200/g) ?? []).length === 200, 30_000);
    const bodies = [...got.matchAll(/\r\n\r\n(\/\d+)/g)].map((m) => m[1]);
    assert.deepEqual(bodies, Array.from({ length: 200 }, (_, i) => `/${i}`));
  } finally {
    s.destroy();
    await proxy.stop();
    await up.close();
  }
});
