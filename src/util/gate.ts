/**
 * At most `limit` holders at once; the rest wait in line, first come first
 * served. Caps Bun's in-flight upstream fetches (runtime/bun.ts).
 */
export class Gate {
  private queue: Array<() => void> = [];
  private active = 0;

  constructor(readonly limit: number) {}

  /**
   * Takes a slot: null when one was free (taken at once), else a promise that
   * resolves when a slot passes to this caller. With `signal`, a caller that
   * gives up while waiting leaves the line and the promise rejects with the
   * signal's reason.
   */
  acquire(signal?: AbortSignal | null): Promise<void> | null {
    if (this.active < this.limit) {
      this.active++;
      return null;
    }
    return new Promise<void>((resolve, reject) => {
      const go = () => {
        signal?.removeEventListener("abort", leave);
        resolve();
      };
      const leave = () => {
        this.queue = this.queue.filter((g) => g !== go);
        reject(signal!.reason);
      };
      if (signal?.aborted) return leave();
      signal?.addEventListener("abort", leave, { once: true });
      this.queue.push(go);
    });
  }

  release(): void {
    const next = this.queue.shift();
    if (next) next(); // the slot passes straight to the next in line
    else this.active--;
  }
}
