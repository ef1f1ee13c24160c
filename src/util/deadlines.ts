/**
 * Deadlines checked by one sweeping timer rather than a setTimeout each:
 * response deadlines of in-flight attempts, and hold deadlines of held
 * requests. A timer per request was measurable on the hot path (Deno
 * especially) and in memory with 10,000 held. A deadline fires up to one
 * sweep period late: a twentieth of its timeout, between 5 and 100 ms.
 */

export interface Deadline {
  /** performance.now() ms at which `onExpire` runs. */
  at: number;
  onExpire(): void;
}

export class Deadlines {
  private live = new Set<Deadline>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private period = 0;

  add(d: Deadline, timeoutMs: number): void {
    this.live.add(d);
    const period = Math.min(100, Math.max(5, Math.floor(timeoutMs / 20)));
    if (!this.timer || period < this.period) this.start(period);
  }

  delete(d: Deadline): void {
    this.live.delete(d);
  }

  private start(period: number): void {
    if (this.timer) clearInterval(this.timer);
    this.period = period;
    this.timer = setInterval(() => this.sweep(), period);
  }

  private sweep(): void {
    if (this.live.size === 0) {
      clearInterval(this.timer!);
      this.timer = null;
      return;
    }
    const now = performance.now();
    for (const d of this.live) {
      if (d.at <= now) {
        this.live.delete(d);
        d.onExpire();
      }
    }
  }
}
