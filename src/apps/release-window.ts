/**
 * How many released held requests of an app are in flight at once: a window
 * that starts at WINDOW_MIN and grows by one for each answer that came back about as
 * fast as the fastest (doubling per round trip, as TCP's slow start), up to
 * `max`. Slower answers do not grow it (the app queues them: more at once gains
 * nothing). An attempt with no answer for far longer than the fastest took (the
 * app's full accept queue dropped its SYN, and the kernel resends it after 1 s,
 * then 3 s…) while later ones were answered halves it, and from then on it
 * grows by one a round; that attempt keeps no slot (nor does a long poll).
 * Idle, it starts over: the next release may meet another app. Measured:
 * docs/design/hold.md ("Releasing a wave").
 */

/** Where the window starts and the least it shrinks to. `python3 -m http.server` (listen backlog 5) drops SYNs at 7–8. */
export const WINDOW_MIN = 4;
/** An answer within 1.5 × the fastest + this counts as fast. */
const SLACK_MS = 1;
/** Never "stuck" sooner than this, nor than 4 × the fastest answer. */
const STUCK_MIN_MS = 50;

export class ReleaseWindow {
  private cap = WINDOW_MIN;
  /** In flight: ticket → when it took its slot; insertion order is start order. */
  private flying = new Map<number, number>();
  /** Tickets already counted as stuck (each halves the window once). */
  private stuck = new Set<number>();
  private queue: Array<(ticket: number) => void> = [];
  private next = 0;
  private fastest = Infinity;
  /** Past a stuck attempt, the window grows by one per round (+1/size an answer), not one per answer. */
  private cautious = false;
  /** The latest-started attempt answered so far: one started before it and still unanswered was overtaken. */
  private lastDone = -1;
  /** A check for stuck attempts while the line waits and no answer comes. */
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(readonly max: number, private now: () => number = () => performance.now()) {}

  /** The window's size now. */
  get size(): number {
    return Math.floor(this.cap);
  }

  /** Takes a slot, first come first served; resolves with the ticket to give back to `done`. */
  acquire(): Promise<number> {
    if (this.active < this.size && this.queue.length === 0) return Promise.resolve(this.take());
    return new Promise((go) => this.queue.push(go));
  }

  /** The attempt holding `ticket` got its answer (or failed): frees the slot and adapts the window. */
  done(ticket: number): void {
    const started = this.flying.get(ticket);
    if (started === undefined) return;
    this.flying.delete(ticket);
    const wasStuck = this.stuck.delete(ticket);
    const now = this.now();
    const ms = now - started;
    if (!wasStuck && ms < this.fastest) this.fastest = ms;
    if (ticket > this.lastDone) this.lastDone = ticket;
    if (!this.checkStuck(now) && !wasStuck && ms <= 1.5 * this.fastest + SLACK_MS) {
      this.cap = Math.min(this.max, this.cap + (this.cautious ? 1 / this.cap : 1));
    }
    if (this.flying.size === 0 && this.queue.length === 0) {
      this.cap = WINDOW_MIN;
      this.fastest = Infinity;
      this.cautious = false;
    }
    this.pump();
  }

  private get stuckAfter(): number {
    return Math.max(STUCK_MIN_MS, 4 * this.fastest);
  }

  /** Halves the window when an attempt has newly become stuck; true if one had. */
  private checkStuck(now: number): boolean {
    if (!this.newlyStuck(now)) return false;
    this.cap = Math.max(WINDOW_MIN, Math.floor(this.cap / 2));
    this.cautious = true;
    return true;
  }

  /** Passes free slots to the line; when none is free, checks again once the oldest in flight could be stuck. */
  private pump(): void {
    while (this.queue.length && this.active < this.size) this.queue.shift()!(this.take());
    // Before any answer there is no "fastest" to judge by: the first done() pumps again.
    if (this.timer !== null || this.queue.length === 0 || this.fastest === Infinity) return;
    // The oldest attempt already overtaken and not counted yet: it is the next that can become stuck.
    let oldest: number | undefined;
    for (const [t, started] of this.flying) {
      if (t > this.lastDone) break;
      if (!this.stuck.has(t)) {
        oldest = started;
        break;
      }
    }
    if (oldest === undefined) return;
    const wait = Math.max(1, oldest + this.stuckAfter - this.now() + 1);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.checkStuck(this.now());
      this.pump();
    }, wait);
  }

  /** Slots in use: a stuck attempt keeps none (its SYN waits in the kernel, not in the app). */
  private get active(): number {
    return this.flying.size - this.stuck.size;
  }

  private take(): number {
    const t = this.next++;
    this.flying.set(t, this.now());
    return t;
  }

  /**
   * Whether an attempt not counted before has gone unanswered too long while one
   * started after it was answered (it is counted now). Overtaken, not just old: a
   * pause of holdup's own (GC, a busy loop) delays every attempt alike.
   */
  private newlyStuck(now: number): boolean {
    const after = this.stuckAfter;
    let found = false;
    for (const [t, started] of this.flying) {
      if (now - started <= after || t > this.lastDone) break; // in start order: the rest are younger
      if (!this.stuck.has(t)) {
        this.stuck.add(t);
        found = true;
      }
    }
    return found;
  }
}
