#!/usr/bin/env node
// WebSocket benchmarks for holdup. Node built-ins only (a minimal WebSocket client and
// echo server over node:net are in this file: Node 20 has no global WebSocket).
//
//   node bench/ws.mjs [echo,idle,reconnect] [options]
//
// echo       64-byte binary echo, closed loop per connection, at each --conns (1,50) for
//            --duration S (3) after a 0.5 s warm-up, --rounds N (3) over all targets (median):
//            messages/s and p50/p99 round trip, direct vs holdup on Deno vs on Bun vs Caddy.
// idle       --idle N (10000) idle WebSockets opened through each proxy: proxy RSS
//            (VmRSS of its process tree) before and with them open, per connection.
// reconnect  --clients N (1000) WebSockets to upstream A through holdup (Deno, Bun);
//            POST /reload to upstream B with drainTimeout 1s, wsCloseSpread 5s; every
//            client reconnects at once on its close. Counts per 500 ms bucket of the
//            1012 closes and of the reconnects that reached B.
//   --targets a,b   subset of direct,holdup-deno,holdup-bun,caddy, plus edge-deno,edge-bun
//                   (dist/edge.js: the edge entry's message relay, for echo only)
//   --entry FILE    holdup entry (default src/proxy.ts)
//
// Writes bench/WS-RESULTS.md and prints the same markdown.
import { parseArgs } from "node:util";
import { readFileSync, writeFileSync } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import net from "node:net";

// ---------------------------------------------------------------- WebSocket framing

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** One unfragmented frame; masked (client → server) when `mask`. */
function encode(opcode, payload, mask) {
  const n = payload.length;
  const hl = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const f = Buffer.allocUnsafe(hl + (mask ? 4 : 0) + n);
  f[0] = 0x80 | opcode;
  f[1] = (mask ? 0x80 : 0) | (n < 126 ? n : n < 65536 ? 126 : 127);
  if (hl === 4) f.writeUInt16BE(n, 2);
  else if (hl === 10) f.writeBigUInt64BE(BigInt(n), 2);
  if (!mask) {
    payload.copy(f, hl);
    return f;
  }
  const k = (Math.random() * 0x100000000) >>> 0;
  f.writeUInt32BE(k, hl);
  const key = f.subarray(hl, hl + 4);
  for (let i = 0; i < n; i++) f[hl + 4 + i] = payload[i] ^ key[i & 3];
  return f;
}

/** Incremental frame parser: calls onFrame(b0, opcode, payload) with payloads unmasked. */
function parser(onFrame) {
  let buf = null;
  return (chunk) => {
    buf = buf ? Buffer.concat([buf, chunk]) : chunk;
    let off = 0;
    for (;;) {
      if (buf.length - off < 2) break;
      const b0 = buf[off], b1 = buf[off + 1];
      let len = b1 & 0x7f, p = off + 2;
      if (len === 126) {
        if (buf.length - off < 4) break;
        len = buf.readUInt16BE(off + 2);
        p = off + 4;
      } else if (len === 127) {
        if (buf.length - off < 10) break;
        len = Number(buf.readBigUInt64BE(off + 2));
        p = off + 10;
      }
      let key = null;
      if (b1 & 0x80) {
        if (buf.length < p + 4) break;
        key = buf.subarray(p, p + 4);
        p += 4;
      }
      if (buf.length < p + len) break;
      let payload = buf.subarray(p, p + len);
      if (key) {
        payload = Buffer.from(payload);
        for (let i = 0; i < len; i++) payload[i] ^= key[i & 3];
      }
      off = p + len;
      onFrame(b0, b0 & 0x0f, payload);
    }
    buf = off >= buf.length ? null : buf.subarray(off);
  };
}

// ---------------------------------------------------------------- echo server (child mode)

/**
 * `node bench/ws.mjs echo-server PORT [HELLO]`: echoes every data frame as it came
 * (same FIN/opcode), answers pings, returns closes. With HELLO, sends it as a text
 * frame right after the handshake (to tell upstreams apart).
 */
