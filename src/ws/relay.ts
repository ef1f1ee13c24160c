/**
 * A WebSocket through the edge entry: a message relay (a fetch handler gets
 * no raw socket to tunnel bytes over). The handshake is held as any is
 * (hold.ts); the upstream WebSocket opens first, then the client is accepted
 * with the subprotocol the upstream chose; messages and close codes pass both
 * ways. What a relay cannot do: docs/design/websockets.md.
 */
import { account, routeOr404 } from "../http/front.ts";
import { upstreamHeaders } from "../http/headers.ts";
import { requestId } from "../http/requestid.ts";
import type { Apps } from "../apps/apps.ts";
import type { Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { Runtime, WsHandlers, WsPeer } from "../runtime/types.ts";
import type { Incoming } from "../serve/types.ts";
import type { Upstream } from "../apps/upstream.ts";
import { basePath, type HoldClock, holdForUpstream, RETRY } from "./hold.ts";
import type { ClosedBy, WebSocketHost } from "../apps/websockets.ts";
import { WebSocketBase } from "./socket.ts";

export interface EdgeWsDeps {
  apps: Apps;
  log: Logger;
  metrics: Metrics;
  runtime: Runtime;
}

/** How long a closing handshake may take before holdup stops waiting for it. */
const CLOSE_GRACE_MS = 1000;
/** How long an accepted client may take to open before the relay gives up on it. */
const ACCEPT_MS = 10_000;

/** A WebSocket client that takes handshake headers: Deno's and Bun's both do. */
type ClientWebSocket = new (url: string, init: { headers: [string, string][]; protocols: string[] }) => WebSocket;

type Connected =
  | { kind: "open"; ws: WebSocket }
  | { kind: "refused"; error: string }
  | { kind: "failed"; error: string }
  | { kind: "timeout" }
  | { kind: "aborted" };

const text = (status: number, message: string, heldMs: number, extra: [string, string][] = []) =>
  new Response(`holdup: ${message}\n`, {
    status,
    headers: [["content-type", "text/plain; charset=utf-8"], ["x-holdup-held-ms", String(Math.round(heldMs))], ...extra],
  });

/** Answers one `Upgrade: websocket` request at the edge: an HTTP error, or the runtime's acceptance. */
export async function edgeWebSocket(d: EdgeWsDeps, req: Request, inc: Incoming, arg: unknown): Promise<Response | undefined> {
  const start = performance.now();
  const route = routeOr404(d.apps, inc.header("host"), inc.target);
  const rid = requestId(inc.header("x-request-id"));
  const clock: HoldClock = { start, heldMs: 0 };
  const path = route.app ? route.target : inc.target;
  const log = (status: number, upstream: string | null, reason?: string) =>
    account(d, { app: route.app?.name ?? "", method: inc.method, path, status, heldMs: clock.heldMs, start, requestId: rid })?.(null, upstream, reason);
  const refuse = (status: number, message: string, detail?: string, extra: [string, string][] = []) => {
    log(status, null, detail ?? message);
    return text(status, `${message}\nrequest id: ${rid}`, clock.heldMs, [["x-request-id", rid], ...extra]);
  };
  if (!route.app) return refuse(404, route.message);
  const state = route.app.state;
  if (inc.method !== "GET") return refuse(400, "a WebSocket handshake must be a GET");

  const headers = handshakeHeaders(inc, rid);
  const protocols = (inc.header("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim()).filter(Boolean);
  const signal = inc.signal;
  const end = await holdForUpstream(state, clock, signal, async (u, snap) => {
    // An upstream with a base path (http://app:8003/base) gets it before the client's path, as requests do.
    const r = await connect(d.runtime, u, wsOrigin(u) + basePath(u) + path, headers, protocols, snap.config.responseTimeout, signal);
    if (r.kind !== "refused") return { r, u, snap };
    u.markDown(r.error);
    return RETRY;
  });
  if (end.kind === "gone") return refuse(499, "client disconnected while held");
  if (end.kind === "refuse") return refuse(end.status, end.message, end.detail, end.headers);
  const { r, u, snap } = end.value;
  if (r.kind === "aborted") return refuse(499, "client disconnected");
  if (r.kind === "timeout") {
    return refuse(504, "the upstream sent no response in time", `upstream ${u.url} did not open a WebSocket within ${snap.config.responseTimeout}ms`);
  }
  if (r.kind === "failed") {
    // The client API does not say what the upstream answered (403, 404, …): 502, with the runtime's words in the log.
    return refuse(502, "the upstream did not accept the WebSocket", `upstream ${u.url} failed the WebSocket handshake: ${r.error}`);
  }
  const ws = r.ws;
  if (signal.aborted) {
    ws.close(1000, "client disconnected");
    return refuse(499, "client disconnected");
  }
  const relay = new Relay(ws, u, path, clock.heldMs, state.websockets);
  let res: Response | undefined;
  try {
    res = d.runtime.acceptWebSocket(req, arg, ws.protocol, relay.handlers);
  } catch (e) {
    closeWithin(ws, 1011, "holdup could not accept the client");
    // Deno: a client offering "a,b" (no space) cannot be accepted with "b" (Deno.upgradeWebSocket splits on ", ").
    return refuse(502, "the WebSocket could not be accepted", `accepting the client failed: ${(e as Error)?.message ?? e}`);
  }
  log(101, u.url);
  state.websockets.add(relay);
  return res;
}

/** ws:// or wss:// and host[:port] of an upstream's http:// or https:// URL. */
function wsOrigin(u: Upstream): string {
  const schemeEnd = u.url.indexOf("//") + 2;
  const pathAt = u.url.indexOf("/", schemeEnd);
  return "ws" + u.url.slice(4, pathAt < 0 ? undefined : pathAt);
}

/** The client's handshake headers as the upstream gets them, less those the WebSocket client sets itself. */
function handshakeHeaders(inc: Incoming, rid: string): [string, string][] {
  return upstreamHeaders(inc, rid).filter(([name]) => !name.startsWith("sec-websocket-"));
}

/** Opens the upstream WebSocket; resolves once it is open, or with why it is not. */
function connect(
  runtime: Runtime,
  u: Upstream,
  url: string,
  headers: [string, string][],
  protocols: string[],
  timeoutMs: number,
  signal: AbortSignal,
): Promise<Connected> {
  u.attempts++;
  u.inFlight++;
  return new Promise<Connected>((resolve) => {
    let ws: WebSocket;
    try {
      ws = new (WebSocket as unknown as ClientWebSocket)(url, { headers, protocols });
    } catch (e) {
      u.inFlight--;
      return resolve({ kind: "failed", error: String((e as Error)?.message ?? e) });
    }
    ws.binaryType = "arraybuffer";
    let settled = false;
    const done = (r: Connected) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      ws.onopen = ws.onerror = ws.onclose = null;
      u.inFlight--;
      if (r.kind !== "open") {
        try {
          ws.close();
        } catch { /* not open */ }
      }
      resolve(r);
    };
    const timer = setTimeout(() => done({ kind: "timeout" }), timeoutMs);
    const onAbort = () => done({ kind: "aborted" });
    signal.addEventListener("abort", onAbort);
    if (signal.aborted) return onAbort();
    ws.onopen = () => done({ kind: "open", ws });
    const failed = (e: Event) => {
      ws.onerror = ws.onclose = null; // an error event is followed by a close event: one is enough
      const msg = (e as ErrorEvent).message || "the WebSocket closed before it opened";
      // Deno: "Invalid status code: 403"; Bun: "Expected 101 status code: 403" — it answered, so it was reached.
      const status = /status code:? (\d{3})/i.exec(msg)?.[1];
      if (status) return done({ kind: "failed", error: `answered ${status} (${msg})` });
      // Otherwise the text does not say whether a connection was made: try one.
      runtime.tcpConnect(u.hostname, u.port, Math.min(timeoutMs, 2000)).then(
        () => done({ kind: "failed", error: msg }),
        (ce) => done({ kind: "refused", error: `${msg}: ${(ce as Error)?.message ?? ce}` }),
      );
    };
    ws.onerror = failed;
    ws.onclose = failed;
  });
}

/**
 * Sends a Close with `code` where the runtime allows it. The WebSocket API's
 * close() takes only 1000 and 3000–4999 on Deno (client and server side)
 * and Bun's client refuses some others: what it refuses goes as 1000 with the
 * same reason. 1005 (no code) goes as a Close without one.
 */
function closeWithin(ws: { close(code?: number, reason?: string): void }, code: number, reason: string): void {
  try {
    if (code === 1005) return ws.close();
    ws.close(code, reason);
  } catch {
    try {
      ws.close(1000, reason);
    } catch {
      try {
        ws.close();
      } catch { /* already closed */ }
    }
  }
}

type Message = string | ArrayBuffer | Uint8Array;

function sizeOf(m: Message): number {
  if (typeof m !== "string") return m.byteLength;
  let n = m.length;
  for (let i = 0; i < m.length; i++) {
    const c = m.charCodeAt(i);
    if (c >= 0x80) n += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1;
    if (c >= 0xd800 && c <= 0xdbff) i++; // a surrogate pair: 4 bytes for 2 code units
  }
  return n;
}

class Counts {
  messages = 0;
  bytes = 0;
  add(m: Message): number {
    const n = sizeOf(m);
    this.messages++;
    this.bytes += n;
    return n;
  }
}

/** One edge WebSocket after both sides opened: messages relayed, closes passed on, registered for drains. */
export class Relay extends WebSocketBase {
  readonly up = new Counts();
  readonly down = new Counts();
  readonly handlers: WsHandlers;
  private peer: WsPeer | null = null;
  /** Messages from the upstream before the client opened, and a close to pass on once it has. */
  private early: Message[] = [];
  private earlyBytes = 0;
  private earlyClose: { code: number; reason: string } | null = null;
  private clientClosed = false;
  private upstreamClosed = false;
  private closing = false;
  private graceSet = false;

  constructor(
    private ws: WebSocket,
    readonly target: Upstream,
    readonly path: string,
    readonly heldMs: number,
    protected readonly host: WebSocketHost,
  ) {
    super();
    ws.onmessage = (e) => this.fromUpstream(e.data);
    ws.onclose = (e) => this.upstreamClose(e.code, e.reason);
    ws.onerror = () => {};
    this.handlers = {
      open: (peer: WsPeer) => this.clientOpen(peer),
      message: (m: Message) => this.fromClient(m),
      close: (code: number, reason: string) => this.clientClose(code, reason),
    };
    // A client that was accepted but never opens (it left during the 101).
    this.later(ACCEPT_MS, () => {
      if (this.peer || this.clientClosed) return;
      this.clientClosed = true;
      this.toUpstream(1001, "client went away");
      this.finishSoon();
    });
  }

  /** holdup closes both sides: 1012 (its upstream was removed), 1001 (shutdown), 1009 (wsMaxBuffered). */
  closeWith(code: number, reason: string): void {
    if (this.ended || this.closing) return;
    this.noteClose(code, reason, "holdup");
    this.toClient(code, reason);
    this.toUpstream(code, reason);
    this.finishSoon();
  }

  private noteClose(code: number, reason: string, by: ClosedBy | null): void {
    this.closing = true;
    if (this.code !== null) return;
    this.code = code;
    this.reason = reason;
    this.closedBy = by;
  }

  private clientOpen(peer: WsPeer): void {
    this.peer = peer;
    if (this.clientClosed) return peer.terminate(); // too late: the relay gave up on it
    for (const m of this.early.splice(0)) this.send(m, false, true);
    this.earlyBytes = 0;
    if (this.earlyClose) this.toClient(this.earlyClose.code, this.earlyClose.reason);
  }

  private fromClient(m: Message): void {
    if (this.upstreamClosed || this.ended) return;
    this.send(m, true);
  }

  private fromUpstream(m: Message): void {
    if (this.clientClosed || this.ended) return;
    if (this.peer) return this.send(m, false);
    // Not open yet on the client's side: kept until it is (bounded like the rest).
    const n = this.down.add(m);
    this.host.relayed(false, n);
    this.early.push(m);
    this.earlyBytes += n;
    if (this.earlyBytes > this.host.maxBuffered()) this.overflow(false);
  }

  /** `counted`: an early message, counted when it was kept. */
  private send(m: Message, toUpstream: boolean, counted = false): void {
    if (!counted) this.host.relayed(toUpstream, (toUpstream ? this.up : this.down).add(m));
    let accepted = true;
    try {
      if (toUpstream) this.ws.send(m);
      else accepted = this.peer!.send(m);
    } catch {
      return; // closing: nothing more passes
    }
    const queued = toUpstream ? this.ws.bufferedAmount : this.peer!.bufferedAmount;
    if (!accepted || queued > this.host.maxBuffered()) this.overflow(toUpstream);
  }

  /** More than wsMaxBuffered queued toward a side (message relays cannot slow the other): close both with 1009. */
  private overflow(toUpstream: boolean): void {
    if (this.ended || this.code === 1009) return;
    const max = this.host.maxBuffered();
    this.host.warn("websocket closed: wsMaxBuffered exceeded", {
      path: this.path, upstream: this.target.url, wsMaxBuffered: max, slowSide: toUpstream ? "upstream" : "client",
    });
    this.closing = true;
    this.code = 1009;
    this.reason = "wsMaxBuffered exceeded";
    this.closedBy = "holdup";
    this.early = [];
    const reason = "holdup: buffer limit";
    this.toClient(1009, reason);
    this.toUpstream(1009, reason);
    // The slow side is cut where the runtime can (its Close would wait behind what is queued).
    if (toUpstream) this.later(0, () => (this.ws as { terminate?: () => void }).terminate?.());
    else this.peer?.terminate();
    this.finishSoon();
  }

  private clientClose(code: number, reason: string): void {
    if (this.clientClosed) return;
    this.clientClosed = true;
    const dropped = code === 1006 || code === 0;
    this.noteClose(dropped ? 1006 : code, reason, dropped ? null : "client");
    if (!this.upstreamClosed) this.toUpstream(dropped ? 1001 : code, dropped ? "client went away" : reason);
    this.finishSoon();
  }

  private upstreamClose(code: number, reason: string): void {
    if (this.upstreamClosed) return;
    this.upstreamClosed = true;
    const dropped = code === 1006 || code === 0;
    this.noteClose(dropped ? 1006 : code, reason, dropped ? null : "upstream");
    if (!this.clientClosed) {
      const [c, r] = dropped ? [1011, "holdup: the upstream connection dropped"] : [code, reason];
      if (this.peer) this.toClient(c, r);
      else this.earlyClose = { code: c, reason: r };
    }
    this.finishSoon();
  }

  private toClient(code: number, reason: string): void {
    if (this.peer) closeWithin(this.peer, code, reason);
    else this.earlyClose ??= { code, reason };
  }

  private toUpstream(code: number, reason: string): void {
    closeWithin(this.ws, code, reason);
  }

  /** Ends once both sides have closed, or after a grace period. */
  private finishSoon(): void {
    if (this.clientClosed && this.upstreamClosed) return this.finish();
    if (this.graceSet) return;
    this.graceSet = true;
    this.later(2 * CLOSE_GRACE_MS, () => {
      if (!this.upstreamClosed) (this.ws as { terminate?: () => void }).terminate?.();
      if (!this.clientClosed) this.peer?.terminate();
      this.finish();
    });
  }

  protected override finish(): void {
    this.early = [];
    super.finish();
  }
}
