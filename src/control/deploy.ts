/**
 * POST /deploy as a column of named steps, as kamal-proxy's deploy reads:
 * health (the new upstreams answer) → switch (the app moves to them
 * atomically; held and new requests go there) → drain (requests waiting on
 * the old ones finish, at most drainTimeout, then are cut; an idempotent one
 * is resent to the new upstreams). A failed health step changes nothing.
 */
import type { App, Apps } from "../apps/apps.ts";
import { probeOnce, type Upstream } from "../apps/upstream.ts";
import type { Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { Runtime } from "../runtime/types.ts";
import { watchDeploy } from "./rollback.ts";

export const DEFAULT_DEPLOY_TIMEOUT = 30_000;

export interface DeployRequest {
  app: string;
  upstreams: string[];
  healthPath: string | null;
  deployTimeout: number;
  drainTimeout: number;
}

export type DeployResult =
  | {
    ok: true;
    app: string;
    upstreams: string[];
    replaced: string[];
    drained: number;
    cut: number;
    healthyMs: number;
    switchedMs: number;
    /** Wall-clock ms (Date.now()) of the switch: every request that arrives later goes to `upstreams`. */
    switchedAt: number;
    tookMs: number;
  }
  | { ok: false; status: 400 | 404 | 409 | 422 | 502; error: string; upstream?: string; rolledBack?: true };

/** What a deploy needs of holdup; `switchTo` puts the app's new upstreams in force (Control: a reload layer, shared with the fleet). */
export interface DeployHost {
  apps: Apps;
  runtime: Runtime;
  log: Logger;
  metrics: Metrics;
  /** Null once in force, else why the config refused it. */
  switchTo(d: DeployRequest, patch: Record<string, unknown>): Promise<string | null>;
  /** rollbackWindow in force (null: off). */
  rollbackWindow(): number | null;
  /** The new upstreams proved bad within the window: switch the app back to `to`. */
  rollBack(app: App, d: DeployRequest, to: string[], reason: string, switchedAt: number): Promise<DeployResult>;
}

export async function deploy(h: DeployHost, d: DeployRequest): Promise<DeployResult> {
  const app = h.apps.get(d.app);
  if (!app) return { ok: false, status: 404, error: `no app named "${d.app}"; apps: ${h.apps.list.map((a) => a.name).join(", ")}` };
  if (app.deploying) return { ok: false, status: 409, error: `a deploy of ${d.app} is already running (${app.deploying.phase}); try again when it ends` };
  const t0 = performance.now();
  app.deploying = { phase: "health", upstreams: d.upstreams, since: Date.now(), lastError: null };
  try {
    const ready = await health(h, app, d);
    if (ready !== true) return ready;
    const healthyMs = performance.now() - t0;

    app.deploying.phase = "switch";
    const before = app.state.current.upstreams.map((u) => u.url);
    const old = app.state.current.upstreams.filter((u) => !d.upstreams.includes(u.url));
    const refused = await switchOver(h, d);
    if (refused) return refused;
    const switchedMs = performance.now() - t0;
    const switchedAt = Date.now();

    app.deploying.phase = "drain";
    const drain = await drainUpstreams(old, d.drainTimeout);
    const bad = await watch(h, app, d, switchedAt);
    if (bad) return await h.rollBack(app, d, before, bad, switchedAt);
    h.metrics.deploysOk++;
    const result = {
      ok: true as const,
      app: d.app,
      upstreams: d.upstreams,
      replaced: old.map((u) => u.url),
      drained: drain.drained,
      cut: drain.cut,
      healthyMs: Math.round(healthyMs),
      switchedMs: Math.round(switchedMs),
      switchedAt,
      tookMs: Math.round(performance.now() - t0),
    };
    h.log.info("deployed", result);
    return result;
  } finally {
    app.deploying = null;
  }
}

/** Step 1: every new upstream answers within deployTimeout, or nothing changes (422). */
async function health(h: DeployHost, app: App, d: DeployRequest): Promise<true | DeployResult> {
  h.log.info("deploy: waiting for the new upstreams to be healthy", { app: d.app, upstreams: d.upstreams, deployTimeout: d.deployTimeout });
  const ready = await waitHealthy(h.runtime, app, d.upstreams, d.healthPath ?? app.cfg.healthPath, d.deployTimeout);
  if (ready === true) return true;
  h.metrics.deploysFailed++;
  h.log.warn("deploy failed: an upstream never became healthy; nothing changed", { app: d.app, ...ready });
  return { ok: false, status: 422, error: `${ready.upstream} did not become healthy within ${d.deployTimeout}ms: ${ready.error}; nothing changed`, upstream: ready.upstream };
}

/** Step 2: the app moves to the new upstreams in one config swap; they just passed step 1, so held requests go now. */
async function switchOver(h: DeployHost, d: DeployRequest): Promise<DeployResult | null> {
  const patch: Record<string, unknown> = { upstreams: d.upstreams, ...(d.healthPath ? { healthPath: d.healthPath } : {}) };
  const error = await h.switchTo(d, patch); // marks them up in the same turn as the swap
  if (error !== null) {
    h.metrics.deploysFailed++;
    return { ok: false, status: 400, error };
  }
  return null;
}

/** Step 4, with a rollbackWindow: what made the new upstreams bad within it (they exit, or answer 5xx), or null. */
async function watch(h: DeployHost, app: App, d: DeployRequest, switchedAt: number): Promise<string | null> {
  const window = h.rollbackWindow();
  if (window === null || !app.deploying) return null;
  app.deploying.phase = "watch";
  return await watchDeploy(app.state, d.upstreams, Math.max(0, window - (Date.now() - switchedAt)));
}

/**
 * Step 3: waits until no request waits for a response head from `old`, at
 * most `timeout`; then cuts what is left. Counts what finished and what was cut.
 */
export async function drainUpstreams(old: Upstream[], timeout: number): Promise<{ drained: number; cut: number }> {
  const deadline = performance.now() + timeout;
  const before = old.reduce((n, u) => n + u.inFlight, 0);
  while (old.some((u) => u.inFlight > 0) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  let cut = 0;
  for (const u of old) cut += u.cut();
  return { drained: Math.max(0, before - cut), cut };
}

/**
 * Probes each upstream until it answers (GET healthPath 2xx, else a TCP
 * connect), at most `timeout` ms in all. True, or the first that never did.
 * Also the gate of a config-file reload that brings new upstreams.
 */
export async function waitHealthy(
  runtime: Runtime, app: App, urls: string[], healthPath: string | null, timeout: number,
): Promise<true | { upstream: string; error: string }> {
  const deadline = performance.now() + timeout;
  const every = Math.min(app.cfg.tryInterval, 250);
  for (const url of urls) {
    for (;;) {
      const left = deadline - performance.now();
      const error = await probeOnce(runtime, url, healthPath, Math.max(100, Math.min(left, 5000)));
      if (error === null) break;
      if (app.deploying) app.deploying.lastError = `${url}: ${error}`;
      if (performance.now() + every >= deadline) return { upstream: url, error };
      await new Promise((r) => setTimeout(r, every));
    }
  }
  return true;
}
