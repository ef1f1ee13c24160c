/**
 * The listener: one node:http server (node:http2 with allowHTTP1 under TLS) on
 * Deno and on Bun alike, turning connections into Incoming requests and
 * Replies back into bytes. It enforces headerTimeout, bodyTimeout,
 * keepAliveTimeout and the connection cap on every connection, and picks the
 * certificate per handshake (SNI). Why node:http and not Deno.serve/Bun.serve,
 * measured: docs/design/listener.md.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import type { Server as NetServer, Socket } from "node:net";
import tls from "node:tls";
import type { Certificates } from "./tls.ts";
import { type Conn, type ConnKind, ConnTable, upgradedOf } from "./conns.ts";
import { tlsFrontDoor } from "./front-door.ts";
import { drained } from "../util/drain.ts";
import { badFraming } from "./framing.ts";
import { h2Settings, RESET_LIMIT, RESET_WINDOW_MS, resetGuard } from "./h2.ts";
import { dequeued, queued } from "./pipeline.ts";
import { originForm, validHost } from "./target.ts";
import type { Incoming, IncomingHandler, Reply } from "./types.ts";

export interface ListenerLimits {
  headerTimeout: number;
  bodyTimeout: number;
  keepAliveTimeout: number;
  maxConnections: number;
}

export interface ListenOptions {
  hostname: string;
  port: number;
  handler: IncomingHandler;
  limits: ListenerLimits;
  /**
   * Deno 2.9's node:http stops accepting for good after one accept() fails
   * with EMFILE (its poller drops the error without re-registering). Calling
   * listen() again on the listening handle re-arms it: done on a timer there.
   */
  rearmAccept?: boolean;
  /** HTTPS: answer plain HTTP on the port 400 through a front door (see front-door.ts; Runtime.tlsHandOff). */
  frontDoor?: boolean;
  /** See Runtime.wholeBodyMax. */
  wholeBodyMax?: number;
  /**
   * Protocol upgrades (WebSocket): the request passed the same target and Host
   * checks as any request; the socket is the handler's from here on. Without
   * one, upgrades are answered 501.
   */
  upgrade?: (req: http.IncomingMessage, socket: Socket, head: Uint8Array) => void;
  /** HTTPS (and HTTP/2) with these certificates (see above). */
  tls?: { certs: Certificates };
  /** Share the port with the other `--workers` (SO_REUSEPORT; on Bun see Runtime.workerEnv). */
  reusePort?: boolean;
  /** Serve this already-listening socket (socket activation, serve/activation.ts) instead of binding. */
  fd?: number;
  /** Events worth a log line (connection refused at the cap, …). */
  warn(message: string, fields?: Record<string, unknown>): void;
}

export interface Listener {
  readonly hostname: string;
  readonly port: number;
  readonly scheme: "http" | "https";
  /** HTTPS: the certificates new handshakes get from now on. */
  setCertificates(certs: Certificates): void;
  /** Applies new limits (a reload): timeouts for new waits, the cap at once. */
  update(limits: ListenerLimits): void;
  /** Connections open now (HTTP/1.1, HTTP/2 sessions, WebSockets). */
  readonly connections: number;
  /** For /status: open connections by kind, the cap, and how many were evicted or refused at it. */
  stats(): { open: number; limit: number; byKind: Record<ConnKind, number>; evicted: number; refused: number };
  /** HTTP requests in progress now (upgraded connections are not counted). */
  readonly requests: number;
  /** Stops accepting, closes idle connections; resolves when in-flight requests finished. */
  shutdown(): Promise<void>;
}

const BUSY = Symbol("holdup.busy");
const IDLE = Symbol("holdup.idle");
/**
 * Requests pipelined on one HTTP/1.1 connection wait here for the one before
 * them to be answered: node:http emits them all at once, and forwarding them
 * together could reorder two POSTs upstream (RFC 9112 9.3.2 allows parallel
 * work only for safe methods). nginx also works through a pipeline in order.
 */
const QUEUE = Symbol("holdup.pipeline");
/** performance.now() when the connection last had no request in progress. */
const SINCE = Symbol("holdup.since");
type TrackedSocket = Socket & { [BUSY]?: number; [IDLE]?: ReturnType<typeof setTimeout> | null; [QUEUE]?: (() => void)[]; [SINCE]?: number };
const noop = () => {};

/** File descriptors kept back for upstream connections, the listener itself and files. */
const FD_RESERVE = 64;

