/**
 * The listener: one node:http server (node:http2 with allowHTTP1 under TLS) on
 * Deno and on Bun alike. It counts and caps connections, enforces
 * headerTimeout, bodyTimeout and keepAliveTimeout, picks the certificate per
 * handshake (SNI), and hands each request to the handler as an Incoming
 * (incoming.ts), writing its Reply back (reply.ts).
 * @see docs/design/listener.md (why node:http and not Deno.serve/Bun.serve, measured)
 */
import http from "node:http";
import http2 from "node:http2";
import type { Server as NetServer, Socket } from "node:net";
import tls from "node:tls";
import type { Certificates } from "./tls.ts";
import { type Conn, connectionCap, type ConnKind, ConnTable, softFdLimit, upgradedOf } from "./conns.ts";
import { tlsFrontDoor } from "./front-door.ts";
import { badFraming } from "./framing.ts";
import { h2Settings, RESET_LIMIT, RESET_WINDOW_MS, resetGuard } from "./h2.ts";
import { BAD_TARGET, badHost, NodeIncoming } from "./incoming.ts";
import { dequeued, queued } from "./pipeline.ts";
import { plain, refuseConnect, writeReply } from "./reply.ts";
import { originForm } from "./target.ts";
import { stopListening } from "./stop-listening.ts";
import type { IncomingHandler, Reply } from "./types.ts";
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
  /** Share the port with the other `--workers` (SO_REUSEPORT; on Bun see Runtime.workerEnv) or a self-upgrade's new holdup. */
  reusePort?: boolean;
  /** How this runtime binds with SO_REUSEPORT (Runtime.bindShared); used when `reusePort`. */
  bindShared?: <T>(bind: () => T) => T;
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
  /**
   * Stops accepting, closes idle connections; resolves when in-flight requests
   * finished. `keepIdle` ms (a self-upgrade hands the port over): a keep-alive
   * connection is closed after its next answer (which says `Connection: close`)
   * or once idle that long, not at once: a client sending its next request
   * right now would see the connection close under it. With `keepAccepting`,
   * new connections are still accepted (and closed after one answer) until
   * stopAccepting(); the promise resolves after that.
   */
  shutdown(o?: { keepIdle?: number; keepAccepting?: boolean }): Promise<void>;
  /**
   * Closes the listening socket only: open connections go on as before (a
   * self-upgrade, until the new holdup is bound; shutdown() follows).
   */
  stopAccepting(): void;
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

/** What listen()'s handlers share: the options, the limits in force, and what is open now. */
interface Wiring {
  readonly o: ListenOptions;
  readonly scheme: "http" | "https";
  limits: ListenerLimits;
  /** maxConnections, lowered to what the file descriptor limit allows (connectionCap). */
  cap: number;
  /** Every connection, counted and capped; HTTP/1.1 ones (also upgraded) in conns, HTTP/2 sessions in sessions. */
  readonly table: ConnTable;
  readonly conns: Set<TrackedSocket>;
  readonly sessions: Set<http2.ServerHttp2Session>;
  requests: number;
  /** After shutdown(): every connection closes once its request is answered. */
  closing: boolean;
  /** shutdown({ keepIdle }): close a keep-alive connection only after telling its client. */
  gentle: boolean;
  /** HTTPS: the listener times HTTP/1.1 heads and keep-alive itself (node:http2 does not; docs/design/listener.md). */
  readonly ownTimers: boolean;
  readonly wholeBodyMax: number;
}

