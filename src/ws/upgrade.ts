/**
 * A WebSocket handshake through the command-line proxy: the listener's
 * `upgrade` event comes here. Held as a request is (hold.ts); with an upstream
 * ready, the client's handshake goes to it over TCP, and only its 101 reaches
 * the client, after which the two sockets form a byte tunnel (tunnel.ts).
 * See docs/design/websockets.md.
 */
import { Buffer } from "node:buffer";
import type http from "node:http";
import net, { type Socket } from "node:net";
import tls from "node:tls";
import { account, routeOr404 } from "../http/front.ts";
import { upstreamHeaders } from "../http/headers.ts";
import { requestId } from "../http/requestid.ts";
import type { Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import { originForm } from "../serve/target.ts";
import type { Incoming } from "../serve/types.ts";
import type { Apps } from "../apps/apps.ts";
import type { Upstream } from "../apps/upstream.ts";
import { basePath, type HoldClock, holdForUpstream, RETRY } from "./hold.ts";
import { Tunnel } from "./tunnel.ts";

export interface WsDeps {
  apps: Apps;
  log: Logger;
  metrics: Metrics;
}

/** A response head larger than this from the upstream is refused (502). */
const MAX_HEAD = 64 * 1024;
/** Bytes a client may send before its 101 (it should send none) that are kept for the upstream. */
const MAX_EARLY = 64 * 1024;
const noop = () => {};

export function isWebSocketUpgrade(req: http.IncomingMessage): boolean {
  const up = req.headers.upgrade;
  return typeof up === "string" && up.toLowerCase().split(",").some((p) => p.trim() === "websocket");
}

/** The listener's upgrade handler. */
export function wsUpgradeHandler(d: WsDeps): (req: http.IncomingMessage, socket: Socket, head: Uint8Array) => void {
  return (req, socket, head) => {
    socket.on("error", noop);
    handle(d, req, socket, head).catch((e) => {
      d.log.warn("internal error during a WebSocket handshake", { error: String((e as Error)?.stack ?? e) });
      answer(socket, 500, "internal error");
    });
  };
}

type Opened =
  | { kind: "response"; socket: Socket; status: number; head: Uint8Array; rest: Uint8Array }
  | { kind: "refused"; error: string }
  | { kind: "failed"; error: string }
  | { kind: "timeout" }
  | { kind: "aborted" };

async function handle(d: WsDeps, req: http.IncomingMessage, client: Socket, head: Uint8Array): Promise<void> {
  const start = performance.now();
  const method = req.method ?? "GET";
  const route = routeOr404(d.apps, req.headers.host ?? null, originForm(req.url ?? "/") ?? "/");
  const path = route.app ? route.target : "/";
  const clock: HoldClock = { start, heldMs: 0 };
  const sent = req.headers["x-request-id"];
  const rid = requestId(Array.isArray(sent) ? sent.join(", ") : sent);
  const log = (status: number, upstream: string | null, reason?: string) =>
    account(d, { app: route.app?.name ?? "", method, path, status, heldMs: clock.heldMs, start, requestId: rid })?.(null, upstream, reason);
  const refuse = (status: number, message: string, detail?: string, extra: string[] = []) => {
    answer(client, status, `${message}\nrequest id: ${rid}`, [`x-holdup-held-ms: ${Math.round(clock.heldMs)}`, `x-request-id: ${rid}`, ...extra]);
    log(status, null, detail ?? message);
  };

  if (!route.app) return refuse(404, route.message);
  const state = route.app.state;
  if (!isWebSocketUpgrade(req)) {
    return refuse(501, "only WebSocket upgrades are supported", undefined);
  }
  if (req.method !== "GET") return refuse(400, "a WebSocket handshake must be a GET");
  // A body would be announced upstream and never sent (holdup does not read it): the upstream would wait for it.
  const cl = req.headers["content-length"];
  if ((cl !== undefined && cl !== "0") || req.headers["transfer-encoding"] !== undefined) {
    return refuse(400, "a WebSocket handshake carries no body (Content-Length or Transfer-Encoding)");
  }

  // The client is not read until the tunnel starts; what it sends early is kept, and its leaving noticed.
  const abort = new AbortController();
  const early: Uint8Array[] = [];
  let earlyBytes = head.byteLength;
  if (head.byteLength) early.push(head);
  const onEarly = (c: Uint8Array) => {
    early.push(c);
    earlyBytes += c.byteLength;
    if (earlyBytes > MAX_EARLY) client.pause();
  };
  const gone = () => abort.abort();
  client.on("data", onEarly);
  client.once("end", gone);
  client.once("close", gone);
  const detach = () => {
    client.off("data", onEarly);
    client.off("end", gone);
    client.off("close", gone);
    client.pause();
  };

  const headers = handshakeHeaders(req, rid);
  const end = await holdForUpstream(state, clock, abort.signal, async (u, snap) => {
    // An upstream with a base path (http://app:8003/base) gets it before the client's path, as requests do.
    const handshake = Buffer.from(`GET ${basePath(u)}${path} HTTP/1.1\r\n${headers}`, "latin1");
    const r = await openUpstream(u, handshake, snap.config.responseTimeout, abort.signal);
    if (r.kind !== "refused") return { r, u, snap };
    u.markDown(r.error);
    return RETRY;
  });
  detach();
  if (end.kind === "gone") {
    client.destroy();
    return log(499, null, "client disconnected while held");
  }
  if (end.kind === "refuse") return refuse(end.status, end.message, end.detail, end.headers.map(([k, v]) => `${k}: ${v}`));
  const { r, u, snap } = end.value;
  if (r.kind === "aborted") return log(499, u.url, "client disconnected");
  if (r.kind === "timeout") {
    return refuse(504, "the upstream sent no response in time", `upstream ${u.url} sent no handshake response within ${snap.config.responseTimeout}ms`);
  }
  if (r.kind === "failed") return refuse(502, "the upstream failed", `upstream ${u.url} failed: ${r.error}`);
  if (r.status !== 101) {
    relayRefusal(client, r.socket, r.head, r.rest, snap.config.responseTimeout);
    return log(r.status, u.url, "WebSocket handshake refused by the upstream");
  }
  if (client.destroyed) {
    r.socket.destroy();
    return log(499, u.url, "client disconnected");
  }
  log(101, u.url);
  client.write(withRequestId(r.head, rid));
  const t = new Tunnel(client, r.socket, u, path, clock.heldMs, state.websockets);
  state.websockets.add(t);
  t.start(r.rest, early);
}

/** The handshake's header block as the upstream gets it: the client's headers (less hop-by-hop) and X-Forwarded-*. */
function handshakeHeaders(req: http.IncomingMessage, rid: string): string {
  const raw = req.rawHeaders;
  const inc = {
    scheme: (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http",
    clientIP: req.socket.remoteAddress ?? "",
    header(name: string) {
      const v = req.headers[name];
      return v === undefined ? null : Array.isArray(v) ? v.join(", ") : v;
    },
    forEachHeader(fn: (name: string, value: string) => void) {
      for (let i = 0; i < raw.length; i += 2) fn(raw[i].toLowerCase(), raw[i + 1]);
    },
  } as unknown as Incoming;
  const lines: string[] = [];
  for (const [name, value] of upstreamHeaders(inc, rid)) lines.push(`${name}: ${value}`);
  lines.push(`connection: Upgrade`, `upgrade: ${req.headers.upgrade}`, "", "");
  return lines.join("\r\n");
}

/** The upstream's 101 head with holdup's X-Request-Id added (its own, if any, dropped): the client sees the id the log has. */
function withRequestId(head: Uint8Array, rid: string): Uint8Array {
  const text = new TextDecoder("latin1").decode(head);
  const lines = text.slice(0, -4).split("\r\n").filter((l, i) => i === 0 || !/^x-request-id\s*:/i.test(l));
  lines.push(`x-request-id: ${rid}`, "", "");
  return Buffer.from(lines.join("\r\n"), "latin1");
}

/** Connects to `u`, sends the handshake, and reads the response head. */
function openUpstream(u: Upstream, handshake: Uint8Array, timeoutMs: number, signal: AbortSignal): Promise<Opened> {
  u.attempts++;
  u.inFlight++;
  return new Promise<Opened>((resolve) => {
    const opts = { host: u.hostname, port: u.port };
    const socket: Socket = u.url.startsWith("https:")
      ? tls.connect({ ...opts, servername: net.isIP(u.hostname) ? undefined : u.hostname, ALPNProtocols: ["http/1.1"] })
      : net.connect(opts);
    let connected = false;
    let buf = new Uint8Array(0);
    const done = (r: Opened) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onClose);
      socket.on("error", noop);
      u.inFlight--;
      if (r.kind !== "response") socket.destroy();
      else socket.pause();
      resolve(r);
    };
    const timer = setTimeout(() => done({ kind: "timeout" }), timeoutMs);
    const onAbort = () => done({ kind: "aborted" });
    signal.addEventListener("abort", onAbort);
    if (signal.aborted) return onAbort();
    const onError = (e: Error & { code?: string }) => {
      const msg = e.code && !e.message.includes(e.code) ? `${e.code}: ${e.message}` : e.message;
      // Refused (or no such host) before connecting: the upstream never saw it.
      if (!connected && (e.code === "ECONNREFUSED" || e.code === "ENOTFOUND" || e.code === "EAI_AGAIN")) {
        done({ kind: "refused", error: msg });
      } else done({ kind: connected ? "failed" : "refused", error: msg });
    };
    const onClose = () => done({ kind: "failed", error: "the upstream closed the connection before answering the handshake" });
    const onData = (c: Uint8Array) => {
      const next = new Uint8Array(buf.byteLength + c.byteLength);
      next.set(buf);
      next.set(c, buf.byteLength);
      buf = next;
      const end = headEnd(buf);
      if (end < 0) {
        if (buf.byteLength > MAX_HEAD) done({ kind: "failed", error: "response head too large" });
        return;
      }
      const head = buf.subarray(0, end);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(new TextDecoder("latin1").decode(head.subarray(0, 16)));
      if (!m) return done({ kind: "failed", error: "the upstream's answer to the handshake is not HTTP/1.x" });
      done({ kind: "response", socket, status: Number(m[1]), head, rest: buf.subarray(end) });
    };
    socket.on("error", onError);
    socket.on("close", onClose);
    socket.on(u.url.startsWith("https:") ? "secureConnect" : "connect", () => {
      connected = true;
      socket.on("data", onData);
      socket.write(handshake);
    });
  });
}

