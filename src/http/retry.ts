/**
 * Retrying on the app's answer (`retryOn`): when an answer means "not ready",
 * how long to wait before the next try (Retry-After, at least tryInterval), and
 * the retry budget that keeps such retries from multiplying the load on a sick
 * app. The hold loop (hold.ts) decides what is safe to resend; this file only
 * says when, and whether the app can take one more.
 */

/** The budget's window: requests and retries of the last WINDOW_S seconds count. */
const WINDOW_S = 10;
/** Retries allowed on top of the requests themselves: 20 % of the window's requests… */
const RATIO = 0.2;
/** …but at least this many a second, so a quiet app can still be waited for. */
const FLOOR_PER_S = 3;

/**
 * Per app: requests and retries counted in one-second buckets over a sliding
 * window. `tryRetry` says whether one more retry fits, and counts it if so.
 */
export class RetryBudget {
  private requests = new Uint32Array(WINDOW_S);
  private retries = new Uint32Array(WINDOW_S);
  private second = 0;

  /** A client request reached the app (its first attempt). */
  request(now: number): void {
    this.requests[this.advance(now)]++;
  }

  tryRetry(now: number): boolean {
    const i = this.advance(now);
    let requests = 0, retries = 0;
    for (let k = 0; k < WINDOW_S; k++) {
      requests += this.requests[k];
      retries += this.retries[k];
    }
    if (retries >= Math.max(FLOOR_PER_S * WINDOW_S, RATIO * requests)) return false;
    this.retries[i]++;
    return true;
  }

  /** The bucket for `now` (performance.now() ms), clearing the buckets of seconds that passed. */
  private advance(now: number): number {
    const s = Math.floor(now / 1000);
    if (s !== this.second) {
      const gone = Math.min(s - this.second, WINDOW_S);
      for (let k = 1; k <= gone; k++) {
        const j = (this.second + k) % WINDOW_S;
        this.requests[j] = 0;
        this.retries[j] = 0;
      }
      this.second = s;
    }
    return s % WINDOW_S;
  }
}

const budgets = new WeakMap<object, RetryBudget>();

/** The budget of the app whose state is `key`. */
export function budgetOf(key: object): RetryBudget {
  let b = budgets.get(key);
  if (!b) budgets.set(key, b = new RetryBudget());
  return b;
}

/**
 * Milliseconds to wait before retrying after an answer: its Retry-After
 * (seconds or an HTTP date), never less than tryInterval.
 */
export function retryDelay(retryAfter: string | null, tryInterval: number): number {
  if (!retryAfter) return tryInterval;
  const v = retryAfter.trim();
  let ms = NaN;
  if (/^\d+$/.test(v)) ms = Number(v) * 1000;
  else {
    const at = Date.parse(v);
    if (!Number.isNaN(at)) ms = at - Date.now();
  }
  return Number.isFinite(ms) ? Math.max(ms, tryInterval) : tryInterval;
}