export function listen(o: ListenOptions): Promise<Listener> {
  let limits = o.limits;
  if (o.wholeBodyMax !== undefined) wholeBodyMax = o.wholeBodyMax;
  const fdLimit = softFdLimit();
  const capOf = (l: ListenerLimits) =>
    fdLimit ? Math.min(l.maxConnections, Math.max(16, Math.floor((fdLimit - FD_RESERVE) / 2))) : l.maxConnections;
  let cap = capOf(limits);
  /** HTTP/1.1 connections (also upgraded ones); with HTTP/2 sessions, all count in `table`. */
  const conns = new Set<TrackedSocket>();
  const table = new ConnTable((refused) => o.warn("connection limit reached: refusing new connections", { limit: cap, refused, fdLimit, open: table.byKind() }));
  const admit = (c: Conn) => table.admit(c, cap);
  let requests = 0;
  /** After shutdown(): every connection closes once its request is answered. */
  let closing = false;

  const scheme = o.tls ? "https" : "http";
  const httpOptions = {
    headersTimeout: limits.headerTimeout,
    requestTimeout: 0, // a held request's body may wait unread: bodyTimeout covers reads instead
    keepAliveTimeout: limits.keepAliveTimeout,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headerTimeout / 4))),
    requireHostHeader: false, // holdup answers a missing Host itself, with a body that says so (badHost)
  } as http.ServerOptions;
  let certs = o.tls?.certs ?? null;
  const tlsOptions = (): tls.TlsOptions => ({
    ...(certs?.fallback ? certs.fallback.pem : {}),
    handshakeTimeout: limits.headerTimeout,
    SNICallback(name: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) {
      const c = certs?.select(name);
      if (c) cb(null, c.context);
      else cb(new Error(`no certificate for ${JSON.stringify(name)}`));
    },
  });
  let server: http.Server;
  /** HTTP/2 sessions open now, closed gracefully (GOAWAY) by shutdown(). */
  const sessions = new Set<http2.ServerHttp2Session>();
  if (o.tls) {
    const h2 = http2.createSecureServer({ ...tlsOptions(), allowHTTP1: true, settings: h2Settings } as http2.SecureServerOptions);
    server = h2 as unknown as http.Server;
    h2.on("session", (session: http2.ServerHttp2Session) => trackSession(session));
  } else server = http.createServer(httpOptions);
  server.timeout = 0;
  /**
   * HTTPS: neither runtime applies headersTimeout or keepAliveTimeout to the
   * HTTP/1.1 connections of an http2 server (measured), so the listener times
   * them itself: headerTimeout for the first request head, keepAliveTimeout
   * from the end of each response to the next request head (which bounds a
   * later head too).
   */
  const ownTimers = !!o.tls;
  const disarm = (s: TrackedSocket) => {
    if (s[IDLE]) clearTimeout(s[IDLE]);
    s[IDLE] = null;
  };
  const arm = (s: TrackedSocket, ms: number) => {
    disarm(s);
    s[IDLE] = setTimeout(() => s.destroy(), ms);
  };
  if (o.tls) {
    server.headersTimeout = limits.headerTimeout;
    server.keepAliveTimeout = limits.keepAliveTimeout;
    // A failed handshake (a name without a certificate, a plain-HTTP client, a timeout): close it.
    server.on("tlsClientError", (_e: Error, s: Socket) => s?.destroy());
  }

  /**
   * An HTTP/2 session: counted and capped like a connection (idle while it has
   * no stream: closed with GOAWAY to make room), closed with GOAWAY after
   * keepAliveTimeout without a stream, and by shutdown() once its streams are done.
   */
  function trackSession(session: http2.ServerHttp2Session) {
    let streams = 0;
    let since = performance.now();
    const conn: Conn = {
      kind: () => "h2",
      idleSince: () => (streams === 0 ? since : null),
      evict() {
        session.close();
        setTimeout(() => session.destroy(), 1000);
      },
    };
    if (!admit(conn)) return void session.destroy();
    sessions.add(session);
    let idle: ReturnType<typeof setTimeout> | null = null;
    const arm = (ms: number) => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => session.close(), ms);
    };
    arm(limits.headerTimeout);
    const guard = resetGuard(session, () => {
      o.warn("HTTP/2 client reset too many streams: connection closed", { resets: RESET_LIMIT, windowMs: RESET_WINDOW_MS, client: session.socket?.remoteAddress });
    });
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      guard(stream);
      streams++;
      if (idle) clearTimeout(idle);
      idle = null;
      stream.once("close", () => {
        since = performance.now();
        if (--streams === 0 && !session.closed) arm(limits.keepAliveTimeout);
      });
    });
    session.on("error", noop);
    session.once("close", () => {
      if (idle) clearTimeout(idle);
      sessions.delete(session);
      table.delete(conn);
    });
    if (closing) session.close();
  }

  // Over TLS, the socket a request sees is the TLS socket: count and track that one.
  server.on(o.tls ? "secureConnection" : "connection", (socket: TrackedSocket) => {
    socket[BUSY] = 0;
    // HTTP/2: the session is the connection, counted there (see trackSession).
    if ((socket as unknown as tls.TLSSocket).alpnProtocol === "h2") return void socket.on("error", noop);
    socket[SINCE] = performance.now();
    const conn: Conn = {
      kind: () => (upgradedOf(socket) ? "websocket" : "http1"),
      // An upgraded socket is busy until its tunnel says otherwise (a held or opening handshake is busy).
      idleSince: () => (socket[BUSY] ? upgradedOf(socket)?.idleSince() ?? null : socket[SINCE]!),
      evict: () => (upgradedOf(socket) ? upgradedOf(socket)!.evict() : socket.destroy()),
    };
    if (!admit(conn)) return void socket.destroy();
    conns.add(socket);
    socket.on("close", () => {
      conns.delete(socket);
      table.delete(conn);
    });
    if (ownTimers) {
      arm(socket, limits.headerTimeout);
      socket.on("close", () => disarm(socket));
    }
    socket.on("error", noop);
  });

  // CONNECT would turn holdup into a forward proxy: refuse it.
  server.on("connect", (_req, socket: Socket) => {
    if (typeof (socket as unknown as http.ServerResponse).writeHead === "function") {
      // HTTP/2's CONNECT arrives as a request and a response.
      const res = socket as unknown as http.ServerResponse;
      res.writeHead(405, ["content-type", "text/plain; charset=utf-8", "allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"]);
      return void res.end("holdup: CONNECT is not supported\n");
    }
    socket.on("error", noop);
    socket.end(plain(405, "Method Not Allowed", "holdup: CONNECT is not supported\n", ["allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"]));
  });
  server.on("upgrade", (req: http.IncomingMessage, socket: TrackedSocket, head: Uint8Array) => {
    socket.on("error", noop);
    // An upgraded connection is never idle: not closed to make room at the cap, nor by shutdown() (its owner closes it).
    socket[BUSY] = (socket[BUSY] ?? 0) + 1;
    disarm(socket);
    const bad = originForm(req.url ?? "") === null ? BAD_TARGET : badHost(req);
    if (bad) return void socket.end(plain(400, "Bad Request", String(bad.body)));
    if (!o.upgrade || closing) {
      return void socket.end(plain(closing ? 503 : 501, closing ? "Service Unavailable" : "Not Implemented", closing ? "holdup: shutting down\n" : "holdup: protocol upgrades are not supported here\n"));
    }
    o.upgrade(req, socket, head);
  });

  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    const h2 = req.httpVersionMajor === 2;
    // Under HTTP/2, req.socket stands for the stream: the session is tracked instead.
    const socket = (h2 ? {} : req.socket) as TrackedSocket;
    socket[BUSY] = (socket[BUSY] ?? 0) + 1;
    if (!h2) disarm(socket);
    requests++;
    req.on("error", noop);
    const target = originForm(req.url ?? "");
    const framing = h2 ? null : badFraming(req);
    const bad = framing ?? (target === null ? BAD_TARGET : badHost(req));
    const incoming = new NodeIncoming(req, target ?? "/", limits.bodyTimeout, scheme, h2);
    // HTTP/2: a stream the client reset ends with 'finish' and writableFinished on both runtimes
    // (Deno, Bun): its 'aborted' event says so instead.
    let aborted = false;
    if (h2) {
      req.once("aborted", () => {
        aborted = true;
        incoming.clientGone();
      });
    }
    let started = false, replied = false;
    res.on("close", () => {
      requests--;
      socket[BUSY] = (socket[BUSY] ?? 1) - 1;
      socket[SINCE] = performance.now();
      // HTTP/2: a stream closed before its reply was ready (its session destroyed, e.g. past the reset bound) is gone too.
      if (h2 ? aborted || !replied : !res.writableFinished) incoming.clientGone();
      if (h2) return;
      const queue = socket[QUEUE];
      if (queue?.length) {
        if (!started) {
          const i = queue.indexOf(start);
          if (i >= 0) {
            queue.splice(i, 1);
            dequeued(socket, queue.length);
          }
        } else if (!socket.destroyed && !socket.writableEnded) {
          const next = queue.shift()!;
          dequeued(socket, queue.length);
          next();
        }
      }
      if (closing && !socket[BUSY]) socket.destroy();
      else if (ownTimers && !socket[BUSY] && !socket.destroyed) arm(socket, limits.keepAliveTimeout);
    });
    if (closing && !h2) res.shouldKeepAlive = false;
    const start = () => {
      started = true;
      if (framing) {
        // Nothing after this request on the connection can be trusted: close it, start no queued request.
        res.once("finish", () => {
          socket.end(); // end, not destroy: a reset could cut the refusal before the client reads it
          setTimeout(() => socket.destroy(), 1000);
        });
      }
      if (bad) return void writeReply(res, bad, !h2);
      let reply;
      try {
        reply = o.handler(incoming);
      } catch (e) {
        return void writeReply(res, internalError(o, e), false);
      }
      if (reply instanceof Promise) {
        reply.then((r) => {
          replied = true;
          writeReply(res, r, false);
        }, (e) => writeReply(res, internalError(o, e), false));
      } else {
        replied = true;
        writeReply(res, reply, false);
      }
    };
    if (!h2 && socket[BUSY]! > 1) queued(socket, (socket[QUEUE] ??= []).push(start));
    else start();
  });

  // HTTPS: a front door answers plain HTTP on the port 400 (see front-door.ts) and hands TLS on to `server`.
  const acceptor: NetServer = o.tls && o.frontDoor ? tlsFrontDoor(server, () => limits.headerTimeout) : server;
  return new Promise((resolve, reject) => {
    acceptor.once("error", reject);
    const where = o.fd !== undefined ? { fd: o.fd } : { port: o.port, host: o.hostname, exclusive: !o.reusePort, reusePort: o.reusePort };
    acceptor.listen(where, () => {
      acceptor.off("error", reject);
      acceptor.on("error", (e) => o.warn("listener error", { error: String((e as Error).message ?? e) }));
      const addr = acceptor.address();
      const port = addr && typeof addr === "object" ? addr.port : o.port;
      let rearm: ReturnType<typeof setInterval> | null = null;
      if (o.rearmAccept) {
        // deno-lint-ignore no-explicit-any
        const handle = (acceptor as any)._handle;
        if (typeof handle?.listen === "function") {
          rearm = setInterval(() => handle.listen(511), 250);
          (rearm as { unref?: () => void }).unref?.();
        }
      }
      resolve({
        hostname: o.fd !== undefined && addr && typeof addr === "object" ? addr.address : o.hostname,
        port,
        scheme,
        setCertificates(next) {
          certs = next;
          // For handshakes without SNI where the runtime does not ask SNICallback (Bun).
          const t = server as unknown as tls.Server;
          if (next.fallback && typeof t.setSecureContext === "function") t.setSecureContext(next.fallback.pem);
        },
        get connections() {
          return table.size;
        },
        stats: () => ({ open: table.size, limit: cap, byKind: table.byKind(), evicted: table.evicted, refused: table.refused }),
        get requests() {
          return requests;
        },
        update(next) {
          limits = next;
          cap = capOf(next);
          server.headersTimeout = next.headerTimeout;
          server.keepAliveTimeout = next.keepAliveTimeout;
        },
        shutdown() {
          if (rearm) clearInterval(rearm);
          closing = true;
          return new Promise<void>((done) => {
            for (const session of sessions) session.close();
            acceptor.close(() => done());
            if (acceptor !== server) server.close(noop); // not listening itself: closes what it has open
            for (const s of conns) if (!s[BUSY]) s.destroy();
          });
        },
      });
    });
  });
}