/** Offset just past the "\r\n\r\n" ending a response head, or -1. */
function headEnd(b: Uint8Array): number {
  for (let i = 3; i < b.byteLength; i++) {
    if (b[i] === 10 && b[i - 1] === 13 && b[i - 2] === 10 && b[i - 3] === 13) return i + 1;
  }
  return -1;
}

/**
 * The upstream refused the handshake (403, 404, 426, …): its response goes to
 * the client as it is — status, headers, body — with Connection: close, and
 * both connections are closed once the body has passed.
 */
function relayRefusal(client: Socket, upstream: Socket, head: Uint8Array, rest: Uint8Array, timeoutMs: number): void {
  const text = new TextDecoder("latin1").decode(head);
  const lines = text.split("\r\n").slice(0, -2);
  let length: number | null = null, chunked = false;
  const out = [lines[0]];
  for (const line of lines.slice(1)) {
    const i = line.indexOf(":");
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    if (name === "connection" || name === "keep-alive" || name === "upgrade") continue;
    if (name === "content-length") length = Number(value);
    if (name === "transfer-encoding" && /chunked/i.test(value)) chunked = true;
    out.push(line);
  }
  out.push("connection: close", "", "");
  const status = Number(lines[0].split(" ")[1]);
  const bodyless = status === 204 || status === 304 || (status >= 100 && status < 200);
  client.write(Buffer.from(out.join("\r\n"), "latin1"));
  const finish = () => {
    clearTimeout(timer);
    upstream.destroy();
    client.resume();
    client.end();
    const linger = setTimeout(() => client.destroy(), 2000);
    (linger as { unref?: () => void }).unref?.();
    client.once("close", () => clearTimeout(linger));
  };
  const timer = setTimeout(finish, timeoutMs);
  if (bodyless || length === 0) return finish();
  let left = length ?? Infinity;
  const chunks = chunked ? new ChunkedEnd() : null;
  // Exactly the refusal: what the upstream sends after its end (a second response) never reaches the client.
  const onData = (c: Uint8Array) => {
    if (c.byteLength > left) c = c.subarray(0, left);
    left -= c.byteLength;
    const end = chunks ? chunks.feed(c) : -1;
    client.write(end >= 0 ? c.subarray(0, end) : c);
    if (left <= 0 || end >= 0) {
      upstream.off("data", onData);
      finish();
    }
  };
  upstream.on("data", onData);
  upstream.once("end", finish);
  upstream.once("close", finish);
  upstream.resume();
  if (rest.byteLength) onData(rest);
}

