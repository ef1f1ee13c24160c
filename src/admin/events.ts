/**
 * What the dashboard shows and how it gets there: the last operator events,
 * 15 minutes of per-second samples, and the `GET /events` stream; nothing
 * runs per proxied request, and each stream's queue is bounded.
 * See docs/design/dashboard.md.
 */
import type { Control } from "../control/control.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { Upstream } from "../apps/upstream.ts";

/** What the hub reads of the proxy's state: held requests and the upstreams in force (all apps together). */
/** What the page reads of one app's held requests. */
interface AppHeld {
  heldSince: Set<{ at: number }>;
  current: { config: { tryDuration: number } };
}

/** Age in ms of the oldest of these held requests; null when none is held. */
function oldestHeldMs(since: Set<{ at: number }>): number | null {
  let oldest = Infinity;
  for (const m of since) if (m.at < oldest) oldest = m.at;
  return oldest === Infinity ? null : Math.round(performance.now() - oldest);
}

export interface HeldView {
  readonly held: number;
  readonly current: { readonly upstreams: readonly Upstream[] };
}

/** Events kept for a newly opened page. */
export const EVENTS_KEPT = 50;
/** Seconds of samples kept: 15 minutes at one per second. */
export const HISTORY_SECONDS = 15 * 60;
/** Queued bytes above which a stream's snapshots are skipped. */
export const SKIP_BYTES = 64 * 1024;
/** Queued bytes above which a stream is dropped. */
export const DROP_BYTES = 256 * 1024;

