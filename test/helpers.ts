/**
 * Test helpers: real upstream servers on loopback, real proxy processes on the
 * same runtime as the test runner, and a raw HTTP/1.1 client for checking
 * headers byte for byte. Everything here works under `deno test` and `bun test`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";
import type tls from "node:tls";
import process from "node:process";
import { once } from "node:events";
import assert from "node:assert/strict";

export const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);
export const RUNTIME: "deno" | "bun" = "Deno" in globalThis ? "deno" : "bun";
const PERMISSIONS = ["--allow-net", "--allow-read", "--allow-env", "--allow-run"];

/** The command that runs a holdup entry file on this test's runtime. */
export function runtimeCommand(entry: string, args: string[]): [string, string[]] {
  if (RUNTIME === "deno") return [process.execPath, ["run", ...PERMISSIONS, entry, ...args]];
  return [process.execPath, [entry, ...args]];
}

/** Polls `check` until it returns a truthy value, or fails after `ms`. */
export async function until<T>(what: string, check: () => T | Promise<T>, ms = 10_000, every = 20): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// ---------------------------------------------------------------- processes

export interface ProcResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (with a deadline). */
export async function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: Record<string, string>; cwd?: string } = {}): Promise<ProcResult> {
  const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "", stderr = "";
  child.stdout!.on("data", (d) => stdout += d);
  child.stderr!.on("data", (d) => stderr += d);
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 20_000);
  const [code] = await once(child, "close") as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

export interface LogLine {
  msg: string;
  [k: string]: unknown;
}

/** How long Proxy.stop waits after SIGTERM before SIGKILL (and a failure). */
const STOP_GRACE_MS = 5_000;

export class Proxy {
  readonly lines: LogLine[] = [];
  stderr = "";
  port = 0;
  adminPort = 0;
  readonly exited: Promise<number | null>;
  private waiters: Array<() => void> = [];

  constructor(readonly child: ChildProcess) {
    let buf = "";
    child.stderr!.on("data", (d) => {
      this.stderr += d;
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          this.lines.push(JSON.parse(line));
        } catch {
          this.lines.push({ msg: line });
        }
        for (const w of this.waiters.splice(0)) w();
      }
    });
    this.exited = once(child, "close").then(([code]) => code as number | null);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get adminUrl(): string {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  /** Waits for a log line matching `pred` (searching lines already seen first). */
  async waitForLine(what: string, pred: (l: LogLine) => boolean, ms = 10_000, from = 0): Promise<LogLine> {
    const end = Date.now() + ms;
    for (;;) {
      const hit = this.lines.slice(from).find(pred);
      if (hit) return hit;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for log line: ${what}\n--- stderr:\n${this.stderr}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  accessLines(): LogLine[] {
    return this.lines.filter((l) => l.msg === "request");
  }

  /**
   * Sends a signal by pid: Deno's node:child_process reports a child that was
   * sent a signal through ChildProcess.kill() as killed by it, even when the
   * child handled the signal and exited 0.
   */
  signal(sig: NodeJS.Signals): void {
    try {
      process.kill(this.child.pid!, sig);
    } catch (e) {
      if ((e as { code?: string }).code !== "ESRCH") throw e; // already gone
    }
  }

  /**
   * SIGTERM and wait; SIGKILL if it does not exit within 5 s — and then throw
   * (a shutdown hang is a bug the test found), unless the test says it expects
   * one with `{ hangExpected: true }`.
   */
  async stop(opts: { hangExpected?: boolean } = {}): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.signal("SIGTERM");
    let killed = false;
    const t = setTimeout(() => {
      killed = true;
      this.child.kill("SIGKILL");
    }, STOP_GRACE_MS);
    await this.exited;
    clearTimeout(t);
    if (killed && !opts.hangExpected) {
      const tail = this.stderr.split("\n").slice(-15).join("\n");
      throw new Error(
        `shutdown hang: holdup (pid ${this.child.pid}: ${this.child.spawnargs.join(" ")}) did not exit within ` +
          `${STOP_GRACE_MS / 1000} s of SIGTERM and was killed with SIGKILL\n--- last stderr:\n${tail}`,
      );
    }
  }

  async admin(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
    const json = body !== undefined && typeof body !== "string";
    return await fetch(this.adminUrl + path, {
      method,
      headers: json ? { "content-type": "application/json", ...headers } : headers,
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
  }

  async status(): Promise<{ held: number; configVersion: number; mode: string; upstreams: Array<Record<string, unknown>> } & Record<string, unknown>> {
    return await (await this.admin("GET", "/status")).json();
  }
}

/**
 * Starts holdup from `entry` (default src/proxy.ts) on this runtime, listening
 * on free loopback ports, with JSON logs; resolves once it has started.
 */
export async function startProxy(args: string[], opts: {
  entry?: string;
  env?: Record<string, string>;
  cwd?: string;
  /** Run this instead of the runtime with `entry`; holdup's flags are appended unless `rawArgs`. */
  command?: [string, string[]];
  rawArgs?: boolean;
  /** For entries that print no listen address (the edge entry): the port they were told to use. */
  port?: number;
} = {}): Promise<Proxy> {
  const full = opts.rawArgs ? args : ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log", "json", ...args];
  const [cmd, argv] = opts.command ? [opts.command[0], [...opts.command[1], ...full]] : runtimeCommand(opts.entry ?? "src/proxy.ts", full);
  const child = spawn(cmd, argv, {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, NO_COLOR: "1", ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const p = new Proxy(child);
  const started = await Promise.race([
    p.waitForLine("holdup started", (l) => String(l.msg).startsWith("holdup started"), 20_000),
    p.exited.then((code) => {
      throw new Error(`holdup exited with ${code} before starting:\n${p.stderr}`);
    }),
  ]);
  if (opts.port) {
    p.port = opts.port;
    await until("the port to accept connections", () => canConnect(opts.port!), 20_000);
    return p;
  }
  p.port = Number(String(started.listen).split(":").pop());
  if (started.admin !== "off") p.adminPort = Number(String(started.admin).split(":").pop());
  return p;
}

/** True when something accepts TCP connections on the loopback port. */
export async function canConnect(port: number): Promise<boolean> {
  const s = net.connect(port, "127.0.0.1");
  s.on("error", () => {});
  try {
    await once(s, "connect");
    return true;
  } catch {
    return false;
  } finally {
    s.destroy();
  }
}

// ---------------------------------------------------------------- redis

/** redis-server from Debian on a free loopback port, no persistence. */
export async function startRedis(port?: number): Promise<{ port: number; url: string; child: ChildProcess; stop(): Promise<void> }> {
  port ??= await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d) => out += d);
  const closed = once(child, "close");
  await until("redis-server ready", () => /Ready to accept connections/.test(out) || child.exitCode !== null, 10_000);
  assert.equal(child.exitCode, null, `redis-server exited:\n${out}`);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    child,
    stop: async () => {
      child.kill("SIGKILL");
      await closed;
    },
  };
}

// ---------------------------------------------------------------- upstreams

export interface Upstream {
  port: number;
  url: string;
  server: http.Server;
  /** Requests received: method, url, headers, body. */
  received: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; rawHeaders: string[]; body: Buffer }>;
  connections: number;
  close(): Promise<void>;
}

export type UpstreamHandler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;

/** A real node:http server on 127.0.0.1 (port 0 = any free one). It records every request with its body. */
export async function startUpstream(handler: UpstreamHandler = echoHandler, port = 0): Promise<Upstream> {
  const received: Upstream["received"] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      received.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body });
      handler(req, res, body);
    });
  });
  const up: Upstream = {
    port: 0,
    url: "",
    server,
    received,
    connections: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  server.on("connection", (s) => {
    up.connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  up.port = (server.address() as net.AddressInfo).port;
  up.url = `http://127.0.0.1:${up.port}`;
  return up;
}

/** Answers with what it received, as JSON. */
export const echoHandler: UpstreamHandler = (req, res, body) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bodyLength: body.length }));
};

