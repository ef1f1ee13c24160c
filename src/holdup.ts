/** Assembles one holdup: state, metrics, operator control and the two Hono apps. Used by both entries. */
import { adminApp } from "./admin.ts";
import { proxyHandler } from "./app.ts";
import type { Effective, Layer } from "./config/layers.ts";
import { Control } from "./control.ts";
import { EventHub } from "./dashboard/events.ts";
import { Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import type { Runtime } from "./runtime/types.ts";
import { State } from "./state.ts";
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
  const state = new State(o.effective, o.runtime, {
    onUpstreamStatus(u, from, error) {
      if (u.status === "up") log.info("upstream reachable", { upstream: u.url, was: from });
      else log.warn("upstream unreachable; holding requests for it", { upstream: u.url, error });
    },
  });
  const control = new Control({
    state, runtime: o.runtime, log, metrics, effective: o.effective, base: o.base, version: VERSION,
  });
  const events = new EventHub({ control, state, metrics });
  log.onEvent = (level, msg, fields) => events.record(level, msg, fields);
  events.start();
  return {
    log,
    events,
    metrics,
    state,
    control,
    proxy: proxyHandler({ state, runtime: o.runtime, log, metrics }),
    admin: adminApp({ control, state, metrics, events, tokenRequired: o.adminTokenRequired, checkHost: o.adminCheckHost }),
  };
}

export type Holdup = ReturnType<typeof createHoldup>;