export interface DashEvent {
  /** ISO time. */
  time: string;
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

export interface Sample {
  /** Epoch ms at the end of the second. */
  t: number;
  held: number;
  /** Requests answered per second over the last tick. */
  rps: number;
  /** 5xx answers per second over the last tick. */
  e5xx: number;
}

interface Client {
  c: ReadableStreamDefaultController<Uint8Array>;
  /** Snapshots skipped because the client was not reading. */
  skipped: number;
}

const enc = new TextEncoder();

function frame(event: string, data: unknown): Uint8Array {
  return enc.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

export class EventHub {
  private events: DashEvent[] = [];
  /** Ring buffers of HISTORY_SECONDS samples; `next` is where the next one goes. */
  private t = new Float64Array(HISTORY_SECONDS);
  private held = new Float64Array(HISTORY_SECONDS);
  private rps = new Float32Array(HISTORY_SECONDS);
  private e5xx = new Float32Array(HISTORY_SECONDS);
  private next = 0;
  private count = 0;
  private last: { at: number; requests: number; errors: number };
  private timer: ReturnType<typeof setInterval> | null = null;
  private clients = new Set<Client>();
  private snapshotQueued = false;
  /** Upstreams a reload dropped that still have requests in flight. */
  private draining = new Set<Upstream>();
  private seen: readonly Upstream[];
  /** Streams dropped for not reading, and snapshots skipped for streams that were behind. */
  dropped = 0;
  skipped = 0;

  /** The proxy listener's bound address (host:port), set once it listens; the configured one until then. */
  proxyAddress: string | null = null;

  constructor(private d: { control: Control; state: HeldView; metrics: Metrics; apps?: { list: Array<{ name: string; state: AppHeld }> } }) {
    const totals = d.metrics.totals();
    this.last = { at: Date.now(), requests: totals.requests, errors: totals.errors5xx };
    this.seen = d.state.current.upstreams;
  }

  /** Starts the once-a-second sampler. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), 1000);
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** Shutdown: stop sampling, end every stream (so the admin listener can drain). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const cl of this.clients) {
      try {
        cl.c.close();
      } catch { /* already closed */ }
    }
    this.clients.clear();
  }

  /** An operator event (the Logger's tap): kept, and sent to every stream with a fresh snapshot. */
  record(level: string, msg: string, fields: Record<string, unknown>): void {
    const e: DashEvent = { time: new Date().toISOString(), level, msg, fields };
    this.events.push(e);
    if (this.events.length > EVENTS_KEPT) this.events.shift();
    if (!this.clients.size) return;
    this.broadcast(frame("log", e), false);
    // Coalesce: a reload logs twice in a row; one snapshot after both.
    if (!this.snapshotQueued) {
      this.snapshotQueued = true;
      setTimeout(() => {
        this.snapshotQueued = false;
        if (this.clients.size) this.broadcast(frame("status", this.snapshot(null)), true);
      }, 0);
    }
  }

  /** One sample, then (with streams open) one snapshot shared by all of them. */
  tick(now = Date.now()): Sample {
    const totals = this.d.metrics.totals();
    const secs = Math.max((now - this.last.at) / 1000, 0.001);
    const s: Sample = {
      t: now,
      held: this.d.state.held,
      rps: round1((totals.requests - this.last.requests) / secs),
      e5xx: round1((totals.errors5xx - this.last.errors) / secs),
    };
    this.last = { at: now, requests: totals.requests, errors: totals.errors5xx };
    const i = this.next;
    this.t[i] = s.t;
    this.held[i] = s.held;
    this.rps[i] = s.rps;
    this.e5xx[i] = s.e5xx;
    this.next = (i + 1) % HISTORY_SECONDS;
    this.count = Math.min(this.count + 1, HISTORY_SECONDS);
    if (this.clients.size) this.broadcast(frame("status", this.snapshot(s)), true);
    return s;
  }

  /** The samples kept, oldest first, as parallel arrays. */
  history(): { t: number[]; held: number[]; rps: number[]; e5xx: number[] } {
    const out = { t: [] as number[], held: [] as number[], rps: [] as number[], e5xx: [] as number[] };
    const start = (this.next - this.count + HISTORY_SECONDS) % HISTORY_SECONDS;
    for (let k = 0; k < this.count; k++) {
      const i = (start + k) % HISTORY_SECONDS;
      out.t.push(this.t[i]);
      out.held.push(this.held[i]);
      out.rps.push(round1(this.rps[i]));
      out.e5xx.push(round1(this.e5xx[i]));
    }
    return out;
  }

  recentEvents(): DashEvent[] {
    return [...this.events];
  }

  /** The status the page shows: GET /status plus draining upstreams and the last sample. */
  snapshot(sample: Sample | null): Record<string, unknown> {
    this.trackDraining();
    const status = this.d.control.status();
    return {
      ...status,
      // What the page needs beyond /status: whether Reload can apply (a config file, or certificates to re-read),
      // and each app's oldest held request against its deadline (tryDuration).
      reloadable: status.configFile !== null || this.d.control.reloadWithoutFile,
      proxy: this.proxyAddress ?? (status.config as { listen?: string }).listen,
      holding: this.d.apps?.list.map((a) => ({ app: a.name, oldestMs: oldestHeldMs(a.state.heldSince), tryDurationMs: a.state.current.config.tryDuration })) ?? [],
      draining: [...this.draining].map((u) => ({ url: u.url, inFlight: u.inFlight, lastError: u.lastError })),
      dashboard: { streams: this.clients.size, dropped: this.dropped, skipped: this.skipped, queuedBytes: this.queuedBytes() },
      ...(sample ? { sample } : {}),
    };
  }

  /** Open streams. */
  get streams(): number {
    return this.clients.size;
  }

  /**
   * A new `GET /events` stream: a `hello` (status, history, recent events),
   * then `status` once a second and `log` for each event.
   */
  open(): ReadableStream<Uint8Array> {
    let client: Client | null = null;
    return new ReadableStream<Uint8Array>({
      start: (c) => {
        client = { c, skipped: 0 };
        c.enqueue(enc.encode("retry: 1000\n\n"));
        c.enqueue(frame("hello", { status: this.snapshot(null), history: this.history(), events: this.events }));
        this.clients.add(client);
      },
      cancel: () => {
        if (client) this.clients.delete(client);
      },
    }, { highWaterMark: SKIP_BYTES, size: (chunk) => chunk?.byteLength ?? 0 });
  }

  /** The largest queue among open streams, in bytes. */
  queuedBytes(): number {
    let most = 0;
    for (const cl of this.clients) most = Math.max(most, SKIP_BYTES - (cl.c.desiredSize ?? 0));
    return most;
  }

  private broadcast(bytes: Uint8Array, skippable: boolean): void {
    for (const cl of this.clients) {
      const queued = SKIP_BYTES - (cl.c.desiredSize ?? 0);
      if (skippable && queued >= SKIP_BYTES) {
        cl.skipped++;
        this.skipped++;
        continue;
      }
      // An empty queue always takes the message, however large the status is.
      if (queued > 0 && queued + bytes.byteLength > DROP_BYTES) {
        this.clients.delete(cl);
        this.dropped++;
        try {
          cl.c.error(new Error("events stream dropped: the client is not reading"));
        } catch { /* already closed */ }
        continue;
      }
      try {
        cl.c.enqueue(bytes);
      } catch {
        this.clients.delete(cl);
      }
    }
  }

  private trackDraining(): void {
    const now = this.d.state.current.upstreams;
    if (now !== this.seen) {
      for (const u of this.seen) if (!now.includes(u) && u.inFlight > 0) this.draining.add(u);
      this.seen = now;
    }
    for (const u of this.draining) if (u.inFlight <= 0 || now.includes(u)) this.draining.delete(u);
  }
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