/**
 * A loopback port that nothing listens on (free now; may be taken later by a
 * test). Chosen below the kernel's ephemeral range (32768+ on Linux), where
 * port 0 listeners and outgoing connections take theirs, so a busy machine's
 * own traffic cannot grab it between this check and its use.
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const s = net.createServer();
    const ok = await new Promise<boolean>((resolve) => {
      s.once("error", () => resolve(false));
      s.listen(port, "127.0.0.1", () => resolve(true));
    });
    if (ok) {
      await new Promise<void>((r) => s.close(() => r()));
      return port;
    }
  }
  throw new Error("no free loopback port found in 20000-31999");
}

// ---------------------------------------------------------------- raw client

export interface RawResponse {
  status: number;
  /** Header names lowercased, in order, repeated names kept. */
  headers: Array<[string, string]>;
  header(name: string): string | undefined;
  body: Buffer;
}

/**
 * Sends `head` (request line + headers, without the blank line) and `body`
 * over a fresh TCP connection and reads the whole reply (the request should
 * say Connection: close). Chunked bodies are de-chunked; nothing is decoded.
 */
export async function rawRequest(port: number, head: string, body: Buffer | string = ""): Promise<RawResponse> {
  const sock = net.connect(port, "127.0.0.1");
  await once(sock, "connect");
  sock.write(head.replace(/\r?\n/g, "\r\n") + "\r\n\r\n");
  if (body.length) sock.write(body);
  const chunks: Buffer[] = [];
  sock.on("data", (c: Buffer) => chunks.push(c));
  await once(sock, "close");
  const all = Buffer.concat(chunks);
  const end = all.indexOf("\r\n\r\n");
  if (end < 0) throw new Error(`no response head in ${JSON.stringify(all.toString())}`);
  const lines = all.subarray(0, end).toString("latin1").split("\r\n");
  const status = Number(lines[0].split(" ")[1]);
  const headers = lines.slice(1).map((l) => {
    const i = l.indexOf(":");
    return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()] as [string, string];
  });
  let rest: Buffer = all.subarray(end + 4);
  if (headers.some(([k, v]) => k === "transfer-encoding" && /chunked/i.test(v))) rest = dechunk(rest);
  return { status, headers, body: rest, header: (n) => headers.find(([k]) => k === n.toLowerCase())?.[1] };
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let i = 0;
  for (;;) {
    const eol = b.indexOf("\r\n", i);
    if (eol < 0) break;
    const size = parseInt(b.subarray(i, eol).toString(), 16);
    if (!size) break;
    out.push(b.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/** A GET through node:http (no decoding, keeps raw headers), resolving with status, headers and raw body. */
export function nodeGet(url: string, headers: Record<string, string> = {}, method = "GET"): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** One HTTP/1.1 request on an open (keep-alive) TLS connection; reads one response with a Content-Length. */
export async function tlsRequest(s: tls.TLSSocket, path: string, host = "localhost"): Promise<{ status: number; body: string }> {
  let buf = Buffer.alloc(0);
  const done = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString("latin1");
      const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
      if (buf.length < end + 4 + len) return;
      s.off("data", onData);
      s.off("close", onClose);
      resolve({ status: Number(head.split(" ")[1]), body: buf.subarray(end + 4, end + 4 + len).toString() });
    };
    const onClose = () => reject(new Error(`connection closed before a response; got ${JSON.stringify(buf.toString())}`));
    s.on("data", onData);
    s.once("close", onClose);
  });
  s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  return await done;
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
}
