/** How the apps, their upstreams and their WebSockets read in GET /status (Control.status assembles the rest). */
import type { App } from "../apps/apps.ts";
import type { Mode } from "../apps/state.ts";
import type { Upstream } from "../apps/upstream.ts";
import { queuedAt } from "../http/limit.ts";

/** The apps' one mode, or "mixed". */
export function modeOf(apps: App[]): Mode | "mixed" {
  const modes = new Set(apps.map((a) => a.state.current.mode));
  return modes.size === 1 ? [...modes][0] : "mixed";
}

export function describeApp(a: App) {
  const s = a.state.current;
  return {
    name: a.name,
    hosts: a.cfg.hosts,
    pathPrefix: a.cfg.pathPrefix,
    mode: s.mode,
    ...(s.mode === "stopped" ? { stopMessage: s.stopMessage } : {}),
    held: a.state.held,
    upstreams: s.upstreams.map((u) => describeUpstream(u, a)),
    deploying: a.deploying,
    ...(a.rolledBack ? { rolledBack: a.rolledBack } : {}),
  };
}

/** Open and draining WebSockets of these apps; the upstreams a reload removed while some still drain. */
export function websocketsOf(apps: App[]): Record<string, unknown> {
  let open = 0, draining = 0;
  const removed: Array<{ app: string; url: string; open: number }> = [];
  for (const a of apps) {
    const ws = a.state.websockets;
    open += ws.size;
    draining += ws.draining;
    const current = new Set(a.state.current.upstreams);
    for (const [u, n] of ws.byUpstream()) if (!current.has(u)) removed.push({ app: a.name, url: u.url, open: n });
  }
  return { open, draining, ...(removed.length ? { removedUpstreams: removed } : {}) };
}

export function describeUpstream(u: Upstream, app: App) {
  return {
    app: app.name,
    url: u.url,
    reachable: u.status === "up",
    status: u.status,
    lastError: u.lastError,
    inFlight: u.inFlight,
    queued: queuedAt(u),
    attempts: u.attempts,
    failures: u.failures,
    ...(app.cfg.healthPath !== null ? { healthy: !u.unhealthy, healthFailures: u.healthFailures } : {}),
    websockets: app.state.websockets.countFor(u),
  };
}