/** The connection cap's basis: the soft RLIMIT_NOFILE, read from /proc on Linux (null elsewhere). */
function softFdLimit(): number | null {
  try {
    const text = readFileSync("/proc/self/limits", "utf8");
    const m = /^Max open files\s+(\d+)/m.exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

const BAD_TARGET = own(400, "the request-target must be a path (origin-form), e.g. GET /index.html");

/** Requests refused before any handler sees them for their Host: invalid, repeated, or missing in HTTP/1.1. */
function badHost(req: http.IncomingMessage): Reply | null {
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 4 && raw[i].toLowerCase() === "host") hosts++;
  }
  if (hosts > 1) return own(400, "more than one Host header");
  const host = req.headers.host ?? (req.httpVersionMajor === 2 ? req.headers[":authority"] as string | undefined : undefined);
  if (host === undefined) {
    if (req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) return own(400, "HTTP/1.1 requests need a Host header");
  } else if (!validHost(host)) return own(400, "the Host header is not a valid host[:port]");
  return null;
}

function own(status: number, message: string): Reply {
  return { status, headers: [["content-type", "text/plain; charset=utf-8"], ["connection", "close"]], body: `holdup: ${message}\n` };
}

function internalError(o: ListenOptions, e: unknown): Reply {
  o.warn("internal error while answering a request", { error: String((e as Error)?.stack ?? e) });
  return { status: 500, headers: [["content-type", "text/plain; charset=utf-8"]], body: "holdup: internal error\n" };
}

