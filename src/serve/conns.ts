/**
 * Every client connection a listener holds, of any kind — an HTTP/1.1
 * connection (plain or TLS), an HTTP/2 session, a WebSocket tunnel — counted
 * against one cap (maxConnections, bounded by the fd limit). At the cap the
 * connection idle the longest, whatever its kind, is closed to make room: an
 * HTTP/1.1 connection between requests, an HTTP/2 session without a stream
 * (GOAWAY), a WebSocket between frames both ways (Close 1013). When none is
 * idle, the new connection is refused. Long-lived connections therefore
 * cannot lock new clients out while they sit idle.
 */
import { readFileSync } from "node:fs";

export type ConnKind = "http1" | "h2" | "websocket";

export interface Conn {
  kind(): ConnKind;
  /** performance.now() since when it has been idle; null while it is busy. */
  idleSince(): number | null;
  /** Closes it to make room for a new one. */
  evict(): void;
}

/** What the owner of an upgraded socket (a WebSocket tunnel) tells the cap about it. */
const UPGRADED = Symbol("holdup.upgraded");
type Upgraded = { [UPGRADED]?: Conn };

/** Called by the tunnel once it relays: from now on the socket is idle or busy as it says. */
export function setUpgraded(socket: object, c: Conn): void {
  (socket as Upgraded)[UPGRADED] = c;
}

export function upgradedOf(socket: object): Conn | undefined {
  return (socket as Upgraded)[UPGRADED];
}

export class ConnTable {
  private conns = new Set<Conn>();
  /** Connections closed to make room, and new ones refused because none was idle. */
  evicted = 0;
  refused = 0;
  private refusedSinceLog = 0;
  private lastLog = 0;

  /** `onRefused`: at most one call per 5 s, with the refusals since the last. */
  constructor(private onRefused: (refused: number) => void) {}

  get size(): number {
    return this.conns.size;
  }

  delete(c: Conn): void {
    this.conns.delete(c);
  }

  /** Counts `c` in if there is room, or room can be made; false: refused. */
  admit(c: Conn, cap: number): boolean {
    if (this.conns.size >= cap && !this.evictIdlest()) {
      this.refused++;
      this.refusedSinceLog++;
      if (Date.now() - this.lastLog > 5000) {
        this.onRefused(this.refusedSinceLog);
        this.lastLog = Date.now();
        this.refusedSinceLog = 0;
      }
      return false;
    }
    this.conns.add(c);
    return true;
  }

  /** Open connections by kind, for /status. */
  byKind(): Record<ConnKind, number> {
    const out = { http1: 0, h2: 0, websocket: 0 };
    for (const c of this.conns) out[c.kind()]++;
    return out;
  }

  private evictIdlest(): boolean {
    let best: Conn | null = null, since = Infinity;
    for (const c of this.conns) {
      const s = c.idleSince();
      if (s !== null && s < since) [best, since] = [c, s];
    }
    if (!best) return false;
    this.conns.delete(best); // it no longer counts, even while it finishes closing
    this.evicted++;
    best.evict();
    return true;
  }
}

/** File descriptors kept back for upstream connections, the listener itself and files. */
const FD_RESERVE = 64;

/** maxConnections, lowered so that two descriptors per connection (client and upstream) fit under the fd limit. */
export function connectionCap(maxConnections: number, fdLimit: number | null): number {
  return fdLimit ? Math.min(maxConnections, Math.max(16, Math.floor((fdLimit - FD_RESERVE) / 2))) : maxConnections;
}

/** The connection cap's basis: the soft RLIMIT_NOFILE, read from /proc on Linux (null elsewhere). */
export function softFdLimit(): number | null {
  try {
    const text = readFileSync("/proc/self/limits", "utf8");
    const m = /^Max open files\s+(\d+)/m.exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
