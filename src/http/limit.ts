/**
 * The concurrency cap (`maxConcurrent`, `slowStart`): at most N requests in
 * flight to each upstream — from the attempt until its response body has been
 * relayed — the rest waiting in FIFO order. The hold loop (hold.ts) counts a
 * waiting request as held (maxHeld, tryDuration and the client leaving apply).
 * With slowStart, an upstream's cap ramps from 1 to N over that long after it
 * was first seen ready, so a cold app is not handed the whole queue at once.
 */
import type { Upstream } from "../apps/upstream.ts";

export type SlotWait = "ok" | "deadline" | "aborted";

export class Limit {
  active = 0;
  private queue: Array<() => void> = [];
  /** performance.now() when the upstream was first seen ready (for slowStart). */
  private upSince = -1;

  get queued(): number {
    return this.queue.length;
  }

  /** The cap right now: maxConcurrent, ramped by slowStart. */
  cap(u: Upstream, max: number, slowStart: number): number {
    if (u.status !== "up") {
      this.upSince = -1;
      return max;
    }
    const now = performance.now();
    if (this.upSince < 0) this.upSince = now;
    if (slowStart <= 0 || now - this.upSince >= slowStart) return max;
    return Math.max(1, Math.floor((max * (now - this.upSince)) / slowStart));
  }

  /** Takes a slot when one is free under `cap` and no one waits before us. */
  tryTake(cap: number): boolean {
    if (this.active < cap && this.queue.length === 0) {
      this.active++;
      return true;
    }
    return false;
  }

  /** Waits in line for a slot until `deadline` (performance.now() ms) or the signal. */
  wait(deadline: number, signal: AbortSignal | null): Promise<SlotWait> {
    if (signal?.aborted) return Promise.resolve("aborted");
    return new Promise((resolve) => {
      const done = (why: SlotWait) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (why !== "ok") this.queue = this.queue.filter((g) => g !== go);
        resolve(why);
      };
      const go = () => done("ok");
      const onAbort = () => done("aborted");
      const timer = setTimeout(() => done("deadline"), Math.max(0, deadline - performance.now()));
      signal?.addEventListener("abort", onAbort);
      this.queue.push(go);
    });
  }

  /** Gives a slot back; the first in line takes it (and, while the cap grows, the next ones). */
  release(cap: number): void {
    this.active--;
    while (this.queue.length && this.active < cap) {
      this.active++;
      this.queue.shift()!();
    }
  }
}

const limits = new WeakMap<Upstream, Limit>();

export function limitOf(u: Upstream): Limit {
  let l = limits.get(u);
  if (!l) limits.set(u, l = new Limit());
  return l;
}

/** Requests waiting in line for the upstream (for /status). */
export function queuedAt(u: Upstream): number {
  return limits.get(u)?.queued ?? 0;
}
