/**
 * Socket activation (serve/activation.ts) under Debian's
 * `systemd-socket-activate`: on Deno the proxy serves the passed socket (a
 * request sent before holdup even started is queued by the kernel and
 * answered); on Bun, whose node:http cannot serve a passed socket, holdup
 * refuses in one line and exits 1. Each runtime's binary is started
 * explicitly, so both checks run whichever runtime runs the tests.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import net from "node:net";
import { join } from "node:path";
import { freePort, ROOT, run, startProxy, startUpstream, until } from "./helpers.ts";

const DENO = join(ROOT, "node_modules/.bin/deno");
const BUN = join(ROOT, "node_modules/.bin/bun");
const DENO_RUN = [DENO, "run", "--allow-net", "--allow-read", "--allow-env", "--allow-run", join(ROOT, "src/proxy.ts")];

/** systemd-socket-activate starts the command on the first connection: knock until one is accepted. */
async function knock(port: number): Promise<void> {
  await until("the socket to accept", () =>
    new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    }), 10_000);
}

test("socket activation on Deno: the proxy serves the passed socket; a request queued before holdup started is answered", async () => {
  const up = await startUpstream((_q, res) => res.end("served"));
  const port = await freePort();
  const starting = startProxy(["-u", up.url], { command: ["systemd-socket-activate", ["-l", `127.0.0.1:${port}`, ...DENO_RUN]] });
  await knock(port);
  // Sent while holdup may still be starting: the kernel keeps it queued on the passed socket.
  const early = fetch(`http://127.0.0.1:${port}/early`).then(async (r) => ({ status: r.status, text: await r.text() }));
  const p = await starting;
  try {
    const started = p.lines.find((l) => l.msg === "holdup started")!;
    assert.equal(started.socketActivation, "fd 3");
    assert.equal(started.listen, `127.0.0.1:${port}`, "the passed socket's address, not --listen's port 0");
    assert.deepEqual(await early, { status: 200, text: "served" });
    const again = await fetch(`http://127.0.0.1:${port}/again`);
    assert.equal(await again.text(), "served");
    // A self-upgrade is refused here (the passed socket is the service manager's): 409, and it keeps serving.
    const upgrade = await p.admin("POST", "/upgrade");
    assert.equal(upgrade.status, 409);
    assert.match((await upgrade.json()).error, /socket activation/);
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/after`)).text(), "served");
  } finally {
    await p.stop();
    await up.close();
  }
});

test("socket activation on Bun: one line saying it cannot, exit 1 (not a listener on another port)", async () => {
  const port = await freePort();
  const r = run("systemd-socket-activate", ["-l", `127.0.0.1:${port}`, BUN, join(ROOT, "src/proxy.ts"), "-u", ":9"], { timeoutMs: 20_000 });
  await knock(port);
  const out = await r;
  assert.equal(out.code, 1, out.stderr);
  const lines = out.stderr.split("\n").filter((l) => l.startsWith("holdup"));
  assert.equal(lines.length, 1, out.stderr);
  assert.match(lines[0], /^holdup: socket activation \(LISTEN_FDS\) does not work on Bun/);
});

test("LISTEN_FDS for holdup but no socket on fd 3: one line naming the passed socket, exit 1", async () => {
  const r = await run("sh", ["-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$@" 3<&-`, "sh", ...DENO_RUN, "-u", ":9", "--admin", "off"], { timeoutMs: 20_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr.trim(), /^holdup: cannot listen on the passed socket \(fd 3, LISTEN_FDS\) for the proxy: /);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
});

test("LISTEN_FDS meant for another process (LISTEN_PID not holdup's) is ignored: holdup binds --listen", async () => {
  const up = await startUpstream((_q, res) => res.end("served"));
  const p = await startProxy(["-u", up.url], { env: { LISTEN_FDS: "1", LISTEN_PID: "1" } });
  try {
    assert.equal(p.lines.find((l) => l.msg === "holdup started")!.socketActivation, undefined);
    assert.equal(await (await fetch(p.url + "/")).text(), "served");
  } finally {
    await p.stop();
    await up.close();
  }
});

