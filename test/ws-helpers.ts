/**
 * WebSocket test helpers shared by the command-line proxy's tests
 * (websocket.test.ts) and the edge entry's (edge-ws.test.ts): upstream
 * servers nobody here wrote — websocketd (Debian) and an Autobahn echo server
 * (python3-autobahn) — the runtime's own WebSocket client, and a raw TCP
 * client for byte-exact handshakes.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import net from "node:net";
import { Buffer } from "node:buffer";
import { canConnect, freePort, ROOT, until } from "./helpers.ts";

// ---------------------------------------------------------------- upstream servers

export interface Server {
  port: number;
  url: string;
  stop(): Promise<void>;
}


function server(child: ChildProcess, port: number): Server {
  child.stdout?.resume();
  child.stderr?.resume();
  const exited = once(child, "close");
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/** websocketd running `cmd`: one process per connection, one message per line. */
export async function websocketd(port?: number, ...cmd: string[]): Promise<Server> {
  port ??= await freePort();
  const child = spawn("websocketd", ["--port", String(port), "--address", "127.0.0.1", "--loglevel", "error", ...(cmd.length ? cmd : ["cat"])], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  await until("websocketd to listen", () => canConnect(port!), 10_000);
  return server(child, port);
}

/** test/fixtures/autobahn_echo.py: echo, subprotocol "chat.v2", "close CODE REASON", "headers", /refuse → 403. */
export async function autobahn(): Promise<Server> {
  const child = spawn("/usr/bin/python3", [`${ROOT}test/fixtures/autobahn_echo.py`, "0"], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d) => out += d);
  const port = await until("autobahn to listen", () => Number(/listening (\d+)/.exec(out)?.[1]), 10_000);
  return server(child, port);
}

// ---------------------------------------------------------------- clients

/** The runtime's own WebSocket, with a queue of received messages and the close event. */
export class Client {
  readonly ws: WebSocket;
  private queue: unknown[] = [];
  private waiting: Array<(m: unknown) => void> = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string; at: number }>;

  constructor(url: string, protocols?: string[]) {
    this.ws = new WebSocket(url, protocols);
    this.ws.binaryType = "arraybuffer";
    this.ws.onmessage = (e) => {
      const w = this.waiting.shift();
      if (w) w(e.data);
      else this.queue.push(e.data);
    };
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = () => resolve();
      this.ws.onerror = () => reject(new Error("WebSocket error before open"));
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.onclose = (e) => resolve({ code: e.code, reason: e.reason, at: performance.now() });
    });
  }

  next(ms = 5000): Promise<unknown> {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no message within " + ms + "ms")), ms);
      this.waiting.push((m) => {
        clearTimeout(t);
        resolve(m);
      });
    });
  }

  async echo(data: string | Uint8Array): Promise<unknown> {
    this.ws.send(data);
    return await this.next();
  }
}

export async function open(url: string, protocols?: string[]): Promise<Client> {
  const c = new Client(url, protocols);
  await c.opened;
  return c;
}

export interface Raw {
  status: number;
  head: string;
  socket: net.Socket;
  /** Everything received after the response head, so far. */
  rest: Buffer;
  closed: Promise<unknown>;
}

/** A handshake over raw TCP: exactly these headers; resolves with the response head, and keeps collecting. */
export async function rawHandshake(port: number, path: string, headers: string[]): Promise<Raw> {
  const socket = net.connect(port, "127.0.0.1");
  await once(socket, "connect");
  const closed = once(socket, "close");
  const key = randomBytes(16).toString("base64");
  socket.write([`GET ${path} HTTP/1.1`, "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", `Sec-WebSocket-Key: ${key}`, ...headers, "", ""].join("\r\n"));
  let buf = Buffer.alloc(0);
  let raw: Raw | null = null;
  socket.on("data", (chunk: Buffer) => {
    if (raw) return void (raw.rest = Buffer.concat([raw.rest, chunk]));
    buf = Buffer.concat([buf, chunk]);
  });
  const end = await until("a response head", () => {
    const i = buf.indexOf("\r\n\r\n");
    return i >= 0 ? i + 1 : 0;
  }, 10_000, 5);
  const head = buf.subarray(0, end - 1).toString("latin1");
  raw = { status: Number(head.split(" ")[1]), head, socket, rest: buf.subarray(end + 3), closed };
  return raw;
}

/** A masked client text frame. */
export function clientFrame(text: string): Buffer {
  const p = Buffer.from(text);
  assert.ok(p.length < 126);
  const key = randomBytes(4);
  const f = Buffer.alloc(6 + p.length);
  f[0] = 0x81;
  f[1] = 0x80 | p.length;
  key.copy(f, 2);
  for (let i = 0; i < p.length; i++) f[6 + i] = p[i] ^ key[i & 3];
  return f;
}

/** The payload of the first unmasked server frame received. */
export async function serverFrame(r: Raw): Promise<Buffer> {
  return (await until("a server frame", () => {
    const buf = r.rest;
    if (buf.length < 2) return null;
    let len = buf[1] & 0x7f, p = 2;
    if (len === 126) [len, p] = [buf.length >= 4 ? buf.readUInt16BE(2) : Infinity, 4];
    else if (len === 127) [len, p] = [buf.length >= 10 ? Number(buf.readBigUInt64BE(2)) : Infinity, 10];
    return buf.length >= p + len ? buf.subarray(p, p + len) : null;
  }, 5000, 5))!;
}


/**
 * The handshake-fidelity probe shared by the command-line and edge tests: a raw handshake to
 * `/live/socket?vsn=2.0.0&x=%2F` with Host, Cookie, Authorization, Origin, User-Agent, two offered
 * subprotocols and an X-Forwarded-For, through a proxy in front of the Autobahn fixture. Asserts the
 * 101 carries the protocol the upstream chose (chat.v2), and returns what the upstream saw
 * (its "headers" command: path, params, headers).
 */
export async function fidelityHandshake(port: number): Promise<{ path: string; params: Record<string, string[]>; headers: Record<string, string> }> {
  const r = await rawHandshake(port, "/live/socket?vsn=2.0.0&x=%2F", [
    "Host: app.example.com",
    "Cookie: session=abc; theme=dark",
    "Authorization: Bearer t0ken",
    "Origin: https://app.example.com",
    "User-Agent: holdup-test/1.0",
    "Sec-WebSocket-Protocol: chat.v1, chat.v2",
    "X-Forwarded-For: 203.0.113.9",
  ]);
  assert.equal(r.status, 101, r.head);
  assert.match(r.head, /\r\nSec-WebSocket-Protocol: chat\.v2\r\n/i);
  r.socket.write(clientFrame("headers"));
  const info = JSON.parse((await serverFrame(r)).toString());
  r.socket.destroy();
  return info;
}