function plain(status: number, text: string, body: string, extra: string[] = []): string {
  return [`HTTP/1.1 ${status} ${text}`, "content-type: text/plain; charset=utf-8", `content-length: ${body.length}`, "connection: close", ...extra, "", body].join("\r\n");
}

class NodeIncoming implements Incoming {
  readonly method: string;
  private abort: AbortController | null = null;
  private gone = false;
  private _body: ReadableStream<Uint8Array> | null | undefined;

  constructor(private req: http.IncomingMessage, readonly target: string, private bodyTimeout: number, readonly scheme: "http" | "https", readonly watched = false) {
    this.method = req.method ?? "GET";
  }

  get clientIP(): string {
    return this.req.socket.remoteAddress ?? "";
  }

  header(name: string): string | null {
    let v = this.req.headers[name];
    // HTTP/2 carries the host in :authority (a Host header, if sent, wins).
    if (v === undefined && name === "host" && this.req.httpVersionMajor === 2) v = this.req.headers[":authority"];
    if (v === undefined) return null;
    return Array.isArray(v) ? v.join(", ") : v;
  }

  forEachHeader(fn: (name: string, value: string) => void): void {
    const raw = this.req.rawHeaders;
    if (this.req.httpVersionMajor === 2) {
      // No pseudo-headers upstream: :authority becomes Host (unless there is one).
      const authority = this.req.headers[":authority"];
      if (this.req.headers.host === undefined && typeof authority === "string") fn("host", authority);
      for (let i = 0; i < raw.length; i += 2) if (raw[i][0] !== ":") fn(raw[i].toLowerCase(), raw[i + 1]);
      return;
    }
    for (let i = 0; i < raw.length; i += 2) fn(raw[i].toLowerCase(), raw[i + 1]);
  }

