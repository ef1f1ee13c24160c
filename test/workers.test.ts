/**
 * `--workers 2`: two serving processes on one port under a parent, kept in
 * step through the parent's channel (or a real redis-server with --state).
 * Requests are spread by the kernel (SO_REUSEPORT) over fresh connections;
 * every log line says which worker wrote it, and worker 0's /status shows
 * what each worker holds.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import net from "node:net";
import { once } from "node:events";
import { Hub } from "../src/fleet/hub.ts";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { freePort, nodeGet, type Proxy, ROOT, run, RUNTIME, runtimeCommand, startProxy, startRedis, startUpstream, until, alive } from "./helpers.ts";

/** Enough fresh connections that both workers get some (all on one worker: 1 in 2^15). */
const N = 16;

interface WorkerReport {
  index: number;
  pid: number;
  mode: string;
  held: number;
  configVersion: number;
  reporting: boolean;
}

async function workers(p: Proxy): Promise<WorkerReport[]> {
  const s = await p.status();
  return (s.state as { workers: WorkerReport[] }).workers;
}

/** Both workers report, and each holds at least one of `n` requests held in all. */
async function heldInBoth(p: Proxy, n: number): Promise<WorkerReport[]> {
  return (await until(`${n} requests held, in both workers`, async () => {
    const ws = await workers(p);
    return ws.length === 2 && ws.every((w) => w.reporting && w.held >= 1) && ws[0].held + ws[1].held === n ? ws : null;
  }, 15_000))!;
}


/** Each request on a connection of its own, so the kernel spreads them over the workers. */
function send(p: Proxy, n: number, path: string) {
  return Promise.all(Array.from({ length: n }, (_, i) => nodeGet(`${p.url}${path}${i}`).then((r) => ({ status: r.status, body: r.body.toString(), held: Number(r.headers["x-holdup-held-ms"] ?? 0) }))));
}

/** The access-log lines for `path…` answered by each worker. */
function answeredBy(p: Proxy, path: string): Map<number, number> {
  const by = new Map<number, number>();
  for (const l of p.accessLines()) {
    if (String(l.path).startsWith(path)) by.set(l.worker as number, (by.get(l.worker as number) ?? 0) + 1);
  }
  return by;
}

/** Waits for the access lines of all `n` requests for `path…`, asserts both workers answered some, and returns the count per worker. */
async function answeredByBoth(p: Proxy, path: string, n: number): Promise<Map<number, number>> {
  await until("every access line", () => p.accessLines().filter((l) => String(l.path).startsWith(path)).length === n);
  const by = answeredBy(p, path);
  assert.ok((by.get(0) ?? 0) >= 1 && (by.get(1) ?? 0) >= 1, `answered by both workers: ${JSON.stringify([...by])}`);
  return by;
}

