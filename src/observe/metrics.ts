/** Counters for GET /metrics, in the Prometheus text format. */
import { pipelineStats } from "../serve/pipeline.ts";
import type { Snapshot } from "../apps/state.ts";
import type { WsRegistry } from "../apps/websockets.ts";

/** Hold-time histogram buckets, in seconds. */
const BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** One app's request counters. */
class Counters {
  /** Requests by status code, indexed by the code (100-599). */
  byStatus = new Float64Array(600);
  holdCounts = new Array<number>(BUCKETS.length + 1).fill(0);
  holdSum = 0;
  holdCount = 0;
}

export interface AppView {
  name: string;
  state: { current: Snapshot; held: number; websockets: WsRegistry };
}

export class Metrics {
  private apps = new Map<string, Counters>();
  reloadsOk = 0;
  reloadsFailed = 0;
  deploysOk = 0;
  deploysFailed = 0;
  /** holdup_build_info's labels. */
  build: { version: string; runtime: string } | null = null;
  /** With `-- COMMAND`: the app's serving instance (null while none) and restarts so far. */
  runApp: (() => { instance: number | null; restarts: number; failedRestarts: number }) | null = null;
  /** Resends by "app\0reason" (status: a retryOn answer; empty-reply; drain). */
  private resends = new Map<string, number>();
  /** retryOn answers passed on because the app's retry budget was spent, by app. */
  private budgetSpent = new Map<string, number>();

  /** `app` is "" for requests no app answered. */
  request(status: number, heldMs: number, app: string): void {
    let c = this.apps.get(app);
    if (!c) this.apps.set(app, c = new Counters());
    c.byStatus[status]++;
    if (heldMs > 0) {
      const s = heldMs / 1000;
      let i = 0;
      while (i < BUCKETS.length && s > BUCKETS[i]) i++;
      c.holdCounts[i]++;
      c.holdSum += s;
      c.holdCount++;
    }
  }

  resend(app: string, reason: "status" | "empty-reply" | "drain"): void {
    const k = `${app}\0${reason}`;
    this.resends.set(k, (this.resends.get(k) ?? 0) + 1);
  }

  retryBudgetSpent(app: string): void {
    this.budgetSpent.set(app, (this.budgetSpent.get(app) ?? 0) + 1);
  }

  /** Requests answered so far with a 5xx status, all apps (for the dashboard's rates). */
  totals(): { requests: number; errors5xx: number } {
    let requests = 0, errors5xx = 0;
    for (const c of this.apps.values()) {
      c.byStatus.forEach((n, code) => {
        requests += n;
        if (code >= 500) errors5xx += n;
      });
    }
    return { requests, errors5xx };
  }

  render(apps: AppView[], configVersion: number, fleet?: { connected: boolean; version: number } | null): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    const names = new Set([...apps.map((a) => a.name), ...this.apps.keys()]);
    const counters = (name: string) => this.apps.get(name) ?? new Counters();

    metric("holdup_requests_total", "counter", "Requests answered, by app, status code and class (app \"\" = no app matched).");
    for (const name of names) {
      counters(name).byStatus.forEach((n, code) => {
        if (n) out.push(`holdup_requests_total{app="${esc(name)}",code="${code}",class="${String(code)[0]}xx"} ${n}`);
      });
    }

    metric("holdup_held_requests", "gauge", "Requests held right now, waiting for an upstream.");
    for (const a of apps) out.push(`holdup_held_requests{app="${esc(a.name)}"} ${a.state.held}`);

    metric("holdup_pipelined_waiting", "gauge", "Pipelined HTTP/1.1 requests waiting for the one before them on their connection.");
    out.push(`holdup_pipelined_waiting ${pipelineStats.waiting}`);
    metric("holdup_pipelined_deepest", "gauge", "The most pipelined requests that waited on one connection at once, since start.");
    out.push(`holdup_pipelined_deepest ${pipelineStats.deepest}`);
    metric("holdup_pipeline_stopped_connections", "gauge", "Connections not read now because their pipeline is full.");
    out.push(`holdup_pipeline_stopped_connections ${pipelineStats.stopped}`);
    metric("holdup_pipeline_cut_connections_total", "counter", "Connections closed because more than 4096 pipelined requests waited on them.");
    out.push(`holdup_pipeline_cut_connections_total ${pipelineStats.cut}`);

    metric("holdup_hold_seconds", "histogram", "How long held requests waited before they were sent or answered.");
    for (const a of apps) {
      const c = counters(a.name), app = `app="${esc(a.name)}"`;
      let cumulative = 0;
      BUCKETS.forEach((b, i) => {
        cumulative += c.holdCounts[i];
        out.push(`holdup_hold_seconds_bucket{${app},le="${b}"} ${cumulative}`);
      });
      out.push(`holdup_hold_seconds_bucket{${app},le="+Inf"} ${c.holdCount}`);
      out.push(`holdup_hold_seconds_sum{${app}} ${c.holdSum}`);
      out.push(`holdup_hold_seconds_count{${app}} ${c.holdCount}`);
    }

    metric("holdup_resends_total", "counter", "Requests sent to the app again, by reason: status (a retryOn answer), empty-reply (closed or reset before a response), drain (cut by a drain).");
    for (const [k, n] of this.resends) {
      const [app, reason] = k.split("\0");
      out.push(`holdup_resends_total{app="${esc(app)}",reason="${reason}"} ${n}`);
    }
    metric("holdup_retry_budget_exhausted_total", "counter", "retryOn answers passed on at once because the app's retry budget was spent.");
    for (const [app, n] of this.budgetSpent) out.push(`holdup_retry_budget_exhausted_total{app="${esc(app)}"} ${n}`);

