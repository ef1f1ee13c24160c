/**
 * The front every request, WebSocket handshake and edge relay passes, written
 * once: route to an app or answer 404, and account for the answer (metrics
 * now, the access-log line once its body has gone).
 */
import type { Apps, Route } from "../apps/apps.ts";
import type { Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";

export interface Observers {
  log: Logger;
  metrics: Metrics;
}

/** No app answers this host: the 404's message (the host made printable). */
export interface NoApp {
  app: null;
  status: 404;
  message: string;
}

export function routeOr404(apps: Apps, host: string | null, target: string): Route | NoApp {
  const route = apps.route(host, target);
  if (route) return route;
  const name = (host ?? "").replace(/[^\x21-\x7e]/g, "?").slice(0, 255);
  return { app: null, status: 404, message: `no app answers host "${name}"` };
}

/** One answer's facts, as metrics and the access log want them. */
export interface Answered {
  /** The app's name ("" when no app answered). */
  app: string;
  method: string;
  path: string;
  status: number;
  heldMs: number;
  /** performance.now() at arrival. */
  start: number;
  /** X-Request-Id (kept or made), for the access log. */
  requestId: string;
}

/** Writes the access-log line once the body has gone: bytes sent (null: not counted), upstream, reason. */
export type AccessLine = (bytes: number | null, upstream: string | null, reason?: string) => void;

/** Counts the answer now; returns the access-log writer, or null when the access log is off. */
export function account(o: Observers, a: Answered): AccessLine | null {
  o.metrics.request(a.status, a.heldMs, a.app);
  if (!o.log.accessEnabled) return null;
  return (bytes, upstream, reason) =>
    o.log.access({
      method: a.method, path: a.path, status: a.status, bytes, durationMs: performance.now() - a.start, heldMs: a.heldMs, upstream, requestId: a.requestId, reason,
    });
}
