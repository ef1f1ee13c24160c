/**
 * Every open WebSocket, by upstream: what /status and /metrics report, what a
 * reload drains (1012, spread over wsCloseSpread after drainTimeout) and what
 * shutdown closes (1001). Two kinds register here: the command-line proxy's
 * byte tunnels (tunnel.ts) and the edge entry's message relays (relay.ts);
 * both implement OpenWebSocket and report to a WebSocketHost (this registry).
 */
import type { Upstream } from "./upstream.ts";

/** Who sent the first Close frame. */
export type ClosedBy = "client" | "upstream" | "holdup";

/** One direction's counts: complete data messages and bytes relayed. */
export interface Relayed {
  readonly messages: number;
  readonly bytes: number;
}

/** What the registry, /status, /metrics and the access log need of one open WebSocket. */
export interface OpenWebSocket {
  readonly target: Upstream;
  /** The path and query the client asked for. */
  readonly path: string;
  readonly heldMs: number;
  /** performance.now() when it opened. */
  readonly opened: number;
  /** Client → upstream. */
  readonly up: Relayed;
  /** Upstream → client. */
  readonly down: Relayed;
  /** The first close code seen (1006 once it ended without one); its reason, and who sent it. */
  readonly code: number | null;
  readonly reason: string;
  readonly closedBy: ClosedBy | null;
  /** Scheduled to be closed with 1012 (its upstream was removed). */
  readonly draining: boolean;
  /** Closes it with `code` after `ms`. */
  drainAfter(ms: number, code: number, reason: string): void;
  /** Closes it now. */
  closeWith(code: number, reason: string): void;
}

/** What an open WebSocket reports to, and asks of, the registry it is in. */
export interface WebSocketHost {
  /** Bytes relayed, as they are written. */
  relayed(toUpstream: boolean, bytes: number): void;
  /** Both sides are closed. */
  ended(t: OpenWebSocket): void;
  /** Per-direction cap on bytes queued toward a side that is not reading. */
  maxBuffered(): number;
  /** No byte either way for this long closes it (1001); null: never. */
  idleTimeout?(): number | null;
  /** A client silent this long is sent a Ping; null: never. */
  pingInterval?(): number | null;
  warn(message: string, fields: Record<string, unknown>): void;
}

export interface WsSettings {
  drainTimeout: number;
  wsCloseSpread: number;
  wsMaxBuffered: number;
  /** Absent (the edge entry): no idle timeout. */
  wsIdleTimeout?: number | null;
  wsPingInterval?: number | null;
}

export class WsRegistry implements WebSocketHost {
  private open = new Set<OpenWebSocket>();
  private perUpstream = new Map<Upstream, number>();
  bytesToUpstream = 0;
  bytesToClient = 0;
  messagesToUpstream = 0;
  messagesToClient = 0;
  opened = 0;
  /** performance.now() when the last one closed (activity, for --idle-stop). */
  lastEnded = 0;
  /** Closes by code (1006: dropped without a Close frame). */
  readonly closes = new Map<number, number>();
  /** Set by shutdown: new handshakes are refused. */
  closing = false;
  /** One call per WebSocket once it is closed (the access-log line). */
  onEnded: ((t: OpenWebSocket) => void) | null = null;
  onWarn: ((message: string, fields: Record<string, unknown>) => void) | null = null;

  constructor(private upstreams: () => readonly Upstream[], private settings: () => WsSettings) {}

  get size(): number {
    return this.open.size;
  }

  get draining(): number {
    let n = 0;
    for (const t of this.open) if (t.draining) n++;
    return n;
  }

  countFor(u: Upstream): number {
    return this.perUpstream.get(u) ?? 0;
  }

  /** Upstreams with open WebSockets, including ones a reload removed. */
  byUpstream(): [Upstream, number][] {
    return [...this.perUpstream];
  }

  add(t: OpenWebSocket): void {
    this.open.add(t);
    this.opened++;
    this.perUpstream.set(t.target, this.countFor(t.target) + 1);
    // Its upstream was removed while the handshake was in flight: drain it like the others.
    if (!this.upstreams().includes(t.target)) this.drain([t]);
  }

  /** A reload or deploy removed these upstreams: drain their WebSockets (a deploy's own drainTimeout, if it has one). */
  retired(removed: readonly Upstream[], drainTimeout?: number): void {
    if (!removed.length || !this.open.size) return;
    const set = new Set(removed);
    this.drain([...this.open].filter((t) => set.has(t.target) && !t.draining), drainTimeout);
  }

  private drain(list: OpenWebSocket[], drainTimeout = this.settings().drainTimeout): void {
    const { wsCloseSpread } = this.settings();
    list.forEach((t, i) => t.drainAfter(drainTimeout + Math.floor((i * wsCloseSpread) / list.length), 1012, "service restart"));
  }

  /**
   * Shutdown: once `ready()` (in-flight HTTP requests are done), closes every
   * WebSocket with 1001; resolves when all are closed.
   */
  async shutdown(ready: () => boolean): Promise<void> {
    this.closing = true;
    while (this.open.size && !ready()) await new Promise((r) => setTimeout(r, 25));
    for (const t of this.open) t.closeWith(1001, "going away");
    while (this.open.size) await new Promise((r) => setTimeout(r, 25));
  }

  // WebSocketHost

  relayed(toUpstream: boolean, bytes: number): void {
    if (toUpstream) this.bytesToUpstream += bytes;
    else this.bytesToClient += bytes;
  }

  maxBuffered(): number {
    return this.settings().wsMaxBuffered;
  }

  idleTimeout(): number | null {
    return this.settings().wsIdleTimeout ?? null;
  }

  pingInterval(): number | null {
    return this.settings().wsPingInterval ?? null;
  }

  warn(message: string, fields: Record<string, unknown>): void {
    this.onWarn?.(message, fields);
  }

  ended(t: OpenWebSocket): void {
    if (!this.open.delete(t)) return;
    this.lastEnded = performance.now();
    const n = this.countFor(t.target) - 1;
    if (n > 0) this.perUpstream.set(t.target, n);
    else this.perUpstream.delete(t.target);
    this.messagesToUpstream += t.up.messages;
    this.messagesToClient += t.down.messages;
    const code = t.code ?? 1006;
    this.closes.set(code, (this.closes.get(code) ?? 0) + 1);
    this.onEnded?.(t);
  }
}
