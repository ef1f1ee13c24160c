/**
 * The parent's channel for `--workers N` without `--state`: a loopback server
 * speaking the few Redis commands fleet/fleet.ts sends, so each worker runs
 * the same Fleet code as with a real Redis. A connection must authenticate
 * within AUTH_DEADLINE_MS, and at most MAX_UNAUTHED may wait to, so strangers
 * cannot starve a restarted worker. See docs/design/fleet.md.
 */
import { Buffer } from "node:buffer";
import net from "node:net";

/** Bytes an unauthenticated connection may send before its AUTH is complete. */
const PRE_AUTH_MAX = 4096;
/** How long a connection may take to authenticate. */
export const AUTH_DEADLINE_MS = 2000;
/** Connections waiting to authenticate at once; a new one past this closes the oldest. */
export const MAX_UNAUTHED = 64;

export class Hub {
  private lists = new Map<string, string[]>();
  private keys = new Map<string, { value: string; until: number }>();
  private subscribers = new Map<string, Set<net.Socket>>();
  private sockets = new Set<net.Socket>();
  /** Connections not authenticated yet, oldest first. */
  private unauthed = new Set<net.Socket>();
  /** Connections closed for not authenticating in time or for the cap (for tests and logs). */
  refused = 0;
  readonly password = crypto.randomUUID();
  private server = net.createServer((s) => this.accept(s));
  port = 0;

