/**
 * One app's state: an immutable snapshot (config, upstreams, mode) swapped
 * atomically by reloads and pause/resume/stop, and the waiters — where a held
 * request sleeps and what wakes it (WakeReason). See docs/design/hold.md.
 */
import type { Config } from "../config/schema.ts";
import type { Source } from "../config/layers.ts";
import { Upstream, type UpstreamEnv } from "./upstream.ts";
import { Deadlines } from "../util/deadlines.ts";
import { ReleaseWindow } from "./release-window.ts";
import { WsRegistry } from "./websockets.ts";
import { HealthChecker } from "./health.ts";

export type Mode = "running" | "paused" | "stopped";

/**
 * Released held requests in flight at once, at most (the window, release-window.ts,
 * starts at 4 and grows to this while the app answers fast): 10,000 requests released together
 * go out in waves instead of opening 10,000 connections at the same moment
 * (measured: Deno's RSS went from ~360 MB to ~850 MB in such a burst), and
 * the wave is queued on the runtime's bounded release pool (two requests per
 * kept-alive connection: one in flight, the next ready). Why 128, not 256:
 * docs/design/hold.md ("Releasing a wave"). Requests that were never held do
 * not pass this gate.
 */
export const RELEASE_CONCURRENCY = 128;

export interface Snapshot {
  readonly version: number;
  readonly config: Config;
  readonly sources: Record<string, Source>;
  readonly upstreams: readonly Upstream[];
  readonly mode: Mode;
  /** With mode "stopped": what to tell clients. */
  readonly stopMessage: string;
}

export type WakeReason = "changed" | "deadline" | "aborted" | "shutdown";

/** Held requests, each waiting for the next change. */
export class Waiters {
  private wakers = new Set<(why: WakeReason) => void>();
  private closed = false;
  private deadlines = new Deadlines();

  get size(): number {
    return this.wakers.size;
  }

  /** Resolves on the next wakeAll(), at `deadline` (performance.now() ms), or when `signal` aborts. */
  wait(deadline: number, signal: AbortSignal | null): Promise<WakeReason> {
    if (this.closed) return Promise.resolve("shutdown");
    if (signal?.aborted) return Promise.resolve("aborted");
    return new Promise((resolve) => {
      const done = (why: WakeReason) => {
        this.deadlines.delete(expiry);
        signal?.removeEventListener("abort", onAbort);
        this.wakers.delete(done);
        resolve(why);
      };
      const onAbort = () => done("aborted");
      const expiry = { at: deadline, onExpire: () => done("deadline") };
      this.deadlines.add(expiry, deadline - performance.now());
      signal?.addEventListener("abort", onAbort);
      this.wakers.add(done);
    });
  }

  wakeAll(why: WakeReason = "changed"): void {
    const all = [...this.wakers];
    this.wakers.clear();
    for (const wake of all) wake(why);
  }

  /** Shutdown: wake everyone, and answer later waits at once. */
  close(): void {
    this.closed = true;
    this.wakeAll("shutdown");
  }
}


/** A config and where its values came from (an Effective has both). */
export interface ConfigWithSources {
  config: Config;
  sources: Record<string, Source>;
}

export interface StateEvents {
  onUpstreamStatus: UpstreamEnv["onStatus"];
  onUpstreamUnhealthy?: UpstreamEnv["onUnhealthy"];
}

export class State {
  current: Snapshot;
  readonly waiters = new Waiters();
  readonly releaseWindow = new ReleaseWindow(RELEASE_CONCURRENCY);
  /** Requests held right now (waiting, not yet sent upstream). */
  held = 0;
  /** Buffered body bytes of the requests held right now (bounded by maxHeldBodyBytes). */
  heldBodyBytes = 0;
  /** Arrival times (performance.now()) of the requests waiting right now: the dashboard shows the oldest's age. */
  readonly heldSince = new Set<{ at: number }>();
  /** Open WebSocket tunnels, by upstream; drained when a reload removes theirs. */
  readonly websockets = new WsRegistry(() => this.current.upstreams, () => this.current.config);
  private upstreams = new Map<string, Upstream>();
  private rr = 0;
  private env: UpstreamEnv;
  private health: HealthChecker;

  constructor(effective: ConfigWithSources, runtime: UpstreamEnv["runtime"], events: StateEvents) {
    this.env = {
      runtime,
      settings: () => this.current.config,
      waiting: () => this.waiters.size,
      onReady: () => this.waiters.wakeAll(),
      onStatus: events.onUpstreamStatus,
      onUnhealthy: events.onUpstreamUnhealthy,
    };
    this.current = {
      version: 1,
      config: effective.config,
      sources: effective.sources,
      upstreams: this.upstreamsFor(effective.config.upstreams),
      mode: "running",
      stopMessage: "",
    };
    this.health = new HealthChecker(runtime, () => this.current);
    this.health.update();
  }

  /** Installs a new config (a reload): one assignment, then every held request wakes. */
  applyConfig(effective: ConfigWithSources, wsDrainTimeout?: number): Snapshot {
    const upstreams = this.upstreamsFor(effective.config.upstreams);
    const removed: Upstream[] = [];
    for (const [url, u] of this.upstreams) {
      if (!effective.config.upstreams.includes(url)) {
        u.retire();
        this.upstreams.delete(url);
        removed.push(u);
      }
    }
    const snap = this.swap({
      ...this.current,
      version: this.current.version + 1,
      config: effective.config,
      sources: effective.sources,
      upstreams,
    });
    this.websockets.retired(removed, wsDrainTimeout);
    this.health.update();
    return snap;
  }

  /** The app was removed by a reload: no more probes, held requests answered now. */
  retire(): void {
    for (const u of this.upstreams.values()) u.retire();
    this.health.stop();
    this.waiters.close();
  }

  /** Upstreams this state probes and sends to now. */
  upstreamFor(url: string): Upstream | undefined {
    return this.upstreams.get(url);
  }

  setMode(mode: Mode, stopMessage = ""): Snapshot {
    return this.swap({ ...this.current, mode, stopMessage });
  }

  /**
   * An upstream ready to take a request, round-robin; null when none is.
   * Starts probes for those that are not, so that waiting ends when one is,
   * and so that one added by a reload or back after a failover rejoins the
   * rotation while the others carry the traffic (at most one probe per
   * tryInterval each, and only while requests come).
   */
  pick(snap: Snapshot): Upstream | null {
    const list = snap.upstreams;
    if (list.length === 1) {
      const u = list[0];
      if (u.status === "up") return u;
      u.ensureProbe();
      return null;
    }
    for (let i = 0; i < list.length; i++) {
      const u = list[(this.rr + i) % list.length];
      if (u.status === "up") {
        this.rr = (this.rr + i + 1) % list.length;
        return u;
      }
      u.ensureProbe();
    }
    for (const u of list) u.ensureProbe();
    return null;
  }

  private swap(next: Snapshot): Snapshot {
    this.current = next;
    this.waiters.wakeAll();
    return next;
  }

  private upstreamsFor(urls: string[]): Upstream[] {
    return urls.map((url) => {
      let u = this.upstreams.get(url);
      if (!u) this.upstreams.set(url, u = new Upstream(url, this.env));
      return u;
    });
  }
}
