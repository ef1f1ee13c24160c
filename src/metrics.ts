/** Counters for GET /metrics, in the Prometheus text format. */
import type { Snapshot } from "./state.ts";

/** Hold-time histogram buckets, in seconds. */
const BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class Metrics {
  /** Requests by status code, indexed by the code (100-599). */
  private byStatus = new Float64Array(600);
  private holdCounts = new Array<number>(BUCKETS.length + 1).fill(0);
  private holdSum = 0;
  private holdCount = 0;
  reloadsOk = 0;
  reloadsFailed = 0;

  request(status: number, heldMs: number): void {
    this.byStatus[status]++;
    if (heldMs > 0) {
      const s = heldMs / 1000;
      let i = 0;
      while (i < BUCKETS.length && s > BUCKETS[i]) i++;
      this.holdCounts[i]++;
      this.holdSum += s;
      this.holdCount++;
    }
  }

  /** Requests answered so far, and how many of them were 5xx (read once a second by the dashboard's sampler). */
  totals(): { requests: number; errors5xx: number } {
    let requests = 0, errors5xx = 0;
    for (let code = 100; code < 600; code++) {
      const n = this.byStatus[code];
      requests += n;
      if (code >= 500) errors5xx += n;
    }
    return { requests, errors5xx };
  }

  render(snap: Snapshot, held: number): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);

    metric("holdup_requests_total", "counter", "Requests answered, by status code and class.");
    this.byStatus.forEach((n, code) => {
      if (n) out.push(`holdup_requests_total{code="${code}",class="${String(code)[0]}xx"} ${n}`);
    });

    metric("holdup_held_requests", "gauge", "Requests held right now, waiting for an upstream.");
    out.push(`holdup_held_requests ${held}`);

    metric("holdup_hold_seconds", "histogram", "How long held requests waited before they were sent or answered.");
    let cumulative = 0;
    BUCKETS.forEach((b, i) => {
      cumulative += this.holdCounts[i];
      out.push(`holdup_hold_seconds_bucket{le="${b}"} ${cumulative}`);
    });
    out.push(`holdup_hold_seconds_bucket{le="+Inf"} ${this.holdCount}`);
    out.push(`holdup_hold_seconds_sum ${this.holdSum}`);
    out.push(`holdup_hold_seconds_count ${this.holdCount}`);

    metric("holdup_upstream_attempts_total", "counter", "Connection attempts to each upstream: forwarded requests and probes.");
    for (const u of snap.upstreams) out.push(`holdup_upstream_attempts_total{upstream="${esc(u.url)}"} ${u.attempts}`);
    metric("holdup_upstream_failures_total", "counter", "Attempts that failed to reach each upstream.");
    for (const u of snap.upstreams) out.push(`holdup_upstream_failures_total{upstream="${esc(u.url)}"} ${u.failures}`);
    metric("holdup_upstream_up", "gauge", "1 when the upstream is reachable.");
    for (const u of snap.upstreams) out.push(`holdup_upstream_up{upstream="${esc(u.url)}"} ${u.status === "up" ? 1 : 0}`);
    metric("holdup_upstream_in_flight", "gauge", "Requests sent to the upstream and awaiting its response head.");
    for (const u of snap.upstreams) out.push(`holdup_upstream_in_flight{upstream="${esc(u.url)}"} ${u.inFlight}`);

    metric("holdup_reloads_total", "counter", "Config reloads, by result.");
    out.push(`holdup_reloads_total{result="ok"} ${this.reloadsOk}`);
    out.push(`holdup_reloads_total{result="failed"} ${this.reloadsFailed}`);
    metric("holdup_config_version", "gauge", "The version of the config in force; 1 at start, +1 each reload.");
    out.push(`holdup_config_version ${snap.version}`);
    metric("holdup_paused", "gauge", "1 while paused or stopped.");
    out.push(`holdup_paused ${snap.mode === "running" ? 0 : 1}`);
    return out.join("\n") + "\n";
  }
}

function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