  get contentLength(): number | null {
    const v = this.req.headers["content-length"];
    return v === undefined ? null : Number(v);
  }

  private get hasBody(): boolean {
    const h = this.req.headers;
    return (h["content-length"] !== undefined && h["content-length"] !== "0") || h["transfer-encoding"] !== undefined;
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this._body === undefined) this._body = this.hasBody ? bodyStream(this.req, this.bodyTimeout) : null;
    return this._body;
  }

  get signal(): AbortSignal {
    if (!this.abort) {
      this.abort = new AbortController();
      if (this.gone) this.abort.abort();
    }
    return this.abort.signal;
  }

  clientGone(): void {
    this.gone = true;
    this.abort?.abort();
  }

  async readAll(max: number): Promise<Uint8Array | null> {
    if (!this.hasBody) return new Uint8Array(0);
    const declared = this.contentLength;
    if (declared !== null && declared > max) return null;
    const out = new Uint8Array(declared ?? Math.min(max, 64 * 1024));
    let size = 0;
    let buf = out;
    const reader = this.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (size + value.byteLength > max) {
        reader.cancel().catch(noop);
        return null;
      }
      if (size + value.byteLength > buf.byteLength) {
        const bigger = new Uint8Array(Math.min(max, Math.max(buf.byteLength * 2, size + value.byteLength)));
        bigger.set(buf.subarray(0, size));
        buf = bigger;
      }
      buf.set(value, size);
      size += value.byteLength;
    }
    return size === buf.byteLength ? buf : buf.subarray(0, size);
  }
}

/**
 * The request body as a web stream, read from node's stream only as fast as
 * it is consumed. While a read waits for the client, `timeoutMs` without a
 * byte closes the connection; while nothing reads (the request is held), no
 * timer runs.
 */