export function listen(o: ListenOptions): Promise<Listener> {
  const fdLimit = softFdLimit();
  const capOf = (l: ListenerLimits) => connectionCap(l.maxConnections, fdLimit);
  const w: Wiring = {
    o,
    scheme: o.tls ? "https" : "http",
    limits: o.limits,
    cap: capOf(o.limits),
    table: new ConnTable((refused) => o.warn("connection limit reached: refusing new connections", { limit: w.cap, refused, fdLimit, open: w.table.byKind() })),
    conns: new Set(),
    sessions: new Set(),
    requests: 0,
    closing: false,
    gentle: false,
    ownTimers: !!o.tls,
    wholeBodyMax: o.wholeBodyMax ?? 0,
  };
  const { limits } = w;
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
  if (o.tls) {
    const h2 = http2.createSecureServer({ ...tlsOptions(), allowHTTP1: true, settings: h2Settings } as http2.SecureServerOptions);
    server = h2 as unknown as http.Server;
    h2.on("session", (session: http2.ServerHttp2Session) => trackSession(w, session));
    server.headersTimeout = limits.headerTimeout;
    server.keepAliveTimeout = limits.keepAliveTimeout;
    // A failed handshake (a name without a certificate, a plain-HTTP client, a timeout): close it.
    server.on("tlsClientError", (_e: Error, s: Socket) => s?.destroy());
  } else server = http.createServer(httpOptions);
  server.timeout = 0;
  // Over TLS, the socket a request sees is the TLS socket: count and track that one.
  server.on(o.tls ? "secureConnection" : "connection", (socket: TrackedSocket) => trackConnection(w, socket));
  server.on("connect", refuseConnect);
  server.on("upgrade", (req: http.IncomingMessage, socket: TrackedSocket, head: Uint8Array) => onUpgrade(w, req, socket, head));
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => onRequest(w, req, res));

  // HTTPS: a front door answers plain HTTP on the port 400 (see front-door.ts) and hands TLS on to `server`.
  const acceptor: NetServer = o.tls ? tlsFrontDoor(server, () => w.limits.headerTimeout) : server;
  return new Promise((resolve, reject) => {
    acceptor.once("error", reject);
    const where = o.fd !== undefined ? { fd: o.fd } : { port: o.port, host: o.hostname, exclusive: !o.reusePort, reusePort: o.reusePort };
    const bind = () => acceptor.listen(where, () => {
      acceptor.off("error", reject);
      acceptor.on("error", (e) => o.warn("listener error", { error: String((e as Error).message ?? e) }));
      const addr = acceptor.address();
      const port = addr && typeof addr === "object" ? addr.port : o.port;
      let rearm: ReturnType<typeof setInterval> | null = null;
      let closed: Promise<void> | null = null;
      /** Closes the listening socket only; `closed` resolves once every connection is closed too. */
      const stopAccepting = () => {
        if (closed) return;
        if (rearm) clearInterval(rearm);
        stopListening(acceptor);
        closed = new Promise<void>((done) => {
          const check = () => w.conns.size + w.sessions.size === 0 ? done() : void setTimeout(check, 50);
          check();
        });
      };
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
        scheme: w.scheme,
        setCertificates(next) {
          certs = next;
          // For handshakes without SNI where the runtime does not ask SNICallback (Bun).
          const t = server as unknown as tls.Server;
          if (next.fallback && typeof t.setSecureContext === "function") t.setSecureContext(next.fallback.pem);
        },
        get connections() {
          return w.table.size;
        },
        stats: () => ({ open: w.table.size, limit: w.cap, byKind: w.table.byKind(), evicted: w.table.evicted, refused: w.table.refused }),
        get requests() {
          return w.requests;
        },
        update(next) {
          w.limits = next;
          w.cap = capOf(next);
          server.headersTimeout = next.headerTimeout;
          server.keepAliveTimeout = next.keepAliveTimeout;
        },
        stopAccepting,
        shutdown(opts) {
          w.closing = true;
          w.gentle = opts?.keepIdle !== undefined;
          if (w.gentle && !opts?.keepAccepting) stopAccepting();
          else if (!w.gentle) {
            if (rearm) clearInterval(rearm);
            // server.close(): stops accepting, closes idle connections; 'close' comes once every connection is closed.
            closed ??= new Promise<void>((done) => acceptor.close(() => done()));
          }
          return new Promise<void>((done) => {
            for (const session of w.sessions) session.close();
            const whenClosed = () => closed ? void closed.then(done) : void setTimeout(whenClosed, 50);
            whenClosed();
            if (acceptor !== server && !w.gentle) server.close(noop); // not listening itself: closes what it has open
            const sweep = (idleMs: number) => {
              const now = performance.now();
              for (const s of w.conns) if (!s[BUSY] && now - (s[SINCE] ?? 0) >= idleMs) s.destroy();
              return w.conns.size;
            };
            if (!opts?.keepIdle) return void sweep(0);
            const keep = opts.keepIdle;
            const timer = setInterval(() => sweep(keep) || clearInterval(timer), Math.max(50, keep / 4));
          });
        },
      });
    });
    if (o.reusePort && o.bindShared) o.bindShared(bind);
    else bind();
  });
}

const disarm = (s: TrackedSocket) => {
  if (s[IDLE]) clearTimeout(s[IDLE]);
  s[IDLE] = null;
};
const arm = (s: TrackedSocket, ms: number) => {
  disarm(s);
  s[IDLE] = setTimeout(() => s.destroy(), ms);
};

/** An HTTP/1.1 connection (HTTP/2's is its session, see trackSession): counted and capped, timed when ownTimers. */
function trackConnection(w: Wiring, socket: TrackedSocket): void {
  socket[BUSY] = 0;
  if ((socket as unknown as tls.TLSSocket).alpnProtocol === "h2") return void socket.on("error", noop);
  socket[SINCE] = performance.now();
  const conn: Conn = {
    kind: () => (upgradedOf(socket) ? "websocket" : "http1"),
    // An upgraded socket is busy until its tunnel says otherwise (a held or opening handshake is busy).
    idleSince: () => (socket[BUSY] ? upgradedOf(socket)?.idleSince() ?? null : socket[SINCE]!),
    evict: () => (upgradedOf(socket) ? upgradedOf(socket)!.evict() : socket.destroy()),
  };
  if (!w.table.admit(conn, w.cap)) return void socket.destroy();
  w.conns.add(socket);
  socket.on("close", () => {
    w.conns.delete(socket);
    w.table.delete(conn);
  });
  if (w.ownTimers) {
    arm(socket, w.limits.headerTimeout);
    socket.on("close", () => disarm(socket));
  }
  socket.on("error", noop);
}

