/**
 * A small Redis client over node:net (RESP2): commands, one subscription
 * channel, AUTH and SELECT from the URL, and reconnection with backoff that
 * subscribes again. It is all holdup needs from Redis, in ~150 lines that
 * bundle into dist/proxy.js and the binary with nothing to install; the
 * maintained clients are CommonJS with dynamic `require`s that the
 * single-file ESM bundle cannot carry on Deno.
 */
import { Buffer } from "node:buffer";
import net from "node:net";
import tls from "node:tls";

type Reply = string | number | null | Reply[] | Error;

export interface RedisOptions {
  url: string;
  /** Called with each message on the subscribed channel. */
  onMessage(payload: string): void;
  /** Connected (or reconnected) and subscribed: time to resynchronise. */
  onReady(): void;
  /** Lost the connection (called once per outage). */
  onDown(error: string): void;
}

export class Redis {
  private cmd: Conn | null = null;
  private sub: Conn | null = null;
  private backoff = 250;
  private closed = false;
  private up = false;
  readonly host: string;
  readonly port: number;
  private secure: boolean;
  private auth: string[] | null;
  private db: number;

  constructor(private o: RedisOptions, private channel: string) {
    const u = new URL(o.url);
    this.host = u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
    this.port = Number(u.port) || 6379;
    const pass = decodeURIComponent(u.password);
    this.auth = pass ? (u.username ? [decodeURIComponent(u.username), pass] : [pass]) : null;
    this.db = Number(u.pathname.slice(1) || 0);
    this.secure = u.protocol === "rediss:";
    void this.connect();
  }

  get connected(): boolean {
    return this.up;
  }

  /**
   * Runs commands between MULTI and EXEC, so no other client's command runs
   * between them; resolves with their replies (the first error rejects).
   */
  async transaction(...cmds: string[][]): Promise<Reply[]> {
    const c = this.cmd;
    if (!c || !this.up) throw new Error("the state engine (Redis) is unreachable");
    // Sent back to back (nothing awaits in between): this connection carries nothing else meanwhile.
    const replies = await Promise.all([["MULTI"], ...cmds, ["EXEC"]].map((x) => c.send(x)));
    for (const r of replies) if (r instanceof Error) throw r;
    const exec = replies[replies.length - 1];
    if (!Array.isArray(exec)) throw new Error("Redis aborted the transaction");
    for (const r of exec) if (r instanceof Error) throw r;
    return exec;
  }

  /** Runs one command; rejects while disconnected. */
  async command(...args: string[]): Promise<Reply> {
    if (!this.cmd || !this.up) throw new Error("the state engine (Redis) is unreachable");
    const r = await this.cmd.send(args);
    if (r instanceof Error) throw r;
    return r;
  }

  close(): void {
    this.closed = true;
    this.cmd?.destroy();
    this.sub?.destroy();
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    try {
      const cmd = await Conn.open(this.host, this.port, this.secure, (why) => this.lost(why));
      const sub = await Conn.open(this.host, this.port, this.secure, (why) => this.lost(why), (m) => {
        if (Array.isArray(m) && m[0] === "message" && typeof m[2] === "string") this.o.onMessage(m[2]);
      }).catch((e) => {
        cmd.destroy();
        throw e;
      });
      for (const c of [cmd, sub]) {
        if (this.auth) check(await c.send(["AUTH", ...this.auth]));
      }
      if (this.db) check(await cmd.send(["SELECT", String(this.db)]));
      check(await sub.send(["SUBSCRIBE", this.channel]));
      this.cmd = cmd;
      this.sub = sub;
      this.up = true;
      this.backoff = 250;
      this.o.onReady();
    } catch (e) {
      this.lost(String((e as Error)?.message ?? e));
    }
  }

  private lost(error: string): void {
    const was = this.up;
    this.up = false;
    this.cmd?.destroy();
    this.sub?.destroy();
    this.cmd = this.sub = null;
    if (this.closed) return;
    if (was) this.o.onDown(error);
    else if (this.backoff === 250) this.o.onDown(error);
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, 5000);
    if (!this.retry) {
      this.retry = setTimeout(() => {
        this.retry = null;
        void this.connect();
      }, wait);
    }
  }

  private retry: ReturnType<typeof setTimeout> | null = null;
}

function check(r: Reply): void {
  if (r instanceof Error) throw r;
}

/**
 * Bounds on what a Redis reply may be: holdup's replies nest two deep (EXEC of
 * LRANGE) and hold its own operations. A reply past them (a hostile or broken
 * server: 800 KB of nested arrays overflowed the stack) closes the connection,
 * and the client reconnects with backoff.
 */