/**
 * One keep-alive client over a raw socket (no client library that might resend): GET after GET on one
 * connection; a new connection only after an answer that said `Connection: close` (or an idle close).
 * A request written and not answered in full is a failure, with its error.
 */
function keepAliveLoop(port: number, running: () => boolean): { ok: () => number; failures: string[]; done: Promise<void> } {
  let ok = 0;
  const failures: string[] = [];
  const one = () =>
    new Promise<void>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      let buf = Buffer.alloc(0);
      let waiting = false;
      const ask = () => {
        if (!running()) return void s.end();
        waiting = true;
        s.write("GET /ka HTTP/1.1\r\nHost: holdup.test\r\n\r\n");
      };
      s.on("connect", ask);
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.subarray(0, end).toString("latin1");
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
        if (!Number.isFinite(length)) failures.push(`no Content-Length: ${head.split("\r\n")[0]}`);
        if (buf.length < end + 4 + (length || 0)) return;
        buf = buf.subarray(end + 4 + (length || 0));
        waiting = false;
        if (/^HTTP\/1\.1 200 /.test(head)) ok++;
        else failures.push(head.split("\r\n")[0]);
        if (/\r\nconnection: *close/i.test(head)) s.end();
        else ask();
      });
      s.on("error", (e: NodeJS.ErrnoException) => {
        if (waiting) failures.push(e.code ?? e.message);
        waiting = false;
      });
      s.on("close", () => {
        if (waiting) failures.push("closed before the answer");
        resolve();
      });
    });
  const done = (async () => {
    while (running() && failures.length < 50) await one();
  })();
  return { ok: () => ok, failures, done };
}

test("socket activation on Deno: restarting holdup (SIGTERM, the next one on the same socket) under 8 keep-alive clients fails no request", async () => {
  const up = await startUpstream((_q, res) => res.end("served"));
  const port = await freePort();
  const inner = `export LISTEN_PID=$$; exec ${DENO_RUN.join(" ")} --log json --admin off -u ${up.url}`;
  // systemd-socket-activate execs the loop: its child is the sh that execs holdup.
  const loop = spawn("systemd-socket-activate", ["-l", `127.0.0.1:${port}`, "sh", "-c", `while :; do sh -c '${inner}'; done`], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  loop.stderr!.on("data", (d) => log += d);
  const count = (re: RegExp) => (log.match(re) ?? []).length;
  let running = true;
  const clients: ReturnType<typeof keepAliveLoop>[] = [];
  try {
    await knock(port);
    await until("holdup to start", () => count(/"holdup started"/g) >= 1, 20_000);
    for (let i = 0; i < 8; i++) clients.push(keepAliveLoop(port, () => running));
    const ok = () => clients.reduce((n, c) => n + c.ok(), 0);
    await until("answers before the restart", () => ok() >= 200, 20_000);
    const first = Number(execFileSync("pgrep", ["-P", String(loop.pid)]).toString().trim());
    process.kill(first, "SIGTERM");
    await until("the next holdup to start", () => count(/"holdup started"/g) >= 2, 30_000);
    const at = ok();
    await until("answers from the next holdup", () => ok() >= at + 200, 20_000);
    running = false;
    await Promise.all(clients.map((c) => c.done));
    assert.deepEqual(clients.flatMap((c) => c.failures), []);
    assert.equal(count(/"msg":"stopped"/g), 1, "the first holdup stopped cleanly (within its grace period)");
    console.log(`socket-activation restart: ${ok()} answers over 8 keep-alive clients, 0 failed`);
  } finally {
    running = false;
    loop.kill("SIGKILL");
    try {
      for (const pid of execFileSync("pgrep", ["-f", `src/proxy.ts --log json --admin off -u ${up.url}$`]).toString().trim().split("\n")) process.kill(Number(pid), "SIGKILL");
    } catch { /* none left */ }
    await up.close();
  }
});