    const perUpstream = (name: string, type: string, help: string, value: (u: Snapshot["upstreams"][number]) => number) => {
      metric(name, type, help);
      for (const a of apps) {
        for (const u of a.state.current.upstreams) out.push(`${name}{app="${esc(a.name)}",upstream="${esc(u.url)}"} ${value(u)}`);
      }
    };
    perUpstream("holdup_upstream_attempts_total", "counter", "Connection attempts to each upstream: forwarded requests and probes.", (u) => u.attempts);
    perUpstream("holdup_upstream_failures_total", "counter", "Attempts that failed to reach each upstream.", (u) => u.failures);
    perUpstream("holdup_upstream_up", "gauge", "1 when the upstream is reachable.", (u) => (u.status === "up" ? 1 : 0));
    perUpstream("holdup_upstream_in_flight", "gauge", "Requests sent to the upstream and awaiting its response head.", (u) => u.inFlight);

    renderWebSockets(apps, metric, out);

    metric("holdup_reloads_total", "counter", "Config reloads, by result.");
    out.push(`holdup_reloads_total{result="ok"} ${this.reloadsOk}`);
    out.push(`holdup_reloads_total{result="failed"} ${this.reloadsFailed}`);
    metric("holdup_deploys_total", "counter", "Deploys (POST /deploy), by result.");
    out.push(`holdup_deploys_total{result="ok"} ${this.deploysOk}`);
    out.push(`holdup_deploys_total{result="failed"} ${this.deploysFailed}`);
    metric("holdup_config_version", "gauge", "The version of the config in force; 1 at start, +1 each reload or deploy.");
    out.push(`holdup_config_version ${configVersion}`);
    if (fleet) {
      metric("holdup_state_connected", "gauge", "1 while the shared state engine (--state) is reachable.");
      out.push(`holdup_state_connected ${fleet.connected ? 1 : 0}`);
      metric("holdup_state_version", "gauge", "Shared operations applied by this instance.");
      out.push(`holdup_state_version ${fleet.version}`);
    }
    metric("holdup_paused", "gauge", "1 while the app is paused or stopped.");
    for (const a of apps) out.push(`holdup_paused{app="${esc(a.name)}"} ${a.state.current.mode === "running" ? 0 : 1}`);
    if (this.build) {
      metric("holdup_build_info", "gauge", "Always 1; the labels say which holdup and runtime serve.");
      out.push(`holdup_build_info{version="${esc(this.build.version)}",runtime="${esc(this.build.runtime)}"} 1`);
    }
    const run = this.runApp?.();
    if (run) {
      metric("holdup_app_restarts_total", "counter", "Restarts of the app holdup runs (-- COMMAND), by result.");
      out.push(`holdup_app_restarts_total{result="ok"} ${run.restarts}`);
      out.push(`holdup_app_restarts_total{result="failed"} ${run.failedRestarts}`);
      metric("holdup_app_instance", "gauge", "The number of the app's serving instance (#1 first, +1 each start); 0 while none serves.");
      out.push(`holdup_app_instance ${run.instance ?? 0}`);
    }
    return out.join("\n") + "\n";
  }
}

function renderWebSockets(apps: AppView[], metric: (n: string, t: string, h: string) => void, out: string[]): void {
  const each = (name: string, type: string, help: string, lines: (ws: WsRegistry, app: string, a: AppView) => string[]) => {
    metric(name, type, help);
    for (const a of apps) out.push(...lines(a.state.websockets, `app="${esc(a.name)}"`, a));
  };
  each("holdup_websockets_open", "gauge", "WebSockets open now, by upstream (a removed upstream while its WebSockets drain).", (ws, app, a) => {
    const open = new Map(ws.byUpstream().map(([u, n]) => [u.url, n]));
    for (const u of a.state.current.upstreams) if (!open.has(u.url)) open.set(u.url, 0);
    return [...open].map(([url, n]) => `holdup_websockets_open{${app},upstream="${esc(url)}"} ${n}`);
  });
  each("holdup_websockets_draining", "gauge", "WebSockets whose upstream was removed, waiting for drainTimeout.", (ws, app) => [`holdup_websockets_draining{${app}} ${ws.draining}`]);
  each("holdup_websockets_opened_total", "counter", "WebSockets opened through holdup.", (ws, app) => [`holdup_websockets_opened_total{${app}} ${ws.opened}`]);
  each("holdup_websocket_bytes_total", "counter", "Bytes relayed through WebSockets, by direction.", (ws, app) => [
    `holdup_websocket_bytes_total{${app},direction="to_upstream"} ${ws.bytesToUpstream}`,
    `holdup_websocket_bytes_total{${app},direction="to_client"} ${ws.bytesToClient}`,
  ]);
  each("holdup_websocket_messages_total", "counter", "Messages relayed through WebSockets that have closed, by direction.", (ws, app) => [
    `holdup_websocket_messages_total{${app},direction="to_upstream"} ${ws.messagesToUpstream}`,
    `holdup_websocket_messages_total{${app},direction="to_client"} ${ws.messagesToClient}`,
  ]);
  each("holdup_websocket_closes_total", "counter", "WebSockets closed, by close code (1006: dropped without a Close frame).", (ws, app) =>
    [...ws.closes].sort((x, y) => x[0] - y[0]).map(([code, n]) => `holdup_websocket_closes_total{${app},code="${code}"} ${n}`));
}

function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