/**
 * An HTTP/2 session: counted and capped like a connection (idle while it has
 * no stream: closed with GOAWAY to make room), closed with GOAWAY after
 * keepAliveTimeout without a stream, and by shutdown() once its streams are done.
 */
function trackSession(w: Wiring, session: http2.ServerHttp2Session): void {
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
  if (!w.table.admit(conn, w.cap)) return void session.destroy();
  w.sessions.add(session);
  let idle: ReturnType<typeof setTimeout> | null = null;
  const arm = (ms: number) => {
    if (idle) clearTimeout(idle);
    idle = setTimeout(() => session.close(), ms);
  };
  arm(w.limits.headerTimeout);
  const guard = resetGuard(session, () => {
    w.o.warn("HTTP/2 client reset too many streams: connection closed", { resets: RESET_LIMIT, windowMs: RESET_WINDOW_MS, client: session.socket?.remoteAddress });
  });
  session.on("stream", (stream: http2.ServerHttp2Stream) => {
    guard(stream);
    streams++;
    if (idle) clearTimeout(idle);
    idle = null;
    stream.once("close", () => {
      since = performance.now();
      if (--streams === 0 && !session.closed) arm(w.limits.keepAliveTimeout);
    });
  });
  session.on("error", noop);
  session.once("close", () => {
    if (idle) clearTimeout(idle);
    w.sessions.delete(session);
    w.table.delete(conn);
  });
  if (w.closing) session.close();
}

/** A protocol upgrade (WebSocket): the same target and Host checks as a request, then the socket is o.upgrade's. */
function onUpgrade(w: Wiring, req: http.IncomingMessage, socket: TrackedSocket, head: Uint8Array): void {
  socket.on("error", noop);
  // An upgraded connection is never idle: not closed to make room at the cap, nor by shutdown() (its owner closes it).
  socket[BUSY] = (socket[BUSY] ?? 0) + 1;
  disarm(socket);
  const bad = originForm(req.url ?? "") === null ? BAD_TARGET : badHost(req);
  if (bad) return void socket.end(plain(400, "Bad Request", String(bad.body)));
  const closing = w.closing && !w.gentle; // a self-upgrade's old holdup still accepting: tunnels until it closes them
  if (!w.o.upgrade || closing) {
    return void socket.end(plain(closing ? 503 : 501, closing ? "Service Unavailable" : "Not Implemented", closing ? "holdup: shutting down\n" : "holdup: protocol upgrades are not supported here\n"));
  }
  w.o.upgrade(req, socket, head);
}

/** A request: checked, queued behind the one before it on its HTTP/1.1 connection, handed to o.handler, answered. */
function onRequest(w: Wiring, req: http.IncomingMessage, res: http.ServerResponse): void {
  const { o } = w;
  const h2 = req.httpVersionMajor === 2;
  // Under HTTP/2, req.socket stands for the stream: the session is tracked instead.
  const socket = (h2 ? {} : req.socket) as TrackedSocket;
  socket[BUSY] = (socket[BUSY] ?? 0) + 1;
  if (!h2) disarm(socket);
  w.requests++;
  req.on("error", noop);
  const target = originForm(req.url ?? "");
  const framing = h2 ? null : badFraming(req);
  const bad = framing ?? (target === null ? BAD_TARGET : badHost(req));
  const incoming = new NodeIncoming(req, target ?? "/", w.limits.bodyTimeout, w.scheme);
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
    w.requests--;
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
    // Gently (a self-upgrade): not here. An answer that said Connection: close is followed by the server's
    // own close once it is written (destroy() here cut it off on Deno: the client saw a reset); one that
    // said keep-alive (it began before shutdown) gets the next request, answered with Connection: close.
    if (w.closing && !w.gentle && !socket[BUSY]) socket.destroy();
    else if (w.ownTimers && !socket[BUSY] && !socket.destroyed) arm(socket, w.limits.keepAliveTimeout);
  });
  if (w.closing && !h2) res.shouldKeepAlive = false;
  const max = w.wholeBodyMax;
  const start = () => {
    started = true;
    if (framing) {
      // Nothing after this request on the connection can be trusted: close it, start no queued request.
      res.once("finish", () => {
        socket.end(); // end, not destroy: a reset could cut the refusal before the client reads it
        setTimeout(() => socket.destroy(), 1000);
      });
    }
    if (bad) return void writeReply(res, bad, !h2, max);
    let reply;
    try {
      reply = o.handler(incoming);
    } catch (e) {
      return void writeReply(res, internalError(o, e), false, max);
    }
    if (reply instanceof Promise) {
      reply.then((r) => {
        replied = true;
        writeReply(res, r, false, max);
      }, (e) => writeReply(res, internalError(o, e), false, max));
    } else {
      replied = true;
      writeReply(res, reply, false, max);
    }
  };
  if (!h2 && socket[BUSY]! > 1) queued(socket, (socket[QUEUE] ??= []).push(start));
  else start();
}

function internalError(o: ListenOptions, e: unknown): Reply {
  o.warn("internal error while answering a request", { error: String((e as Error)?.stack ?? e) });
  return { status: 500, headers: [["content-type", "text/plain; charset=utf-8"]], body: "holdup: internal error\n" };
}