export const REPLY_LIMITS = { depth: 8, bulkBytes: 64 * 1024 * 1024, elements: 1_000_000, bufferBytes: 256 * 1024 * 1024 };

class ReplyError extends Error {}

/** One RESP connection: replies are matched to commands in order; pushes go to `onPush`. */
class Conn {
  private waiting: Array<(r: Reply) => void> = [];
  private buf = "";
  private dead = false;
  private why = "connection closed";

  private constructor(private sock: net.Socket, private onClose: (why: string) => void, private onPush?: (r: Reply) => void) {
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => this.feed(d));
    sock.on("error", () => {});
    sock.on("close", () => {
      if (this.dead) return;
      this.dead = true;
      for (const w of this.waiting.splice(0)) w(new Error(this.why));
      this.onClose(this.why);
    });
  }

  static open(host: string, port: number, secure: boolean, onClose: (why: string) => void, onPush?: (r: Reply) => void): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const sock: net.Socket = secure ? tls.connect({ host, port, servername: host }) : net.connect({ host, port });
      const timer = setTimeout(() => sock.destroy(new Error("connect timeout")), 3000);
      sock.once(secure ? "secureConnect" : "connect", () => {
        clearTimeout(timer);
        sock.setNoDelay(true);
        resolve(new Conn(sock, onClose, onPush));
      });
      sock.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  send(args: string[]): Promise<Reply> {
    if (this.dead) return Promise.resolve(new Error("connection closed"));
    let out = `*${args.length}\r\n`;
    for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
    this.sock.write(out);
    return new Promise((r) => this.waiting.push(r));
  }

  destroy(): void {
    this.dead = true;
    this.sock.destroy();
    for (const w of this.waiting.splice(0)) w(new Error("connection closed"));
  }

  private feed(d: string): void {
    this.buf += d;
    for (;;) {
      let parsed;
      try {
        if (this.buf.length > REPLY_LIMITS.bufferBytes) throw new ReplyError(`a reply larger than ${REPLY_LIMITS.bufferBytes} bytes`);
        parsed = parse(this.buf, 0, 0);
      } catch (e) {
        if (!(e instanceof ReplyError)) throw e;
        // Not a reply holdup can use: drop the connection (the client reconnects).
        this.why = `the state engine sent ${e.message}; reconnecting`;
        this.buf = "";
        this.sock.destroy();
        return;
      }
      if (!parsed) return;
      this.buf = this.buf.slice(parsed.end);
      const r = parsed.value;
      const w = this.waiting.shift();
      if (w) w(r);
      else this.onPush?.(r);
    }
  }
}

/** Parses one RESP2 value at `i`; null when more bytes are needed. Bulk lengths count bytes. Throws ReplyError past REPLY_LIMITS. */
function parse(s: string, i: number, depth: number): { value: Reply; end: number } | null {
  const eol = s.indexOf("\r\n", i);
  if (eol < 0) return null;
  const type = s[i], line = s.slice(i + 1, eol);
  switch (type) {
    case "+":
      return { value: line, end: eol + 2 };
    case "-":
      return { value: new Error(line), end: eol + 2 };
    case ":":
      return { value: Number(line), end: eol + 2 };
    case "$": {
      const n = Number(line);
      if (n < 0) return { value: null, end: eol + 2 };
      if (!Number.isInteger(n) || n > REPLY_LIMITS.bulkBytes) throw new ReplyError(`a string of ${line.slice(0, 20)} bytes`);
      // Byte length: walk characters until n bytes are covered (payloads are UTF-8 JSON).
      let j = eol + 2, bytes = 0;
      while (bytes < n) {
        if (j >= s.length) return null;
        const c = s.charCodeAt(j);
        bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c <= 0xdbff ? 4 : 3;
        j += c >= 0xd800 && c <= 0xdbff ? 2 : 1;
      }
      if (s.length < j + 2) return null;
      return { value: s.slice(eol + 2, j), end: j + 2 };
    }
    case "*": {
      const n = Number(line);
      if (n < 0) return { value: null, end: eol + 2 };
      if (!Number.isInteger(n) || n > REPLY_LIMITS.elements) throw new ReplyError(`an array of ${line.slice(0, 20)} elements`);
      if (depth >= REPLY_LIMITS.depth) throw new ReplyError(`arrays nested deeper than ${REPLY_LIMITS.depth}`);
      const out: Reply[] = [];
      let at = eol + 2;
      for (let k = 0; k < n; k++) {
        const p = parse(s, at, depth + 1);
        if (!p) return null;
        out.push(p.value);
        at = p.end;
      }
      return { value: out, end: at };
    }
    default:
      throw new ReplyError(`an unexpected reply ${JSON.stringify(s.slice(i, i + 20))}`);
  }
}
