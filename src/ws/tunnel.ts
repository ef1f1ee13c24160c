/**
 * One proxied WebSocket after the upstream's 101: a byte tunnel between the
 * two sockets, with backpressure both ways. Frame boundaries are followed
 * (FrameTracker) so holdup can close it itself — 1012 on a drain, 1001 on
 * shutdown, 1001 past wsIdleTimeout, 1013 when the connection cap evicts it —
 * between two frames. See docs/design/websockets.md.
 */
import type { Socket } from "node:net";
import { onDrain } from "../util/drain.ts";
import type { Upstream } from "../apps/upstream.ts";
import type { ClosedBy, WebSocketHost } from "../apps/websockets.ts";
import { WebSocketBase } from "./socket.ts";
import { clientClose, FrameTracker, SERVER_PING, serverClose } from "./frames.ts";
import { setUpgraded } from "../serve/conns.ts";

/** How long a closing handshake holdup started may take before the sockets are cut. */
const CLOSE_GRACE_MS = 1000;

export type { ClosedBy };
/** The registry a tunnel reports to (apps/websockets.ts). */
export type TunnelHost = WebSocketHost;

export class Tunnel extends WebSocketBase {
  /** Upstream → client. */
  readonly down = new FrameTracker();
  /** Client → upstream. */
  readonly up = new FrameTracker();
  private pending: { code: number; reason: string } | null = null;
  /** Holdup wrote its own Close to the client: the upstream's data is no longer relayed. */
  private clientToldClose = false;
  /** The client's answering Close went on to the upstream: nothing more goes there. */
  private upstreamDone = false;
  private paused = { up: false, down: false };
  private closedSockets = 0;
  /** performance.now() of the last byte either way. */
  private last = performance.now();
  private lastFromClient = this.last;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly client: Socket,
    readonly upstream: Socket,
    readonly target: Upstream,
    readonly path: string,
    readonly heldMs: number,
    protected readonly host: TunnelHost,
  ) {
    super();
  }

  /** Starts relaying: `first` is what the upstream sent after its 101 head, `early` what the client sent before it. */
  start(first: Uint8Array, early: Uint8Array[]): void {
    this.down.onClose = (code, reason) => this.noteClose(code, reason, "upstream");
    this.up.onClose = (code, reason) => this.noteClose(code, reason, "client");
    const { client, upstream } = this;
    client.setNoDelay?.(true);
    upstream.setNoDelay?.(true);
    client.on("data", (c: Uint8Array) => this.fromClient(c));
    upstream.on("data", (c: Uint8Array) => this.fromUpstream(c));
    const onEnd = (other: Socket) => () => {
      if (!other.destroyed) other.end();
    };
    client.on("end", onEnd(upstream));
    upstream.on("end", onEnd(client));
    const onClose = (other: Socket) => () => {
      if (!other.destroyed) {
        other.end();
        this.later(CLOSE_GRACE_MS, () => other.destroy());
      }
      if (++this.closedSockets === 2) this.finish();
    };
    client.on("close", onClose(upstream));
    upstream.on("close", onClose(client));
    if (first.byteLength) this.fromUpstream(first);
    for (const e of early) this.fromClient(e);
    client.resume();
    upstream.resume();
    setUpgraded(client, {
      kind: () => "websocket",
      idleSince: () => this.idleSince(),
      evict: () => this.closeWith(1013, "connection limit reached"),
    });
    this.armIdle(this.host.idleTimeout?.() ?? null);
    this.armPing(this.host.pingInterval?.() ?? null);
  }

  private armPing(ms: number | null): void {
    if (ms === null) return;
    this.pingTimer = setTimeout(() => {
      const every = this.host.pingInterval?.() ?? null;
      if (every === null || this.ended) return;
      const quiet = performance.now() - this.lastFromClient;
      if (quiet < every) return this.armPing(every - quiet);
      // Only between frames toward the client, and not once a close is under way.
      if (this.down.atBoundary && !this.pending && this.code === null && !this.client.destroyed) this.client.write(SERVER_PING);
      this.armPing(every);
    }, ms);
  }

  /** Since when it has been idle (between frames both ways, no close under way); null: busy. */
  idleSince(): number | null {
    if (this.ended || this.pending || this.code !== null || !this.down.atBoundary || !this.up.atBoundary) return null;
    return this.last;
  }

  private armIdle(ms: number | null): void {
    if (ms === null) return;
    this.idleTimer = setTimeout(() => {
      const timeout = this.host.idleTimeout?.() ?? null;
      if (timeout === null || this.ended) return;
      const quiet = performance.now() - this.last;
      if (quiet >= timeout) this.closeWith(1001, "idle timeout");
      else this.armIdle(timeout - quiet);
    }, ms);
  }

  protected override finish(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.pingTimer) clearTimeout(this.pingTimer);
    this.idleTimer = this.pingTimer = null;
    super.finish();
  }

  /** Closes it now, at the next frame boundary toward the client. */
  closeWith(code: number, reason: string): void {
    if (this.pending || this.ended) return;
    this.pending = { code, reason };
    if (this.down.close || this.up.close) {
      // A closing handshake is already under way: let it finish, briefly.
      this.later(2 * CLOSE_GRACE_MS, () => this.cut());
      return;
    }
    if (this.down.atBoundary) this.tellClient();
    // else: fromUpstream writes it once the frame in progress has passed; a frame that never ends is cut.
    else this.later(2 * CLOSE_GRACE_MS, () => this.cut());
  }

  private noteClose(code: number, reason: string, by: ClosedBy): void {
    if (this.code !== null) return;
    this.code = code;
    this.reason = reason;
    this.closedBy = by;
  }

  private fromUpstream(chunk: Uint8Array): void {
    this.last = performance.now();
    if (this.clientToldClose) {
      this.down.feed(chunk); // the upstream's answer to the client's Close, or late data: not relayed
      return;
    }
    if (!this.pending) {
      this.down.feed(chunk);
      this.send(this.client, chunk, this.upstream, false);
      return;
    }
    const at = this.down.feed(chunk, 0, true);
    if (at > 0) this.send(this.client, chunk.subarray(0, at), this.upstream, false);
    if (this.down.atBoundary) {
      this.tellClient();
      if (at < chunk.byteLength) this.down.feed(chunk, at);
    }
  }

  private fromClient(chunk: Uint8Array): void {
    this.last = this.lastFromClient = performance.now();
    if (this.upstreamDone) {
      this.up.feed(chunk);
      return;
    }
    this.up.feed(chunk);
    this.send(this.upstream, chunk, this.client, true);
    if (this.clientToldClose && this.up.close) {
      // The client answered holdup's Close, and that answer went on to the upstream.
      this.upstreamDone = true;
      this.client.end();
    }
  }

  /** Writes holdup's Close to the client, between frames. */
  private tellClient(): void {
    if (this.clientToldClose || this.ended) return;
    const { code, reason } = this.pending!;
    this.clientToldClose = true;
    this.noteClose(code, reason, "holdup");
    this.client.write(serverClose(code, reason));
    // A client that does not answer: tell the upstream ourselves, then end both.
    this.later(CLOSE_GRACE_MS, () => {
      if (!this.upstreamDone) {
        this.upstreamDone = true;
        if (this.up.atBoundary && !this.upstream.destroyed) this.upstream.write(clientClose(code, reason));
      }
      this.upstream.end();
      this.client.end();
      this.later(CLOSE_GRACE_MS, () => this.cut());
    });
  }

  private send(dst: Socket, data: Uint8Array, src: Socket, toUpstream: boolean): void {
    if (dst.destroyed) return;
    this.host.relayed(toUpstream, data.byteLength);
    const dir = toUpstream ? "up" : "down";
    if (!dst.write(data) && !this.paused[dir]) {
      this.paused[dir] = true;
      src.pause();
      onDrain(dst, () => {
        this.paused[dir] = false;
        if (!src.destroyed) src.resume();
      });
    }
    if (dst.writableLength > this.host.maxBuffered()) this.overflow(toUpstream);
  }

  /** More than wsMaxBuffered is queued toward a side that does not read: close with 1009. */
  private overflow(toUpstream: boolean): void {
    if (this.ended || this.code === 1009) return;
    const max = this.host.maxBuffered();
    this.host.warn("websocket closed: wsMaxBuffered exceeded", {
      path: this.path, upstream: this.target.url, wsMaxBuffered: max, slowSide: toUpstream ? "upstream" : "client",
    });
    this.code = 1009;
    this.reason = "wsMaxBuffered exceeded";
    this.closedBy = "holdup";
    this.clientToldClose = this.upstreamDone = true;
    const reason = "holdup: buffer limit";
    // The side that is not reading is cut; the other gets a Close if holdup is between its frames.
    if (toUpstream) {
      this.upstream.destroy();
      if (this.down.atBoundary) this.client.write(serverClose(1009, reason));
      this.client.end();
    } else {
      this.client.destroy();
      if (this.up.atBoundary) this.upstream.write(clientClose(1009, reason));
      this.upstream.end();
    }
    this.later(CLOSE_GRACE_MS, () => this.cut());
  }

  private cut(): void {
    this.client.destroy();
    this.upstream.destroy();
  }

}
