/**
 * A fleet of holdups that acts as one (the Sharing port of control/sharing.ts):
 * every operator change that is not a file travels as one ordered list of
 * operations through Redis or Deno KV, each checked as read (fleet/ops.ts), and
 * "upstream ready" events release held requests everywhere. Compaction,
 * joining, reconnecting and losing the engine: docs/design/fleet.md.
 */
import type { App, Apps } from "../apps/apps.ts";
import type { Control } from "../control/control.ts";
import type { Sharing } from "../control/sharing.ts";
import type { Logger } from "../observe/log.ts";
import type { RawConfig } from "../config/schema.ts";
import { Redis } from "./resp.ts";
import { type ModeEntry, type Op, parseOp, SharedState } from "./ops.ts";

export type { Op } from "./ops.ts";

const OPS = "holdup:ops";
const CHANNEL = "holdup:events";
const EPOCH = "holdup:epoch";
const BASE = "holdup:ops-base";
const SNAPSHOT = "holdup:snapshot";
const LOCK = "holdup:compacting";
/** Operations after the snapshot past which an instance compacts the list. */
export const COMPACT_AFTER = 1000;

/** Operations read: items[i] is version start+i+1; `snapshot` (when set) is the state at `start`. */
export interface Batch {
  start: number;
  snapshot: string | null;
  items: string[];
  /** Operations before the list's first item (folded into the snapshot). */
  base: number;
}

