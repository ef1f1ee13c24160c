/**
 * Every open WebSocket tunnel, by upstream: what /status and /metrics report,
 * what a reload drains (1012, spread over wsCloseSpread after drainTimeout)
 * and what shutdown closes (1001).
 */
import type { Upstream } from "../upstream.ts";
import type { Tunnel, TunnelHost } from "./tunnel.ts";

export interface WsSettings {
  drainTimeout: number;
  wsCloseSpread: number;
  wsMaxBuffered: number;
}

export class WsRegistry implements TunnelHost {
  private open = new Set<Tunnel>();
  private perUpstream = new Map<Upstream, number>();
  bytesToUpstream = 0;
  bytesToClient = 0;
  messagesToUpstream = 0;
  messagesToClient = 0;
  opened = 0;
  /** Closes by code (1006: dropped without a Close frame). */
  readonly closes = new Map<number, number>();
  /** Set by shutdown: new handshakes are refused. */
  closing = false;
  /** One call per tunnel once it is closed (the access-log line). */
  onEnded: ((t: Tunnel) => void) | null = null;
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

  /** Upstreams with open tunnels, including ones a reload removed. */
  byUpstream(): [Upstream, number][] {
    return [...this.perUpstream];
  }

  add(t: Tunnel): void {
    this.open.add(t);
    this.opened++;
    this.perUpstream.set(t.target, this.countFor(t.target) + 1);
    // Its upstream was removed while the handshake was in flight: drain it like the others.
    if (!this.upstreams().includes(t.target)) this.drain([t]);
  }

  /** A reload or deploy removed these upstreams: drain their WebSockets. */
  retired(removed: readonly Upstream[]): void {
    if (!removed.length || !this.open.size) return;
    const set = new Set(removed);
    this.drain([...this.open].filter((t) => set.has(t.target) && !t.draining));
  }

  private drain(list: Tunnel[]): void {
    const { drainTimeout, wsCloseSpread } = this.settings();
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

  // TunnelHost

  relayed(toUpstream: boolean, bytes: number): void {
    if (toUpstream) this.bytesToUpstream += bytes;
    else this.bytesToClient += bytes;
  }

  maxBuffered(): number {
    return this.settings().wsMaxBuffered;
  }

  warn(message: string, fields: Record<string, unknown>): void {
    this.onWarn?.(message, fields);
  }

  ended(t: Tunnel): void {
    if (!this.open.delete(t)) return;
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
