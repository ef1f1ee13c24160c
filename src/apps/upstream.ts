/**
 * One upstream and what holdup knows about it: reachable or not, the last
 * error, requests in flight. While it is unreachable it is tried again once per
 * tryInterval — one probe, however many requests are held — and when a probe
 * succeeds every held request is woken at once.
 */
import type { Runtime } from "../runtime/types.ts";

export type UpstreamStatus = "unknown" | "up" | "down";

export interface UpstreamEnv {
  runtime: Runtime;
  /** Read at each probe, so a reload's new interval or health path applies at once. */
  settings(): { tryInterval: number; healthPath: string | null };
  /** How many requests are held; with none, a down upstream is not probed. */
  waiting(): number;
  /** Called when the upstream becomes ready, to wake held requests. */
  onReady(u: Upstream): void;
  onStatus(u: Upstream, from: UpstreamStatus, error: string | null): void;
  /** Health checks marked it down (see health.ts). */
  onUnhealthy?(u: Upstream, reason: string): void;
}

export class Upstream {
  status: UpstreamStatus = "unknown";
  lastError: string | null = null;
  inFlight = 0;
  /**
   * Responses from it whose body is still being relayed to the client (after
   * inFlight ended with the response head): a drain waits for these too.
   */
  relaying = 0;
  /** The app's answers passed on from it, and how many were 5xx (for rollbackWindow, rollback.ts). */
  answers = 0;
  answers5xx = 0;
  /** Connection attempts: probes plus forwarded requests. */
  attempts = 0;
  failures = 0;
  /** Health checks failed in a row (see health.ts). */
  healthFailures = 0;
  /** Marked down by health checks, until it is ready again. */
  unhealthy = false;
  readonly hostname: string;
  readonly port: number;
  /** Attempts waiting for this upstream's response head, so that a drain can cut them. */
  readonly active = new Set<AbortController>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private probing = false;
  private lastProbe = -Infinity;
  private retired = false;

  constructor(readonly url: string, private env: UpstreamEnv) {
    ({ hostname: this.hostname, port: this.port } = hostPort(new URL(url)));
  }

  /** Makes sure a probe is running or scheduled while the upstream is not ready. */
  ensureProbe(): void {
    if (this.status === "up" || this.timer || this.probing || this.retired) return;
    const wait = this.lastProbe + this.env.settings().tryInterval - performance.now();
    if (wait <= 0) void this.probe();
    else this.timer = setTimeout(() => {
      this.timer = null;
      if (this.status === "unknown" || this.env.waiting() > 0) void this.probe();
    }, wait);
  }

  /** A request provably never reached it (refused, DNS): it is down until a probe says otherwise. */
  markDown(error: string): void {
    this.failures++;
    this.lastProbe = performance.now(); // that request was this interval's try
    this.lastError = error;
    if (this.status !== "down") this.setStatus("down");
    this.ensureProbe();
  }

  /** Health checks failed unhealthyAfter times in a row: down, and new requests go elsewhere or are held. */
  markUnhealthy(reason: string): void {
    this.unhealthy = true;
    this.lastError = reason;
    if (this.status !== "down") this.setStatus("down");
    this.env.onUnhealthy?.(this, reason);
  }

  get isRetired(): boolean {
    return this.retired;
  }

  /** A probe succeeded: wake every request held for it. */
  markUp(): void {
    this.unhealthy = false;
    this.healthFailures = 0;
    if (this.status !== "up") {
      this.setStatus("up");
      this.env.onReady(this);
    }
  }

  /** Aborts every attempt still waiting for a response head; returns how many. */
  cut(): number {
    const n = this.active.size;
    for (const a of this.active) a.abort(CUT);
    this.active.clear();
    return n;
  }

  /** Dropped by a reload: no more probes. */
  retire(): void {
    this.retired = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private setStatus(s: UpstreamStatus): void {
    const from = this.status;
    this.status = s;
    this.env.onStatus(this, from, this.lastError);
  }

  private async probe(): Promise<void> {
    this.probing = true;
    this.lastProbe = performance.now();
    this.attempts++;
    const { tryInterval, healthPath } = this.env.settings();
    const timeout = Math.min(Math.max(tryInterval, 1000), 10_000);
    const error = await probeOnce(this.env.runtime, this.url, healthPath, timeout);
    this.probing = false;
    if (this.retired) return;
    if (error === null) {
      this.lastError = null;
      this.markUp();
    } else {
      this.failures++;
      this.lastError = error;
      if (this.status !== "down") this.setStatus("down");
      this.ensureProbe();
    }
  }
}

/** The host to connect to (no IPv6 brackets) and the port, defaulted by scheme. */
function hostPort(u: URL): { hostname: string; port: number } {
  return { hostname: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port) || (u.protocol === "https:" ? 443 : 80) };
}

/** Why an attempt was aborted by a drain (see Upstream.cut). */
export const CUT = "cut by a drain";

/**
 * One readiness check: GET healthPath must answer 2xx, or, without one, a TCP
 * connection must open. Null when ready, else what went wrong.
 */
export async function probeOnce(runtime: Runtime, url: string, healthPath: string | null, timeout: number): Promise<string | null> {
  try {
    if (!healthPath) {
      const { hostname, port } = hostPort(new URL(url));
      await runtime.tcpConnect(hostname, port, timeout);
      return null;
    }
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeout);
    try {
      const res = await runtime.fetchUpstream(url + healthPath, {
        method: "GET",
        headers: [["user-agent", "holdup health check"]],
        body: null,
        signal: abort.signal,
        fresh: true,
      });
      await res.body?.cancel();
      return res.status >= 200 && res.status < 300 ? null : `health check GET ${healthPath} answered ${res.status}`;
    } finally {
      clearTimeout(timer);
    }
  } catch (e) {
    return describe(e);
  }
}

function describe(e: unknown): string {
  const err = e as { message?: string; code?: string; cause?: { message?: string } };
  const msg = err?.cause?.message ?? err?.message ?? String(e);
  return err?.code && !msg.includes(err.code) ? `${err.code}: ${msg}` : msg;
}