/** Finds the end of a chunked body: "0\r\n" … "\r\n\r\n" (trailers included). */
class ChunkedEnd {
  private state: "size" | "ext" | "data" | "dataEnd" | "trailer" = "size";
  private size = 0;
  private left = 0;
  private lineLen = 0;

  /** Once the whole body has passed: how many bytes of `c` belong to it; -1 before. */
  feed(c: Uint8Array): number {
    for (let i = 0; i < c.byteLength; i++) {
      const b = c[i];
      switch (this.state) {
        case "size": {
          const h = b >= 48 && b <= 57 ? b - 48 : b >= 97 && b <= 102 ? b - 87 : b >= 65 && b <= 70 ? b - 55 : -1;
          if (h >= 0) this.size = this.size * 16 + h;
          else if (b === 10) this.endSize();
          else this.state = "ext";
          break;
        }
        case "ext":
          if (b === 10) this.endSize();
          break;
        case "data": {
          const take = Math.min(this.left, c.byteLength - i);
          this.left -= take;
          i += take - 1;
          if (this.left === 0) this.state = "dataEnd";
          break;
        }
        case "dataEnd":
          if (b === 10) this.state = "size";
          break;
        case "trailer":
          if (b === 10) {
            if (this.lineLen === 0) return i + 1;
            this.lineLen = 0;
          } else if (b !== 13) this.lineLen++;
          break;
      }
    }
    return -1;
  }

  private endSize(): void {
    if (this.size === 0) {
      this.state = "trailer";
      this.lineLen = 0;
    } else {
      this.left = this.size;
      this.size = 0;
      this.state = "data";
    }
  }
}

/** holdup's own answer on an upgrade socket, then close. */
export function answer(socket: Socket, status: number, message: string, extra: string[] = []): void {
  if (socket.destroyed) return;
  const body = `holdup: ${message}\n`;
  const reason = REASONS[status] ?? "Error";
  // Read (and discard) until the client closes too, so the connection is gone, not half-open; cut it if it lingers.
  socket.resume();
  const linger = setTimeout(() => socket.destroy(), 2000);
  (linger as { unref?: () => void }).unref?.();
  socket.once("close", () => clearTimeout(linger));
  socket.end(
    [`HTTP/1.1 ${status} ${reason}`, "content-type: text/plain; charset=utf-8", `content-length: ${Buffer.byteLength(body)}`, "connection: close", ...extra, "", body].join("\r\n"),
  );
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  499: "Client Closed Request",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};
