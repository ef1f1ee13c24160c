/**
 * Deno KV as the shared state engine at the edge (`HOLDUP_STATE=kv`): the
 * same ordered list of operations as with Redis, written atomically with its
 * count; kv.watch on the count tells every isolate to read what is new.
 * Measured limits: docs/design/fleet.md.
 */
import type { KvLike } from "../runtime/types.ts";
import type { Batch, Engine, EngineEvents } from "./fleet.ts";

const LEN = ["holdup", "ops-len"];
const OP = (n: number) => ["holdup", "ops", n];
const EVENT = ["holdup", "event"];
const EPOCH = ["holdup", "epoch"];

export class KvEngine implements Engine {
  connected = false;
  private kv: KvLike | null = null;
  private closed = false;

  constructor(open: () => Promise<KvLike>, private ev: EngineEvents) {
    open().then((kv) => {
      this.kv = kv;
      this.connected = true;
      ev.onReady();
      void this.follow(kv);
    }, (e) => ev.onDown(String((e as Error)?.message ?? e)));
  }

  private async follow(kv: KvLike): Promise<void> {
    let len: string | null | undefined, event: string | null | undefined;
    try {
      for await (const [l, e] of kv.watch([LEN, EVENT])) {
        // The first values are the current ones: nothing happened yet.
        if (len !== undefined && l.versionstamp !== len) this.ev.onMessage("op");
        if (event !== undefined && e.versionstamp !== event && typeof e.value === "string") this.ev.onMessage(e.value);
        len = l.versionstamp;
        event = e.versionstamp;
      }
    } catch (err) {
      if (this.closed) return;
      this.connected = false;
      this.ev.onDown(`Deno KV watch ended: ${(err as Error)?.message ?? err}`);
    }
  }

  private get db(): KvLike {
    if (!this.kv || !this.connected) throw new Error("Deno KV is not open");
    return this.kv;
  }

  async append(item: string): Promise<number> {
    for (let i = 0; i < 100; i++) {
      const cur = await this.db.get(LEN);
      const n = Number(cur.value ?? 0);
      const r = await this.db.atomic().check(cur).set(LEN, n + 1).set(OP(n), item).commit();
      if (r.ok) return n + 1;
    }
    throw new Error("Deno KV: could not append the operation (too many concurrent writers)");
  }

  /** Deno KV keeps every operation (no compaction here): reads are by key range, linear in what is new. */
  async read(from: number): Promise<Batch> {
    const len = Number((await this.db.get(LEN)).value ?? 0);
    const items: string[] = [];
    if (len > from) for await (const e of this.db.list({ start: OP(from), end: OP(len) })) items.push(String(e.value));
    return { start: from, snapshot: null, items, base: 0 };
  }

  async publish(message: string): Promise<void> {
    // An operation is announced by its own write (watch on the count); other messages by the event key.
    if (message.startsWith("op ")) return;
    await this.db.set(EVENT, message);
  }

  async epoch(): Promise<string> {
    await this.db.atomic().check({ key: EPOCH, versionstamp: null }).set(EPOCH, crypto.randomUUID()).commit();
    return String((await this.db.get(EPOCH)).value);
  }

  async setExpiring(key: string, value: string, ms: number): Promise<void> {
    await this.db.set(["holdup", key], value, { expireIn: ms });
  }

  async get(key: string): Promise<string | null> {
    const v = (await this.db.get(["holdup", key])).value;
    return typeof v === "string" ? v : null;
  }

  close(): void {
    this.closed = true;
    this.connected = false;
    this.kv?.close();
  }
}
