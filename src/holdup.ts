/** Assembles one holdup: state, metrics, operator control and the two Hono apps. Used by both entries. */
import { adminApp } from "./admin/api.ts";
import { proxyHandler } from "./http/handler.ts";
import type { Effective, Layer } from "./config/layers.ts";
import { Control } from "./control/control.ts";
import { EventHub } from "./admin/events.ts";
import { Logger } from "./observe/log.ts";
import { Metrics } from "./observe/metrics.ts";
import type { PageSet } from "./http/pages.ts";
import type { Runtime } from "./runtime/types.ts";
import { Apps } from "./apps/apps.ts";
import { wsUpgradeHandler } from "./ws/upgrade.ts";
import pkg from "../package.json" with { type: "json" };

export const VERSION: string = pkg.version;

export interface HoldupOptions {
  runtime: Runtime;
  effective: Effective;
  base: { defaults: Layer; configPath: string | null; overrides: Layer | null };
  /** See AdminDeps.tokenRequired. */
  adminTokenRequired?: boolean;
  /** See AdminDeps.checkHost. */
  adminCheckHost?: boolean;
}

export function createHoldup(o: HoldupOptions) {
  const log = new Logger(o.effective.config.log, (t) => o.runtime.writeStderr(t), o.runtime.stderrIsTTY());
  const metrics = new Metrics();
  /** Set by main.ts when holdup runs the app: health checks marked this upstream down (see run/supervisor.ts). */
  const hooks: { onUnhealthy: ((app: string, url: string, reason: string) => void) | null } = { onUnhealthy: null };
  metrics.build = { version: VERSION, runtime: o.runtime.name };
  const pages: { set: PageSet | null } = { set: null };
  const apps = new Apps(o.effective.config, o.effective.sources, {
    runtime: o.runtime,
    events: (app) => ({
      onUpstreamStatus(u, from, error) {
        if (u.status === "up") {
          log.info("upstream reachable", { app, upstream: u.url, was: from });
          control.fleet?.upstreamReady(app, u.url);
        }
        else if (!u.unhealthy) log.warn("upstream unreachable; holding requests for it", { app, upstream: u.url, error });
      },
      onUpstreamUnhealthy(u, reason) {
        log.warn("upstream unhealthy", { app, upstream: u.url, reason });
        hooks.onUnhealthy?.(app, u.url, reason);
      },
    }),
    // Each app's WebSockets log when they close, and warn through the same log.
    setup(app, state) {
      state.websockets.onWarn = (message, fields) => log.warn(message, fields);
      state.websockets.onEnded = (t) => {
        if (!log.accessEnabled) return;
        log.info("websocket", {
          app,
          path: t.path,
          upstream: t.target.url,
          duration_ms: Math.round(performance.now() - t.opened),
          held_ms: Math.round(t.heldMs),
          bytes_to_upstream: t.up.bytes,
          bytes_to_client: t.down.bytes,
          messages_to_upstream: t.up.messages,
          messages_to_client: t.down.messages,
          close_code: t.code,
          ...(t.reason ? { close_reason: t.reason } : {}),
          closed_by: t.closedBy,
        });
      };
    },
  });
  const control = new Control({
    apps, runtime: o.runtime, log, metrics, effective: o.effective, base: o.base, version: VERSION,
  });
  // The dashboard sees every app together: held requests summed, every app's upstreams.
  const all = {
    get held() {
      return apps.list.reduce((n, a) => n + a.state.held, 0);
    },
    get current() {
      return { upstreams: apps.list.flatMap((a) => a.state.current.upstreams) };
    },
  };
  const events = new EventHub({ control, state: all, metrics, apps });
  log.onEvent = (level, msg, fields) => events.record(level, msg, fields);
  events.start();
  return {
    log,
    events,
    metrics,
    apps,
    pages,
    /** The first app's state (the only one without `apps` in the config). */
    get state() {
      return apps.first.state;
    },
    control,
    hooks,
    proxy: proxyHandler(apps, o.runtime, { log, metrics }, pages),
    upgrade: wsUpgradeHandler({ apps, log, metrics }),
    admin: adminApp({ control, apps, metrics, events, tokenRequired: o.adminTokenRequired, checkHost: o.adminCheckHost }),
  };
}

export type Holdup = ReturnType<typeof createHoldup>;
