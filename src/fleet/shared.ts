/**
 * A fleet of holdups that acts as one, through Redis (`--state redis://…`),
 * or at the edge through Deno KV (`HOLDUP_STATE=kv`, see fleet/kv.ts).
 *
 * What travels: every operator change that is not a file — pause, resume,
 * stop (with its message), POST /reload bodies, and deploys — as one ordered
 * list of operations (`holdup:ops`, RPUSH: its length is the version), and
 * "upstream U of app A became ready" events, so one instance's successful
 * probe releases the requests held on all of them. Each instance applies the
 * list in order, over its own config file and flags (which stay local).
 *
 * Joining or reconnecting: read the list from the last version applied, then
 * follow the channel. Losing Redis: keep serving and holding on the last
 * known state, log once, retry with backoff; changes sent to this instance
 * while Redis is away are refused with 503 (applied nowhere, rather than here
 * only), so the fleet never diverges.
 */
import type { App, Apps } from "../apps.ts";
import type { Control } from "../control.ts";
import type { Layer } from "../config/layers.ts";
import type { Logger } from "../log.ts";
import { Redis } from "./resp.ts";

const OPS = "holdup:ops";
const CHANNEL = "holdup:events";
const EPOCH = "holdup:epoch";

/** What the Fleet needs from a shared state engine: an ordered list, a channel, an id for its history. */
export interface Engine {
  readonly connected: boolean;
  /** Appends one operation; resolves with the list's new length (its version). */
  append(item: string): Promise<number>;
  /** The operations from index `from` (0-based) to the end. */
  range(from: number): Promise<string[]>;
  /** Tells every instance (including this one). */
  publish(message: string): Promise<void>;
  /** The id of the engine's history (set once, by whoever comes first). */
  epoch(): Promise<string>;
  /** A value that expires (worker reports); null when the engine cannot (Deno KV: not needed there). */
  setExpiring(key: string, value: string, ms: number): Promise<void>;
  get(key: string): Promise<string | null>;
  close(): void;
}

export interface EngineEvents {
  onMessage(payload: string): void;
  onReady(): void;
  onDown(error: string): void;
}

class RedisEngine implements Engine {
  private redis: Redis;
  constructor(url: string, events: EngineEvents) {
    this.redis = new Redis({ url, ...events }, CHANNEL);
  }
  get connected() {
    return this.redis.connected;
  }
  async append(item: string) {
    return Number(await this.redis.command("RPUSH", OPS, item));
  }
  async range(from: number) {
    const list = await this.redis.command("LRANGE", OPS, String(from), "-1");
    return Array.isArray(list) ? list.map(String) : [];
  }
  async publish(message: string) {
    await this.redis.command("PUBLISH", CHANNEL, message);
  }
  async epoch() {
    await this.redis.command("SET", EPOCH, crypto.randomUUID(), "NX");
    return String(await this.redis.command("GET", EPOCH));
  }
  async setExpiring(key: string, value: string, ms: number) {
    await this.redis.command("SET", key, value, "PX", String(ms));
  }
  async get(key: string) {
    const r = await this.redis.command("GET", key);
    return typeof r === "string" ? r : null;
  }
  close() {
    this.redis.close();
  }
}

export type Op =
  | { kind: "mode"; by: string; app: string | null; mode: "paused" | "running" | "stopped"; message?: string }
  | { kind: "patch"; by: string; body: unknown }
  | { kind: "deploy"; by: string; app: string; raw: Layer["raw"] };

export class Fleet {
  /** The number of operations applied from the shared list (its version). */
  version = 0;
  lastError: string | null = null;
  private engine: Engine;
  private syncing: Promise<void> = Promise.resolve();
  private waiters: Array<{ v: number; resolve: () => void }> = [];
  private firstSync: Promise<void>;
  private markFirst!: () => void;
  private fromPeer = false;
  /** With --workers: which worker this is, and whether the channel is the parent's or the engine. */
  worker: { index: number; of: number; pid: number; channel: "parent" | "engine" } | null = null;

  constructor(
    readonly url: string,
    private d: { control: Control; apps: Apps; log: Logger },
    readonly instance = crypto.randomUUID().slice(0, 8),
    engine?: (events: EngineEvents) => Engine,
  ) {
    this.firstSync = new Promise((r) => this.markFirst = r);
    const events: EngineEvents = {
      onMessage: (m) => this.onMessage(m),
      onReady: () => {
        if (this.lastError) d.log.info("shared state: reconnected; resynchronising", { engine: redact(url) });
        this.lastError = null;
        this.checkEpoch().then(() => this.sync()).then(this.markFirst, this.markFirst);
      },
      onDown: (error) => {
        if (this.lastError === null) {
          d.log.warn("shared state: the engine is unreachable; serving on the last known state, retrying", { engine: redact(url), error });
        }
        this.lastError = error;
        this.markFirst();
      },
    };
    this.engine = engine ? engine(events) : new RedisEngine(url, events);
  }

  get connected(): boolean {
    return this.engine.connected;
  }

  /**
   * The engine's history has an id: a Redis that restarted without persistence
   * comes back with a new one (and an empty list), and counting starts again.
   * Instances keep the state they had; one that starts later sees only what
   * changed since (run Redis with persistence to keep the whole history).
   */
  private epoch: string | null = null;
  private async checkEpoch(): Promise<void> {
    const now = await this.engine.epoch();
    if (this.epoch !== null && now !== this.epoch) {
      this.d.log.warn("shared state: the engine lost its history (restarted without persistence); keeping the current state", { engine: redact(this.url) });
      this.version = 0;
    }
    this.epoch = now;
  }