/** What the Fleet needs from a shared state engine: an ordered list, a channel, an id for its history. */
export interface Engine {
  readonly connected: boolean;
  /** Appends one operation; resolves with the list's new length (its version). */
  append(item: string): Promise<number>;
  /** The operations after version `from`; when the list was compacted past it, the snapshot and every operation after. */
  read(from: number): Promise<Batch>;
  /** Replaces the operations up to `version` by `snapshot`; false when another instance is at it (engines that cannot: absent). */
  compact?(version: number, snapshot: string): Promise<boolean>;
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
  /** The list's base as last seen; a read that finds another retries once it knows. */
  private base = 0;
  async append(item: string) {
    const [len, base] = await this.redis.transaction(["RPUSH", OPS, item], ["GET", BASE]);
    return count(base) + Number(len);
  }
  async read(from: number): Promise<Batch> {
    const strings = (l: unknown) => (Array.isArray(l) ? l.map(String) : []);
    for (let tries = 0; tries < 5; tries++) {
      if (from >= this.base) {
        const [b, list] = await this.redis.transaction(["GET", BASE], ["LRANGE", OPS, String(from - this.base), "-1"]);
        const base = count(b);
        if (base === this.base) return { start: from, snapshot: null, items: strings(list), base };
        this.base = base; // compacted meanwhile (or the history was lost): read again
        continue;
      }
      const [b, snap, list] = await this.redis.transaction(["GET", BASE], ["GET", SNAPSHOT], ["LRANGE", OPS, "0", "-1"]);
      this.base = count(b);
      return { start: this.base, snapshot: typeof snap === "string" ? snap : null, items: strings(list), base: this.base };
    }
    throw new Error("the shared list kept changing its base while being read");
  }
  async compact(version: number, snapshot: string) {
    if (await this.redis.command("SET", LOCK, "1", "NX", "PX", "10000") === null) return false;
    try {
      const base = count(await this.redis.command("GET", BASE));
      if (version <= base) return false;
      await this.redis.transaction(["SET", SNAPSHOT, snapshot], ["SET", BASE, String(version)], ["LTRIM", OPS, String(version - base), "-1"]);
      this.base = version;
      return true;
    } finally {
      await this.redis.command("DEL", LOCK).catch(() => {});
    }
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

export class Fleet implements Sharing {
  /** The number of operations applied from the shared list (its version). */
  version = 0;
  lastError: string | null = null;
  private engine: Engine;
  private syncing: Promise<void> = Promise.resolve();
  private waiters: Array<{ v: number; resolve: () => void }> = [];
  private firstSync: Promise<void>;
  private markFirst!: () => void;
  private fromPeer = false;
  /** What the operations applied so far add up to (the next snapshot). */
  private shared = new SharedState();
  private compacting = false;
  private caughtUp = false;
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
      this.shared = new SharedState();
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
      this.d.log.warn("shared state: could not read the shared operations", { error: String((e as Error)?.message ?? e) });
    });
    return this.syncing;
  }

  private async pull(): Promise<void> {
    if (!this.engine.connected) return;
    const t0 = performance.now();
    const batch = await this.engine.read(this.version);
    const from = this.version;
    if (batch.snapshot !== null && batch.start > this.version) await this.applySnapshot(batch.snapshot, batch.start);
    this.version = Math.max(this.version, batch.start);
    // In order, each on its own: one that is malformed or refused is skipped, and never blocks the ones after it.
    for (let i = this.version - batch.start; i < batch.items.length; i++) {
      const v = batch.start + i + 1;
      await this.applyItem(batch.items[i], v);
      this.version = v;
    }
    this.release();
    if (!this.caughtUp) {
      this.caughtUp = true;
      this.d.log.info("shared state: caught up", {
        version: this.version, applied: this.version - from, snapshot: batch.snapshot !== null, ms: Math.round(performance.now() - t0),
      });
    }
    if (this.engine.compact && this.version - batch.base >= COMPACT_AFTER && !this.compacting) {
      this.compacting = true;
      const v = this.version;
      this.engine.compact(v, this.shared.toJSON(v)).then((ok) => {
        if (ok) this.d.log.info("shared state: compacted the operations into a snapshot", { version: v });
      }, (e) => this.d.log.warn("shared state: could not compact the operations", { error: String((e as Error)?.message ?? e) }))
        .finally(() => this.compacting = false);
    }
  }

  private async applyItem(item: string, version: number): Promise<void> {
    const parsed = parseOp(item);
    if ("error" in parsed) {
      this.d.log.warn("shared state: skipped an operation that is not valid; the ones after it still apply", { version, error: parsed.error });
      return;
    }
    const op = parsed.op;
    this.shared.record(op);
    const { control } = this.d;
    try {
      // A config change is a reload over this instance's own layers; a mode change is local.
      if (op.kind === "patch") {
        await control.applyShared({ source: "reload", label: `shared reload (from ${op.by})`, raw: op.body as RawConfig });
      } else if (op.kind === "deploy") {
        // The instance that deployed has switched already (health gate and drain are its own).
        if (op.by !== this.instance) await control.applyShared({ source: "reload", label: `shared deploy ${op.app} (from ${op.by})`, raw: op.raw });
      } else this.applyMode(op.app, op);
    } catch (e) {
      this.d.log.warn("shared state: could not apply an operation; the ones after it still apply", { version, error: String((e as Error)?.message ?? e) });
    }
  }

  private applyMode(app: string | null, e: ModeEntry): void {
    const { control } = this.d;
    const apps: App[] | undefined = control.select(app);
    if (!apps) return;
    if (e.mode === "paused") control.pause(apps);
    else if (e.mode === "running") control.resume(apps);
    else control.stop(e.message ?? "", apps);
  }

  /** The list was compacted past this instance's version: start from the snapshot. */
  private async applySnapshot(text: string, version: number): Promise<void> {
    const s = SharedState.parse(text);
    if ("error" in s) {
      this.d.log.warn("shared state: skipped the snapshot, which is not valid; applying the operations after it", { version, error: s.error });
      this.shared = new SharedState();
      return;
    }
    this.shared = s.state;
    if (s.state.raw) await this.d.control.applyShared({ source: "reload", label: `shared state (snapshot at version ${version})`, raw: s.state.raw }, true);
    for (const [app, e] of Object.entries(s.state.modes)) this.applyMode(app === "*" ? null : app, e);
  }

  private release(): void {
    const ready = this.waiters.filter((w) => w.v <= this.version);
    this.waiters = this.waiters.filter((w) => w.v > this.version);
    for (const w of ready) w.resolve();
  }
}

/** holdup:ops-base as a count; anything else (a stranger's write) as 0. */
function count(v: unknown): number {
  const n = Number(v ?? 0);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
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