function bodyStream(req: http.IncomingMessage, timeoutMs: number): ReadableStream<Uint8Array> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let cancelled = false;
  const disarm = () => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  return new ReadableStream<Uint8Array>({
    start(c) {
      req.pause();
      req.on("data", (chunk: Uint8Array) => {
        disarm();
        if (cancelled) return; // discarded
        c.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((c.desiredSize ?? 0) <= 0) req.pause();
      });
      req.once("end", () => {
        disarm();
        if (!cancelled) c.close();
      });
      const fail = () => {
        disarm();
        if (cancelled) return;
        try {
          c.error(new Error("client disconnected while sending the body"));
        } catch { /* already closed */ }
      };
      req.once("aborted", fail);
      req.once("error", fail);
      req.once("close", () => {
        if (!req.complete) fail();
      });
    },
    pull() {
      req.resume();
      // The parser may have the whole body already (req.complete): then nothing waits on the client.
      if (!timer && timeoutMs > 0 && !req.complete) {
        timer = setTimeout(() => {
          timer = null;
          req.socket.destroy(); // the client stopped sending its body
        }, timeoutMs);
      }
    },
    cancel() {
      disarm();
      cancelled = true;
      req.resume(); // discard the rest
    },
  }, { highWaterMark: 1 });
}

/** Cuts a response: HTTP/1 at the socket (Bun's res.destroy() alone sends a pending head: a clean, empty answer). */
function cut(res: http.ServerResponse): void {
  if (res.req?.httpVersionMajor !== 2) res.socket?.destroy();
  res.destroy();
}

const H2_FORBIDDEN = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

/** Writes a reply; `close` ends the connection after it (a request refused before its body was read). */
/**
 * A response body of known length up to this is read whole and written once,
 * rather than pumped chunk by chunk (fewer awaits and writes per response).
 * Set per runtime from measurements: see Runtime.wholeBodyMax.
 */
let wholeBodyMax = 0;

function writeReply(res: http.ServerResponse, reply: Reply, close: boolean): void {
  if (res.destroyed) {
    if (reply.body instanceof ReadableStream) reply.body.cancel().catch(noop);
    reply.onDone?.(0, false);
    return;
  }
  const flat: string[] = [];
  const h2 = res.req?.httpVersionMajor === 2;
  for (const [name, value] of reply.headers) {
    if (name === "date") res.sendDate = false;
    // HTTP/2 forbids connection-specific headers (RFC 9113 8.2.2).
    if (h2 && H2_FORBIDDEN.has(name)) continue;
    flat.push(name, value);
  }
  if (close && !h2) res.shouldKeepAlive = false;
  res.writeHead(reply.status, flat);
  const body = reply.body;
  if (!(body instanceof ReadableStream)) {
    res.end(body ?? undefined);
    reply.onDone?.(body === null ? 0 : typeof body === "string" ? body.length : body.byteLength, true);
    return;
  }
  const length = reply.length ?? null;
  if (length !== null && length <= wholeBodyMax) return void whole(res, body, length, reply.onDone);
  void pump(res, body, length, reply.onDone);
}

async function whole(
  res: http.ServerResponse,
  body: ReadableStream<Uint8Array>,
  declared: number,
  onDone?: (bytes: number, complete: boolean) => void,
): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await new Response(body).arrayBuffer());
  } catch {
    cut(res);
    onDone?.(0, false);
    return;
  }
  if (bytes.byteLength !== declared) {
    cut(res); // shorter or longer than its Content-Length: cut, never a clean end
    onDone?.(bytes.byteLength, false);
    return;
  }
  res.end(bytes);
  onDone?.(declared, true);
}

async function pump(
  res: http.ServerResponse,
  body: ReadableStream<Uint8Array>,
  declared: number | null,
  onDone?: (bytes: number, complete: boolean) => void,
): Promise<void> {
  const reader = body.getReader();
  let bytes = 0;
  let complete = false;
  const onClose = () => reader.cancel().catch(noop);
  res.once("close", onClose);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      if (declared !== null && bytes > declared) throw new Error("the upstream sent more than its Content-Length");
      if (!res.write(value)) await drained(res);
      if (res.destroyed) throw new Error("client disconnected");
    }
    if (declared !== null && bytes !== declared) throw new Error("the upstream body ended before its Content-Length");
    res.end();
    complete = true;
  } catch {
    reader.cancel().catch(noop);
    cut(res); // so the client sees a truncated message, never a clean end
  } finally {
    res.off("close", onClose);
    onDone?.(bytes, complete);
  }
}