  /** Resolves once the shared state was read (or the engine found unreachable), at most `ms`. */
  ready(ms: number): Promise<void> {
    return Promise.race([this.firstSync, new Promise<void>((r) => setTimeout(r, ms))]);
  }

  /**
   * Publishes an operation and resolves once this instance applied it (in
   * order with every other); an error string when the engine is unreachable.
   */
  async submit(op: Op): Promise<string | null> {
    let v: number;
    try {
      v = await this.engine.append(JSON.stringify(op));
      await this.engine.publish(`op ${v}`);
    } catch (e) {
      return `the shared state engine is unreachable (${(e as Error).message}); nothing was changed, on this instance or any other`;
    }
    await this.sync();
    if (this.version < v) await new Promise<void>((resolve) => this.waiters.push({ v, resolve }));
    return null;
  }

  /** An upstream became ready here (a probe or a deploy): tell the others, unless they told us. */
  upstreamReady(app: string, url: string): void {
    if (this.fromPeer || !this.engine.connected) return;
    this.engine.publish(`ready ${JSON.stringify({ app, url, by: this.instance })}`).catch(() => {});
  }

  /**
   * With --workers: every worker writes what it holds to `holdup:worker:GROUP:I` (expiring after 5 s)
   * every 250 ms, and worker 0, which serves the admin API, reads them all for /status.
   */
  private workers: Array<Record<string, unknown>> = [];
  reportWorkers(group: string): void {
    const w = this.worker;
    if (!w) return;
    const key = (i: number) => `holdup:worker:${group}:${i}`;
    let busy = false;
    const tick = async () => {
      if (busy || !this.engine.connected) return;
      busy = true;
      try {
        const apps = this.d.apps.list;
        const modes = new Set(apps.map((a) => a.state.current.mode));
        const me = {
          index: w.index,
          pid: w.pid,
          mode: modes.size === 1 ? [...modes][0] : "mixed",
          held: apps.reduce((n, a) => n + a.state.held, 0),
          configVersion: this.d.control.configVersion,
          version: this.version,
          at: Date.now(),
        };
        await this.engine.setExpiring(key(w.index), JSON.stringify(me), 5000);
        if (w.index !== 0) return;
        const all = await Promise.all(Array.from({ length: w.of }, (_, i) => this.engine.get(key(i))));
        this.workers = all.map((r, i) => {
          if (typeof r !== "string") return { index: i, reporting: false };
          const v = JSON.parse(r);
          return { ...v, reporting: true, ageMs: Date.now() - v.at, at: undefined };
        });
      } catch { /* the engine is away: /status says so */ } finally {
        busy = false;
      }
    };
    const timer = setInterval(tick, 250);
    (timer as { unref?: () => void }).unref?.();
    void tick();
  }

  status(): Record<string, unknown> {
    return {
      engine: this.worker?.channel === "parent" ? "the parent's channel (--workers, no --state)" : redact(this.url),
      instance: this.instance, connected: this.connected, version: this.version, lastError: this.lastError,
      ...(this.worker ? { worker: this.worker } : {}),
      ...(this.worker?.index === 0 ? { workers: this.workers } : {}),
    };
  }

  close(): void {
    this.engine.close();
  }

  private onMessage(m: string): void {
    if (m.startsWith("ready ")) {
      let e: { app: string; url: string; by: string };
      try {
        e = JSON.parse(m.slice(6));
      } catch {
        return;
      }
      if (e.by === this.instance) return;
      const u = this.d.apps.get(e.app)?.state.upstreamFor(e.url);
      if (!u || u.status === "up") return;
      this.fromPeer = true;
      try {
        u.markUp(); // wakes the requests held here for it
      } finally {
        this.fromPeer = false;
      }
      return;
    }
    void this.sync();
  }

  /** Reads and applies, in order, every operation past `version`. One at a time. */
  private sync(): Promise<void> {
    this.syncing = this.syncing.then(() => this.pull()).catch((e) => {
      this.d.log.warn("shared state: could not apply the shared operations", { error: String((e as Error)?.message ?? e) });
    });
    return this.syncing;
  }

  private async pull(): Promise<void> {
    if (!this.engine.connected) return;
    const list = await this.engine.range(this.version);
    if (list.length === 0) return this.release();
    const ops: Op[] = [];
    for (const item of list) {
      try {
        ops.push(JSON.parse(item));
      } catch {
        ops.push({ kind: "patch", by: "?", body: {} });
      }
    }
    const { control } = this.d;
    // In order: a config change is a reload over this instance's own layers; a mode change is local.
    for (const op of ops) {
      if (op.kind === "patch") {
        await control.applyShared({ source: "reload", label: `shared reload (from ${op.by})`, raw: op.body as Layer["raw"] });
      } else if (op.kind === "deploy") {
        // The instance that deployed has switched already (health gate and drain are its own).
        if (op.by !== this.instance) await control.applyShared({ source: "reload", label: `shared deploy ${op.app} (from ${op.by})`, raw: op.raw });
      } else {
        const apps: App[] | undefined = control.select(op.app);
        if (!apps) continue;
        if (op.mode === "paused") control.pause(apps);
        else if (op.mode === "running") control.resume(apps);
        else control.stop(op.message ?? "", apps);
      }
    }
    this.version += list.length;
    this.release();
  }

  private release(): void {
    const ready = this.waiters.filter((w) => w.v <= this.version);
    this.waiters = this.waiters.filter((w) => w.v > this.version);
    for (const w of ready) w.resolve();
  }
}

/** The URL without its password, for logs and /status. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(invalid URL)";
  }
}