test("--workers 2: both workers serve, and a SIGHUP to the parent moves the requests held in both to the file's new upstream", async () => {
  const dir = await mkdtemp(join(tmpdir(), "holdup-workers-"));
  const file = join(dir, "holdup.json");
  const dead = await freePort();
  const up = await startUpstream((req, res) => res.end(`new ${req.url}`));
  await writeFile(file, JSON.stringify({ upstreams: [`:${dead}`], tryInterval: "60s", tryDuration: "50s" }));
  const p = await startProxy(["--workers", "2", "-c", file]);
  try {
    const answers = send(p, N, "/hup");
    const ws = await heldInBoth(p, N);
    assert.notEqual(ws[0].pid, ws[1].pid);
    await writeFile(file, JSON.stringify({ upstreams: [up.url], tryInterval: "60s", tryDuration: "50s" }));
    p.signal("SIGHUP");
    const got = await answers;
    for (const [i, r] of got.entries()) {
      assert.deepEqual([r.status, r.body], [200, `new /hup${i}`]);
      assert.ok(r.held > 0, `/hup${i} was held`);
    }
    const by = await answeredByBoth(p, "/hup", N);
    assert.equal((by.get(0) ?? 0) + (by.get(1) ?? 0), N);
    // Each worker re-read the file itself.
    assert.equal(p.lines.filter((l) => l.msg === "reloaded" && l.trigger === "SIGHUP").length, 2);
    // POST /reload without a body (worker 0's admin API) re-reads the file in both workers too.
    await writeFile(file, JSON.stringify({ upstreams: [up.url], tryInterval: "60s", tryDuration: "40s" }));
    const from = p.lines.length;
    assert.equal((await p.admin("POST", "/reload")).status, 200);
    await until("both workers re-read the file", async () => {
      const ws = await workers(p);
      return ws.length === 2 && ws.every((w) => w.reporting && w.configVersion === 3);
    });
    await until("both reload lines", () => p.lines.slice(from).filter((l) => l.msg === "reloaded").length === 2);
    const reloaded = p.lines.slice(from).filter((l) => l.msg === "reloaded").map((l) => [l.worker, l.trigger]);
    assert.deepEqual(reloaded.sort(), [[0, "POST /reload"], [1, "SIGHUP"]]);
  } finally {
    await p.stop();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("--workers 2: a pause sent to the admin API (worker 0) holds requests in both workers; a resume releases them", async () => {
  const up = await startUpstream((req, res) => res.end(`ok ${req.url}`));
  const p = await startProxy(["--workers", "2", "-u", up.url]);
  try {
    assert.equal((await p.admin("POST", "/pause")).status, 200);
    await until("paused in both workers", async () => {
      const ws = await workers(p);
      return ws.length === 2 && ws.every((w) => w.reporting && w.mode === "paused");
    });
    const answers = send(p, N, "/paused");
    await heldInBoth(p, N);
    assert.equal(up.received.length, 0, "nothing reached the upstream while paused");
    assert.equal((await p.admin("POST", "/resume")).status, 200);
    const got = await answers;
    for (const [i, r] of got.entries()) assert.deepEqual([r.status, r.body], [200, `ok /paused${i}`]);
    await answeredByBoth(p, "/paused", N);
  } finally {
    await p.stop();
    await up.close();
  }
});

test("--workers 2: a killed worker is restarted and serves again; SIGTERM to the parent leaves no worker behind", async () => {
  const up = await startUpstream((req, res) => res.end(`ok ${req.url}`));
  const p = await startProxy(["--workers", "2", "-u", up.url]);
  const pids: number[] = [];
  try {
    const first = (await until("both workers report", async () => {
      const ws = await workers(p);
      return ws.length === 2 && ws.every((w) => w.reporting) ? ws : null;
    }))!;
    pids.push(...first.map((w) => w.pid));
    // Worker 1 killed: the parent starts another, which serves.
    const from = p.lines.length;
    process.kill(first[1].pid, "SIGKILL");
    const again = await p.waitForLine("worker 1 restarted", (l) => l.msg === "worker serving again" && l.worker === 1, 15_000, from);
    assert.notEqual(again.pid, first[1].pid);
    pids.push(again.pid as number);
    assert.ok(p.lines.slice(from).some((l) => l.msg === "worker exited; restarting it" && l.worker === 1 && l.signal === "SIGKILL"));
    await until("the new worker 1 answers a request", async () => {
      await send(p, 4, "/again");
      return p.accessLines().some((l) => String(l.path).startsWith("/again") && l.worker === 1);
    }, 15_000, 50);
    // Worker 0 (the admin API) killed: it comes back on the same admin port.
    process.kill(first[0].pid, "SIGKILL");
    const zero = await p.waitForLine("worker 0 restarted", (l) => l.msg === "worker serving again" && l.worker === 0, 15_000, from);
    pids.push(zero.pid as number);
    const ws = (await until("both workers report again", async () => {
      try {
        const w = await workers(p);
        return w.length === 2 && w.every((x) => x.reporting && x.pid !== first[0].pid) ? w : null;
      } catch {
        return null;
      }
    }))!;
    assert.deepEqual(ws.map((w) => w.pid), [zero.pid, again.pid]);
    // SIGTERM to the parent: every worker drains and exits, then the parent, with 0.
    p.signal("SIGTERM");
    assert.equal(await p.exited, 0);
    await until("no worker left", () => pids.every((pid) => !alive(pid)), 5_000);
  } finally {
    await p.stop();
    for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
    await up.close();
  }
});

test("--workers 2: workers whose parent was killed (SIGKILL) exit by themselves", async () => {
  const up = await startUpstream((_q, res) => res.end("ok"));
  const p = await startProxy(["--workers", "2", "-u", up.url]);
  const started = p.lines.find((l) => l.msg === "holdup started")!;
  const pids = started.pids as number[];
  try {
    assert.equal(pids.length, 2);
    assert.ok(pids.every(alive));
    p.child.kill("SIGKILL");
    await p.exited;
    await until("both workers exited", () => pids.every((pid) => !alive(pid)), 10_000);
  } finally {
    for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
    await up.close();
  }
});

test("--workers 2 --state redis://…: a reload body sent to the admin API moves the requests held in both workers", async () => {
  const redis = await startRedis();
  const dead = await freePort();
  const up = await startUpstream((req, res) => res.end(`new ${req.url}`));
  const p = await startProxy(["--workers", "2", "-u", `:${dead}`, "--try-interval", "60s", "--state", redis.url]);
  try {
    const s = await p.status();
    assert.match((s.state as { engine: string }).engine, new RegExp(`^redis://127\\.0\\.0\\.1:${redis.port}`), "the workers share the engine, not the parent's channel");
    const answers = send(p, N, "/redis");
    await heldInBoth(p, N);
    assert.equal((await p.admin("POST", "/reload", { upstreams: [up.url] })).status, 200);
    const got = await answers;
    for (const [i, r] of got.entries()) assert.deepEqual([r.status, r.body], [200, `new /redis${i}`]);
    await answeredByBoth(p, "/redis", N);
    // Both workers applied the same shared version.
    const ws = (await until("both workers on the new config", async () => {
      const w = await workers(p);
      return w.length === 2 && w.every((x) => x.reporting && x.configVersion === 2) ? w : null;
    }))!;
    assert.equal(ws.length, 2);
  } finally {
    await p.stop();
    await up.close();
    await redis.stop();
  }
});

test("--workers 2 on a port another holdup --workers already serves is refused, not silently shared (SO_REUSEPORT)", async () => {
  const up = await startUpstream((_q, res) => res.end("ok"));
  const p = await startProxy(["--workers", "2", "-u", up.url]);
  try {
    const [cmd, args] = runtimeCommand("src/proxy.ts", ["--workers", "2", "-l", `127.0.0.1:${p.port}`, "--admin", "off", "-u", up.url]);
    const second = await run(cmd, args);
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${p.port} for the proxy: address already in use`));
  } finally {
    await p.stop();
    await up.close();
  }
});

test("--workers 2 with --tls-cert: both workers serve HTTPS on the shared port", async () => {
  const dir = await mkdtemp(join(tmpdir(), "holdup-workers-tls-"));
  const cert = join(dir, "c.pem"), key = join(dir, "k.pem");
  const made = await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]);
  assert.equal(made.code, 0, made.stderr);
  const ca = await readFile(cert, "utf8");
  const up = await startUpstream((req, res) => res.end(`ok ${req.url}`));
  const p = await startProxy(["--workers", "2", "-u", up.url, "--tls-cert", cert, "--tls-key", key]);
  try {
    const get = (i: number) => new Promise<{ status: number; body: string }>((resolve, reject) => {
      https.get({ host: "127.0.0.1", port: p.port, path: `/tls${i}`, ca, servername: "localhost", agent: false }, (res) => {
        let body = "";
        res.on("data", (d) => body += d);
        res.on("end", () => resolve({ status: res.statusCode!, body }));
      }).on("error", reject);
    });
    const got = await Promise.all(Array.from({ length: N }, (_, i) => get(i)));
    for (const [i, r] of got.entries()) assert.deepEqual([r.status, r.body], [200, `ok /tls${i}`]);
    await answeredByBoth(p, "/tls", N);
  } finally {
    await p.stop();
    await up.close();
    await rm(dir, { recursive: true, force: true });
  }
});

for (const artifact of ["dist/proxy.js", "dist/holdup"]) {
  test(`--workers 2 from ${artifact === "dist/holdup" ? "the compiled binary dist/holdup" : `the bundle dist/proxy.js on ${RUNTIME}`}: both workers serve and follow a pause`, async () => {
    const up = await startUpstream((req, res) => res.end(`ok ${req.url}`));
    const command: [string, string[]] | undefined = artifact === "dist/holdup" ? [join(ROOT, "dist/holdup"), []] : undefined;
    const p = await startProxy(["--workers", "2", "-u", up.url], command ? { command } : { entry: artifact });
    try {
      const got = await send(p, N, "/art");
      assert.ok(got.every((r) => r.status === 200));
      await answeredByBoth(p, "/art", N);
      assert.equal((await p.admin("POST", "/pause")).status, 200);
      await until("paused in both workers", async () => {
        const ws = await workers(p);
        return ws.length === 2 && ws.every((w) => w.reporting && w.mode === "paused");
      });
    } finally {
      await p.stop();
      await up.close();
    }
  });
}

test("the parent's worker channel: a connection without the password gets nothing and cannot make it buffer", async () => {
  const hub = new Hub();
  const url = new URL(await hub.start());
  const talk = async (bytes: string) => {
    const s = net.connect(Number(url.port), "127.0.0.1");
    await once(s, "connect");
    let got = "", closed = false;
    s.on("data", (d) => got += d);
    s.on("error", () => {});
    s.on("close", () => closed = true);
    s.write(bytes);
    return { s, got: () => got, closed: () => closed };
  };
  try {
    const stranger = await talk("*2\r\n$3\r\nGET\r\n$10\r\nholdup:ops\r\n");
    await until("a NOAUTH answer", () => stranger.got().startsWith("-NOAUTH"), 5000);
    stranger.s.destroy();
    // A huge declared argument before AUTH: closed once 4 KiB have arrived, not buffered up to 64 MiB.
    const flood = await talk(`*1\r\n$60000000\r\n${"x".repeat(8192)}`);
    await until("the flooding connection closed by the channel", flood.closed, 5000);
    assert.equal(flood.got(), "");
    const friend = await talk(`*2\r\n$4\r\nAUTH\r\n$${hub.password.length}\r\n${hub.password}\r\n*1\r\n$4\r\nPING\r\n`);
    await until("+OK then +PONG", () => friend.got() === "+OK\r\n+PONG\r\n", 5000);
    friend.s.destroy();
  } finally {
    hub.close();
  }
});

test("--workers 2 under ulimit -n 256: 400 connections to the worker channel that never authenticate, then a worker killed: the parent survives and a new worker rejoins and serves", async () => {
  const up = await startUpstream((req, res) => res.end(`ok ${req.url}`));
  const [cmd, args] = runtimeCommand("src/proxy.ts", ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log", "json", "--workers", "2", "-u", up.url]);
  const p = await startProxy([], { rawArgs: true, command: ["bash", ["-c", 'ulimit -n 256 && exec "$0" "$@"', cmd, ...args]] });
  const socks: net.Socket[] = [];
  const pids: number[] = [];
  try {
    const first = (await until("both workers report", async () => {
      const ws = await workers(p);
      return ws.length === 2 && ws.every((w) => w.reporting) ? ws : null;
    }, 20_000))!;
    pids.push(...first.map((w) => w.pid));
    // The channel's address, as the parent hands it to its workers.
    const env = (await run("cat", [`/proc/${first[1].pid}/environ`])).stdout; // Deno asks --allow-all for /proc itself
    const channel = new URL(/HOLDUP_WORKER_STATE=([^\0]*)/.exec(env)![1]);
    for (let i = 0; i < 400; i++) {
      const s = net.connect(Number(channel.port), "127.0.0.1");
      s.on("error", () => {});
      socks.push(s);
    }
    await until("the connections were made or refused", () => socks.every((s) => !s.connecting), 10_000);
    const from = p.lines.length;
    process.kill(first[1].pid, "SIGKILL");
    const again = await p.waitForLine("worker 1 restarted", (l) => l.msg === "worker serving again" && l.worker === 1, 20_000, from);
    pids.push(again.pid as number);
    assert.equal(p.child.exitCode, null, "the parent is still running");
    await until("the new worker 1 answers a request", async () => {
      await send(p, 4, "/rejoined");
      return p.accessLines().some((l) => String(l.path).startsWith("/rejoined") && l.worker === 1);
    }, 15_000, 50);
    // It joined the channel: a pause through worker 0's admin API holds its requests too.
    assert.equal((await p.admin("POST", "/pause")).status, 200);
    await until("worker 1 reports the pause", async () => (await workers(p)).every((w) => w.reporting && w.mode === "paused"), 10_000);
    // The strangers were closed: unauthenticated within 2 s, and never more than 64 at once.
    await until("every stranger closed by the channel", () => socks.every((s) => s.destroyed || s.readableEnded), 10_000);
  } finally {
    for (const s of socks) s.destroy();
    await p.stop();
    for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
    await up.close();
  }
});