  async start(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => resolve()); // never in the proxy port's SO_REUSEPORT group
    });
    this.port = (this.server.address() as net.AddressInfo).port;
    return `redis://:${this.password}@127.0.0.1:${this.port}`;
  }

  close(): void {
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }

  private get(key: string): string | null {
    const v = this.keys.get(key);
    if (v && v.until <= Date.now()) this.keys.delete(key);
    return v && v.until > Date.now() ? v.value : null;
  }

  private accept(sock: net.Socket): void {
    if (this.unauthed.size >= MAX_UNAUTHED) {
      const oldest = this.unauthed.values().next().value!;
      this.unauthed.delete(oldest);
      this.refused++;
      oldest.destroy();
    }
    this.sockets.add(sock);
    this.unauthed.add(sock);
    sock.setNoDelay(true);
    let buf: Buffer = Buffer.alloc(0);
    let authed = false;
    const deadline = setTimeout(() => {
      this.refused++;
      sock.destroy();
    }, AUTH_DEADLINE_MS);
    sock.on("error", () => {});
    sock.on("close", () => {
      clearTimeout(deadline);
      this.sockets.delete(sock);
      this.unauthed.delete(sock);
      for (const set of this.subscribers.values()) set.delete(sock);
    });
    sock.on("data", (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      // Before AUTH only a short command can be legitimate: a local stranger cannot make the parent buffer more.
      if (!authed && buf.length > PRE_AUTH_MAX) return void sock.destroy();
      for (;;) {
        const r = parseCommand(buf);
        if (r === null) return;
        if (r === "bad") return void sock.destroy();
        buf = buf.subarray(r.end);
        const [name, ...args] = r.args;
        const cmd = name.toUpperCase();
        if (cmd === "AUTH") {
          authed = args[args.length - 1] === this.password;
          if (!authed) return void sock.end("-WRONGPASS invalid password\r\n");
          clearTimeout(deadline);
          this.unauthed.delete(sock);
          sock.write("+OK\r\n");
        } else if (!authed) sock.write("-NOAUTH Authentication required.\r\n");
        else sock.write(this.run(sock, cmd, args));
      }
    });
  }

  /** Commands queued between MULTI and EXEC, per connection. */
  private multi = new WeakMap<net.Socket, string[][]>();

  private run(sock: net.Socket, cmd: string, a: string[]): string {
    const queued = this.multi.get(sock);
    if (queued && cmd !== "EXEC") {
      queued.push([cmd, ...a]);
      return "+QUEUED\r\n";
    }
    switch (cmd) {
      case "MULTI":
        this.multi.set(sock, []);
        return "+OK\r\n";
      case "EXEC": {
        if (!queued) return "-ERR EXEC without MULTI\r\n";
        this.multi.delete(sock);
        return `*${queued.length}\r\n${queued.map(([c, ...x]) => this.run(sock, c, x)).join("")}`;
      }
      case "DEL": {
        let n = 0;
        for (const k of a) n += Number(this.keys.delete(k)) + Number(this.lists.delete(k));
        return `:${n}\r\n`;
      }
      case "LTRIM": {
        const list = this.lists.get(a[0]) ?? [];
        const at = (i: number) => (i < 0 ? list.length + i : i);
        this.lists.set(a[0], list.slice(Math.max(0, at(Number(a[1]))), at(Number(a[2])) + 1));
        return "+OK\r\n";
      }
      case "PING":
        return "+PONG\r\n";
      case "SELECT":
        return "+OK\r\n";
      case "GET":
        return bulk(this.get(a[0]));
      case "SET": {
        // SET key value [NX] [PX ms]
        const opts = a.slice(2).map((o) => o.toUpperCase());
        if (opts.includes("NX") && this.get(a[0]) !== null) return bulk(null);
        const px = opts.indexOf("PX");
        this.keys.set(a[0], { value: a[1], until: px >= 0 ? Date.now() + Number(a[px + 3]) : Infinity });
        return "+OK\r\n";
      }
      case "RPUSH": {
        const list = this.lists.get(a[0]) ?? [];
        this.lists.set(a[0], list);
        list.push(...a.slice(1));
        return `:${list.length}\r\n`;
      }
      case "LRANGE": {
        const list = this.lists.get(a[0]) ?? [];
        const at = (i: number) => (i < 0 ? list.length + i : i);
        const items = list.slice(Math.max(0, at(Number(a[1]))), at(Number(a[2])) + 1);
        return `*${items.length}\r\n${items.map(bulk).join("")}`;
      }
      case "PUBLISH": {
        const subs = this.subscribers.get(a[0]) ?? new Set();
        const msg = `*3\r\n${bulk("message")}${bulk(a[0])}${bulk(a[1])}`;
        for (const s of subs) s.write(msg);
        return `:${subs.size}\r\n`;
      }
      case "SUBSCRIBE": {
        let out = "";
        a.forEach((ch, i) => {
          const set = this.subscribers.get(ch) ?? new Set();
          this.subscribers.set(ch, set);
          set.add(sock);
          out += `*3\r\n${bulk("subscribe")}${bulk(ch)}:${i + 1}\r\n`;
        });
        return out;
      }
      default:
        return `-ERR unknown command '${cmd}' (holdup's worker channel serves only what holdup's fleet sends)\r\n`;
    }
  }
}

function bulk(s: string | null): string {
  return s === null ? "$-1\r\n" : `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
}

/** One command as a RESP array of bulk strings; null when more bytes are needed. */
function parseCommand(b: Buffer): { args: string[]; end: number } | null | "bad" {
  if (!b.length) return null;
  if (b[0] !== 0x2a /* * */) return "bad";
  let eol = b.indexOf("\r\n");
  if (eol < 0) return null;
  const n = Number(b.subarray(1, eol).toString());
  if (!Number.isInteger(n) || n < 1 || n > 1024) return "bad";
  let at = eol + 2;
  const args: string[] = [];
  for (let i = 0; i < n; i++) {
    if (at >= b.length) return null;
    if (b[at] !== 0x24 /* $ */) return "bad";
    eol = b.indexOf("\r\n", at);
    if (eol < 0) return null;
    const len = Number(b.subarray(at + 1, eol).toString());
    if (!Number.isInteger(len) || len < 0 || len > 64 * 1024 * 1024) return "bad";
    if (b.length < eol + 2 + len + 2) return null;
    args.push(b.subarray(eol + 2, eol + 2 + len).toString("utf8"));
    at = eol + 2 + len + 2;
  }
  return { args, end: at };
}