function echoServer(port, hello) {
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    s.on("error", () => {});
    let head = null;
    let feed = null;
    s.on("data", (chunk) => {
      if (feed) return feed(chunk);
      head = head ? Buffer.concat([head, chunk]) : chunk;
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const key = /\r\nsec-websocket-key:\s*(\S+)/i.exec(head.subarray(0, end).toString("latin1"))?.[1];
      if (!key) return void s.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
      const accept = createHash("sha1").update(key + GUID).digest("base64");
      s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      if (hello) s.write(encode(1, Buffer.from(hello), false));
      feed = parser((b0, op, payload) => {
        if (op === 8) {
          s.end(encode(8, payload.subarray(0, 125), false));
        } else if (op === 9) {
          s.write(encode(10, payload, false));
        } else if (op !== 10) {
          const f = encode(op, payload, false);
          f[0] = b0 & 0x8f;
          s.write(f);
        }
      });
      const rest = head.subarray(end + 4);
      head = null;
      if (rest.length) feed(rest);
    });
  });
  server.listen(port, "127.0.0.1", 4096, () => process.stdout.write(`listening ${port}\n`));
}

if (process.argv[2] === "echo-server") {
  echoServer(Number(process.argv[3]), process.argv[4]);
} else {
  await main();
}

// ---------------------------------------------------------------- client

/**
 * Opens a WebSocket to 127.0.0.1:port over raw TCP. Resolves with a connection:
 * { sock, send(payload, opcode=2), close(code), onmessage, onclose } once the 101 arrived.
 */
function wsConnect(port, path = "/", timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: "127.0.0.1" });
    sock.setNoDelay(true);
    const key = randomBytes(16).toString("base64");
    let head = null, feed = null, done = false;
    const conn = {
      sock,
      closeCode: null,
      pending: [],
      onmessage: null,
      onclose: null,
      send(payload, opcode = 2) {
        sock.write(encode(opcode, payload, true));
      },
      close(code = 1000) {
        const p = Buffer.alloc(2);
        p.writeUInt16BE(code);
        sock.end(encode(8, p, true));
      },
    };
    const timer = setTimeout(() => fail(new Error(`handshake timed out after ${timeoutMs} ms`)), timeoutMs);
    const fail = (e) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    };
    let closed = false;
    const finish = (code) => {
      if (closed) return;
      closed = true;
      conn.closeCode = code;
      conn.onclose?.(code);
    };
    sock.on("error", (e) => (done ? finish(1006) : fail(e)));
    sock.on("close", () => (done ? finish(1006) : fail(new Error("closed during the handshake"))));
    sock.on("connect", () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    sock.on("data", (chunk) => {
      if (feed) return feed(chunk);
      head = head ? Buffer.concat([head, chunk]) : chunk;
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const status = Number(head.subarray(0, 12).toString("latin1").split(" ")[1]);
      if (status !== 101) return fail(new Error(`handshake answered ${status}`));
      done = true;
      clearTimeout(timer);
      feed = parser((_b0, op, payload) => {
        if (op === 8) {
          const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
          finish(code);
          sock.end(encode(8, payload.subarray(0, 2), true));
          sock.destroy();
        } else if (op === 9) sock.write(encode(10, payload, true));
        else if (op !== 10) {
          if (conn.onmessage) conn.onmessage(payload, op);
          else conn.pending.push(payload); // e.g. a hello in the same packet as the 101, before anyone listens
        }
      });
      const rest = head.subarray(end + 4);
      head = null;
      resolve(conn);
      if (rest.length) feed(rest);
    });
  });
}

/** Opens n WebSockets, at most `parallel` handshakes at a time. */
async function openMany(port, n, parallel = 200, path = "/") {
  const conns = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      conns[i] = await wsConnect(port, path);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
  } catch (e) {
    next = n;
    await new Promise((r) => setTimeout(r, 500));
    for (const c of conns) c?.sock.destroy();
    throw new Error(`${e.message} (after ${conns.filter(Boolean).length} of ${n} opened)`);
  }
  return conns;
}

function echoOnce(conn, payload, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no echo")), timeoutMs);
    conn.onmessage = (m) => {
      clearTimeout(t);
      conn.onmessage = null;
      resolve(m);
    };
    conn.send(payload);
  });
}

// ---------------------------------------------------------------- orchestration

