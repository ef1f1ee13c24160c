/** What the command-line tunnel (tunnel.ts) and the edge relay (relay.ts) share: one open WebSocket's close bookkeeping. */
import type { Upstream } from "../apps/upstream.ts";
import type { ClosedBy, OpenWebSocket, Relayed, WebSocketHost } from "../apps/websockets.ts";

/**
 * What the tunnel and the relay share: the close bookkeeping, their timers
 * (all cleared when it ends) and the drain schedule. Each says how it closes
 * (closeWith) and calls finish() once both of its sides are closed.
 */
export abstract class WebSocketBase implements OpenWebSocket {
  abstract readonly target: Upstream;
  abstract readonly path: string;
  abstract readonly heldMs: number;
  abstract readonly up: Relayed;
  abstract readonly down: Relayed;
  protected abstract readonly host: WebSocketHost;
  readonly opened = performance.now();
  code: number | null = null;
  reason = "";
  closedBy: ClosedBy | null = null;
  draining = false;
  protected ended = false;
  private timers: ReturnType<typeof setTimeout>[] = [];

  abstract closeWith(code: number, reason: string): void;

  drainAfter(ms: number, code: number, reason: string): void {
    if (this.draining || this.ended) return;
    this.draining = true;
    this.later(ms, () => this.closeWith(code, reason));
  }

  protected later(ms: number, fn: () => void): void {
    this.timers.push(setTimeout(fn, ms));
  }

  /** Both sides are closed: stop every timer, and report it (1006 when no Close frame passed either way). */
  protected finish(): void {
    if (this.ended) return;
    this.ended = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    if (this.code === null) {
      this.code = 1006;
      this.closedBy = null;
    }
    this.host.ended(this);
  }
}