async function main() {
  const { values: o, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      conns: { type: "string", default: "1,50" },
      duration: { type: "string", default: "3" },
      rounds: { type: "string", default: "3" },
      idle: { type: "string", default: "10000" },
      clients: { type: "string", default: "1000" },
      targets: { type: "string" },
      entry: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (o.help) {
    process.stderr.write(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").slice(1, 20).map((l) => l.replace(/^\/\/ ?/, "")).join("\n") + "\n");
    process.exit(0);
  }
  const parts = (positionals[0] || "echo,idle,reconnect").split(",");
  const clientsN = Number(o.clients);
  // A proxy holds 2 descriptors per WebSocket (client side + upstream side): where the hard
  // open-files limit is below 2 × N, no proxy can hold N, so measure as many as it allows.
  const hardNofile = Number(readFileSync("/proc/self/limits", "utf8").match(/Max open files\s+\S+\s+(\S+)/)?.[1]) || Infinity;
  const idleWanted = Number(o.idle);
  const idleN = Math.min(idleWanted, Math.floor((hardNofile - 200) / 2 / 100) * 100);
  const idleCapped = idleN < idleWanted
    ? `The hard open-files limit here is ${hardNofile} (not raisable: no CAP_SYS_RESOURCE), and a proxy needs two descriptors per
WebSocket, so ${idleWanted.toLocaleString("en-US")} cannot be held by any proxy on this machine; measured with ${idleN.toLocaleString("en-US")} instead.\n\n`
    : "";

  // This process holds up to `idleN` client sockets: re-exec under a raised ulimit -n when needed.
  const need = (parts.includes("idle") ? idleN : 0) + (parts.includes("reconnect") ? clientsN * 2 : 0) + 1024;
  const U = await import("./lib/util.mjs");
  U.ensureFdLimit(need);
  const S = await import("./lib/servers.mjs");
  const { log, sleep, freePort, waitPort, spawnGroup, treeRssKB, percentile, median, table, fmtInt, fmtMs, fmtMB, installCleanup, ensureTools, killAllSync, httpRequest, machineInfo, toolVersions, BENCH_DIR } = U;
  installCleanup();
  ensureTools(["caddy"]);
  const targets = o.targets ? o.targets.split(",") : ["direct", "holdup-deno", "holdup-bun", "caddy"];
  const started = Date.now();
  const loadavg = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const self = fileURLToPath(import.meta.url);

  async function startEcho(hello) {
    const port = await freePort();
    const proc = spawnGroup(`echo${hello ? "-" + hello : ""}`, process.execPath, [self, "echo-server", String(port), ...(hello ? [hello] : [])]);
    await waitPort(port, { proc });
    return { port, proc, stop: () => proc.stop() };
  }

  /** A proxy target in front of `up`; holdup with an admin port when `admin`. */
  async function startProxyTarget(name, up, admin = false) {
    let adminPort = 0;
    const holdupArgs = ["--log", "off", "--admin", "off"];
    if (admin) {
      adminPort = await freePort();
      holdupArgs.splice(2, 2, "--admin", `127.0.0.1:${adminPort}`);
    }
    const t = await S.startTarget(name, up, { holdupArgs, entry: o.entry });
    return { ...t, adminPort };
  }

  const sections = [];
  const md = (s) => {
    sections.push(s);
    process.stdout.write("\n" + s + "\n");
  };

  // ------------------------------------------------------------ (a) echo throughput and latency
  if (parts.includes("echo")) {
    const conns = o.conns.split(",").map(Number);
    const seconds = Number(o.duration), rounds = Number(o.rounds);
    const echo = await startEcho();
    const payload = Buffer.alloc(64, "x");
    // All targets run side by side; each round measures every target at every concurrency in turn,
    // so a burst of outside load hits one round, and the median of the rounds is reported.
    const live = [];
    const failedRows = [];
    for (const name of targets) {
      let t;
      try {
        t = await startProxyTarget(name, echo.port);
        const first = await wsConnect(t.port);
        if ((await echoOnce(first, payload)).length !== 64) throw new Error("bad echo");
        first.close();
        live.push({ name, t, runs: new Map(conns.map((c) => [c, []])) });
      } catch (e) {
        log(`${name}: could not start: ${e.message}`);
        failedRows.push([name, "failed: " + e.message.slice(0, 80)]);
        await t?.stop();
      }
    }
    for (let round = 1; round <= rounds; round++) {
      for (const target of live) {
        for (const c of conns) {
          const cs = await openMany(target.t.port, c, 50);
          let measuring = false, stop = false, count = 0, errors = 0;
          const rtts = [];
          const loops = cs.map((conn) => new Promise((resolve) => {
            let sent = 0;
            conn.onclose = () => {
              errors++;
              resolve();
            };
            conn.onmessage = () => {
              const rtt = performance.now() - sent;
              if (measuring) {
                count++;
                rtts.push(rtt);
              }
              if (stop) return resolve();
              sent = performance.now();
              conn.send(payload);
            };
            sent = performance.now();
            conn.send(payload);
          }));
          await sleep(500);
          measuring = true;
          const t0 = performance.now();
          await sleep(seconds * 1000);
          measuring = false;
          const elapsed = (performance.now() - t0) / 1000;
          stop = true;
          await Promise.race([Promise.all(loops), sleep(5000)]);
          for (const conn of cs) {
            conn.onclose = null;
            conn.sock.destroy();
          }
          const run = { mps: count / elapsed, p50: percentile(rtts, 50), p99: percentile(rtts, 99), errors };
          target.runs.get(c).push(run);
          log(`round ${round}/${rounds} ${target.name} c=${c}: ${fmtInt(run.mps)} msg/s, p50 ${fmtMs(run.p50)}, p99 ${fmtMs(run.p99)}${errors ? `, ${errors} closed` : ""}`);
          await sleep(300);
        }
      }
    }
    for (const target of live) await target.t.stop();
    await echo.stop();
    const rows = live.map(({ name, runs }) => [name, ...conns.flatMap((c) => {
      const rs = runs.get(c);
      const errors = rs.reduce((s, r) => s + r.errors, 0);
      return [fmtInt(median(rs.map((r) => r.mps))), fmtMs(median(rs.map((r) => r.p50))), fmtMs(median(rs.map((r) => r.p99))) + (errors ? ` (${errors} closed)` : "")];
    })]);
    const direct = live.find((t) => t.name === "direct");
    const headers = ["target", ...conns.flatMap((c) => [`msg/s c=${c}`, `p50 c=${c}`, `p99 c=${c}`])];
    let ratio = "";
    if (direct) {
      const med = (t, c, k) => median(t.runs.get(c).map((r) => r[k]));
      ratio = "\n\nholdup and Caddy vs direct (medians): " + live.filter((t) => t !== direct).map((t) =>
        `${t.name} ` + conns.map((c) => `c=${c} ${(100 * med(t, c, "mps") / med(direct, c, "mps")).toFixed(0)}% of the msg/s, p99 +${fmtMs(med(t, c, "p99") - med(direct, c, "p99"))}`).join(", ")
      ).join("; ") + ".";
    }
    const perRound = live.map(({ name, runs }) => `${name}: ` + conns.map((c) => `c=${c} ${runs.get(c).map((r) => fmtInt(r.mps)).join(" / ")}`).join("; ")).join("\n- ");
    md(`## (a) 64-byte echo

Closed loop: each connection sends a 64-byte binary message, waits for its echo, sends the next.
${seconds} s measured after 0.5 s warm-up, per target and concurrency; ${rounds} rounds over all targets,
median of the rounds shown. Upstream: a Node \`net\` WebSocket echo server (this file, \`echo-server\` mode);
client: this file's raw WebSocket client (one Node process). holdup: \`--log off --admin off\`;
Caddy: \`reverse_proxy\` (Caddyfile from bench/lib/servers.mjs).

${table(headers, [...rows, ...failedRows])}${ratio}

msg/s of each round:
- ${perRound}`);
  }

  // ------------------------------------------------------------ (b) RSS with N idle WebSockets
  if (parts.includes("idle")) {
    const echo = await startEcho();
    const rows = [];
    for (const name of targets.filter((n) => n !== "direct")) {
      let t, cs = [];
      try {
        t = await startProxyTarget(name, echo.port);
        const warm = await wsConnect(t.port);
        await echoOnce(warm, Buffer.alloc(64));
        await sleep(1000);
        const before = treeRssKB(t.proc.pid) / 1024;
        const t0 = performance.now();
        cs = await openMany(t.port, idleN, 200);
        const openS = (performance.now() - t0) / 1000;
        // they work: echo on 100 of them, spread over the set
        for (let i = 0; i < cs.length; i += Math.ceil(cs.length / 100)) await echoOnce(cs[i], Buffer.alloc(64));
        await sleep(2000);
        let with_ = 0;
        for (let i = 0; i < 5; i++) {
          with_ = Math.max(with_, treeRssKB(t.proc.pid) / 1024);
          await sleep(200);
        }
        const perKB = ((with_ - before) * 1024) / idleN;
        log(`${name}: ${idleN} idle WebSockets opened in ${openS.toFixed(1)} s; RSS ${before.toFixed(1)} → ${with_.toFixed(1)} MB (${perKB.toFixed(1)} KB each)`);
        rows.push([name, fmtMB(before), fmtMB(with_), `${perKB.toFixed(1)} KB`, `${openS.toFixed(1)} s`]);
      } catch (e) {
        log(`${name}: ${e.message}`);
        rows.push([name, "failed: " + String(e.message).slice(0, 80), "", "", ""]);
      }
      for (const c of cs) c?.sock.destroy();
      await sleep(500);
      await t?.stop();
      await sleep(1000);
    }
    await echo.stop();
    md(`## (b) RSS with ${fmtInt(idleN)} idle WebSockets

${idleCapped}VmRSS of the proxy's process tree: after one echo and 1 s idle ("before"), and with ${fmtInt(idleN)}
WebSockets open through it (each handshaken, 100 of them echoed once, then 2 s idle; max of 5 samples).
Opened ≤200 handshakes at a time; "open time" is how long opening all of them took.

${table(["proxy", "RSS before", `RSS with ${fmtInt(idleN)}`, "per WebSocket", "open time"], rows)}`);
  }

  // ------------------------------------------------------------ (c) reconnect curve after a reload
  if (parts.includes("reconnect")) {
    const bucketMs = 500, drainMs = 1000, spreadMs = 5000;
    const results = [];
    for (const name of targets.filter((n) => n.startsWith("holdup-"))) {
      const a = await startEcho("A"), b = await startEcho("B");
      let t;
      try {
        t = await startProxyTarget(name, a.port, true);
        const closes = [], reconnects = [], codes = new Map(), gaps = [];
        let failed = 0, wrongUpstream = 0, t0 = 0, duringDrainOk = 0;
        const clients = [];
        // Open N clients and wait for A's hello on each.
        let next = 0;
        const openOne = async () => {
          const c = await wsConnect(t.port, "/live");
          await new Promise((res, rej) => {
            const tm = setTimeout(() => rej(new Error("no hello from A")), 10000);
            c.onmessage = (m) => {
              clearTimeout(tm);
              if (m.toString() !== "A") rej(new Error(`hello ${m} from the wrong upstream`));
              c.onmessage = null;
              res();
            };
            if (c.pending.length) c.onmessage(c.pending.shift());
          });
          return c;
        };
        await Promise.all(Array.from({ length: 100 }, async () => {
          while (next < clientsN) {
            const i = next++;
            clients[i] = await openOne();
          }
        }));
        log(`${name}: ${clientsN} WebSockets open on A; reloading to B (drainTimeout ${drainMs} ms, wsCloseSpread ${spreadMs} ms)`);
        let allDone;
        const done = new Promise((r) => (allDone = r));
        let left = clientsN;
        for (const c of clients) {
          c.onclose = (code) => {
            const at = performance.now() - t0;
            closes.push(at);
            codes.set(code, (codes.get(code) ?? 0) + 1);
            // reconnect at once
            wsConnect(t.port, "/live").then((n) => {
              n.onmessage = (m) => {
                n.onmessage = null;
                const r = performance.now() - t0;
                if (m.toString() === "B") {
                  reconnects.push(r);
                  gaps.push(r - at);
                } else wrongUpstream++;
                n.sock.destroy();
                if (--left === 0) allDone();
              };
              if (n.pending.length) n.onmessage(n.pending.shift());
            }, () => {
              failed++;
              if (--left === 0) allDone();
            });
          };
        }
        t0 = performance.now();
        const r = await httpRequest(`http://127.0.0.1:${t.adminPort}/reload`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ upstreams: [`http://127.0.0.1:${b.port}`], drainTimeout: `${drainMs}ms`, wsCloseSpread: `${spreadMs}ms` }),
        });
        if (r.status !== 200) throw new Error(`POST /reload answered ${r.status}: ${r.body}`);
        // During the drain they still echo (a sample of 50).
        await Promise.all(clients.slice(0, 50).map(async (c) => {
          try {
            await echoOnce(c, Buffer.from("drain"), 800);
            duringDrainOk++;
          } catch {}
        }));
        await Promise.race([done, sleep(drainMs + spreadMs + 15000)]);
        const last = Math.max(...closes, ...reconnects);
        const buckets = Math.ceil((last + 1) / bucketMs);
        const count = (xs, i) => xs.filter((x) => x >= i * bucketMs && x < (i + 1) * bucketMs).length;
        results.push({
          name, closes, reconnects, gaps, codes, failed, wrongUpstream, duringDrainOk, buckets, left,
          col: (i) => [count(closes, i), count(reconnects, i)],
        });
        log(`${name}: ${closes.length} closes (${[...codes].map(([k, v]) => `${k}×${v}`).join(", ")}), ${reconnects.length} reconnected to B, ${failed} failed, last at ${last.toFixed(0)} ms`);
      } catch (e) {
        log(`${name}: ${e.message}`);
        results.push({ name, error: e.message });
      }
      await t?.stop();
      await a.stop();
      await b.stop();
      await sleep(1000);
    }
    const ok = results.filter((r) => !r.error);
    const nb = Math.max(0, ...ok.map((r) => r.buckets));
    const rows = [];
    for (let i = 0; i < nb; i++) rows.push([`${(i * bucketMs / 1000).toFixed(1)}–${((i + 1) * bucketMs / 1000).toFixed(1)} s`, ...ok.flatMap((r) => r.col(i))]);
    rows.push(["total", ...ok.flatMap((r) => [r.closes.length, r.reconnects.length])]);
    const summary = results.map((r) => r.error ? `- ${r.name}: failed: ${r.error}` :
      `- ${r.name}: close codes ${[...r.codes].map(([k, v]) => `${k} ×${v}`).join(", ")}; first close ${fmtMs(Math.min(...r.closes))}, last ${fmtMs(Math.max(...r.closes))} after the reload; ` +
      `close → reconnected to B p50 ${fmtMs(percentile(r.gaps, 50))}, p99 ${fmtMs(percentile(r.gaps, 99))}, max ${fmtMs(Math.max(...r.gaps))}; ` +
      `${r.failed} reconnects failed, ${r.wrongUpstream} landed elsewhere than B, ${r.left} unfinished; ${r.duringDrainOk}/50 sampled clients echoed during the drain.`).join("\n");
    md(`## (c) reconnect curve: ${fmtInt(clientsN)} WebSockets closed by a reload

${fmtInt(clientsN)} WebSockets open through holdup to upstream A (each got A's hello). Then upstream B starts and
\`POST /reload {"upstreams":[B],"drainTimeout":"${drainMs}ms","wsCloseSpread":"${spreadMs}ms"}\` at t = 0.
Each client reconnects the moment it gets its close; "reconnected" = B's hello received on the new socket.
Counts per ${bucketMs} ms bucket after the reload.

${table(["t after reload", ...ok.flatMap((r) => [`${r.name} 1012 closes`, `${r.name} reconnected to B`])], rows)}

${summary}`);
  }

  const m = machineInfo(), v = toolVersions();
  const out = `# holdup WebSocket benchmark results

Generated by \`node bench/ws.mjs\` on ${new Date(started).toISOString()} (took ${((Date.now() - started) / 1000).toFixed(0)} s);
load average at the start ${loadavg} (other work shared the CPUs when it is well above 0).
Machine: ${m.nproc} CPU, ${m.model}, ${m.memMB} MB RAM, Linux ${m.kernel}. Versions: node ${v.node}, deno ${v.deno},
bun ${v.bun}, caddy ${v.caddy}. Client, proxy and upstream share the CPUs on loopback: compare within a run.

${sections.join("\n\n")}
`;
  const file = join(BENCH_DIR, "WS-RESULTS.md");
  writeFileSync(file, out);
  log(`wrote ${file}`);
  killAllSync();
}
