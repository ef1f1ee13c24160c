/**
 * Several apps behind one holdup: each has its own upstream state, probes,
 * held requests, mode and deploys; a request goes to the app whose host
 * matches (exact before wildcard before any-host), then the longest path
 * prefix. Without `apps` in the config there is one app, "default", for every
 * host and path, and routing costs one comparison.
 */
import type { Source } from "../config/layers.ts";
import type { AppConfig, Config } from "../config/schema.ts";
import type { Runtime } from "../runtime/types.ts";
import { State, type StateEvents } from "./state.ts";

export class App {
  readonly state: State;
  /** Set while a deploy runs: deploys are serialised per app. */
  deploying: { phase: string; upstreams: string[]; since: number; lastError: string | null } | null = null;
  /** The last automatic rollback (rollbackWindow), for /status. */
  rolledBack: { at: string; from: string[]; to: string[]; reason: string } | null = null;

  constructor(public cfg: AppConfig, top: Config, sources: Record<string, Source>, shared: Shared) {
    this.state = new State({ config: view(top, cfg), sources }, shared.runtime, shared.events(cfg.name));
    shared.setup?.(cfg.name, this.state);
  }

  get name(): string {
    return this.cfg.name;
  }

  /** The app's own health path, answered by holdup while paused (an outer balancer keeps it in rotation). */
  healthWhilePaused(path: string): boolean {
    return this.state.current.mode === "paused" && this.cfg.healthPath !== null && path === this.cfg.healthPath;
  }
}

interface Shared {
  runtime: Runtime;
  events(app: string): StateEvents;
  /** Called once for each app's new State (hooks that need the state itself). */
  setup?(app: string, state: State): void;
}

/** The config an app's State runs on: the top-level config with the app's own keys over it. */
export function view(top: Config, a: AppConfig): Config {
  return {
    ...top,
    upstreams: a.upstreams,
    healthPath: a.healthPath,
    tryDuration: a.tryDuration,
    tryInterval: a.tryInterval,
    responseTimeout: a.responseTimeout,
    maxHeld: a.maxHeld,
    maxBodyBuffer: a.maxBodyBuffer,
    maxBody: a.maxBody,
    retryOn: a.retryOn,
    maxConcurrent: a.maxConcurrent,
    slowStart: a.slowStart,
  };
}

export interface Route {
  app: App;
  /** The target to send upstream (the prefix removed when the app strips it). */
  target: string;
}

export class Apps {
  list: App[] = [];
  private byName = new Map<string, App>();
  /** The one app that takes everything, when that is the whole config. */
  private only: App | null = null;

  constructor(config: Config, sources: Record<string, Source>, private shared: Shared) {
    this.apply(config, sources);
  }

  get(name: string): App | undefined {
    return this.byName.get(name);
  }

  /** The first app: the one top-level admin calls and the old single-app status describe. */
  get first(): App {
    return this.list[0];
  }

  route(host: string | null, target: string): Route | null {
    if (this.only) return { app: this.only, target };
    const name = hostname(host);
    const path = target;
    let best: App | null = null;
    // Tier 1: exact host; tier 2: wildcard; tier 3: any host.
    for (let tier = 1; tier <= 3 && !best; tier++) {
      for (const a of this.list) {
        const hosts = a.cfg.hosts;
        const hit = tier === 1
          ? hosts.includes(name)
          : tier === 2
          ? hosts.some((h) => h.startsWith("*.") && name.endsWith(h.slice(1)) && name.length > h.length - 1)
          : hosts.length === 0;
        if (!hit || !prefixMatches(a.cfg.pathPrefix, path)) continue;
        if (!best || a.cfg.pathPrefix.length > best.cfg.pathPrefix.length) best = a;
      }
    }
    if (!best) return null;
    const p = best.cfg.pathPrefix;
    if (!best.cfg.stripPrefix || !p) return { app: best, target };
    const rest = target.slice(p.length);
    return { app: best, target: rest.startsWith("/") ? rest : `/${rest}` };
  }

  /** Installs a config: existing apps get their new settings (atomically each), new ones start, removed ones end. */
  /** `deploy`: the app a deploy changes, whose replaced WebSockets drain within its drainTimeout. */
  apply(config: Config, sources: Record<string, Source>, deploy?: { app: string; drainTimeout: number }): { removed: App[] } {
    const next: App[] = [];
    const nextByName = new Map<string, App>();
    for (const cfg of config.apps) {
      let a = this.byName.get(cfg.name);
      if (a) {
        a.cfg = cfg;
        a.state.applyConfig({ config: view(config, cfg), sources }, deploy?.app === cfg.name ? deploy.drainTimeout : undefined);
      } else a = new App(cfg, config, sources, this.shared);
      next.push(a);
      nextByName.set(cfg.name, a);
    }
    const removed = this.list.filter((a) => !nextByName.has(a.name));
    for (const a of removed) a.state.retire();
    this.list = next;
    this.byName = nextByName;
    const single = next.length === 1 && next[0].cfg.hosts.length === 0 && next[0].cfg.pathPrefix === "";
    this.only = single ? next[0] : null;
    return { removed };
  }
}

function hostname(host: string | null): string {
  if (!host) return "";
  const h = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.replace(/:\d*$/, "");
  return h.toLowerCase().replace(/\.$/, "");
}

function prefixMatches(prefix: string, target: string): boolean {
  if (!prefix) return true;
  if (!target.startsWith(prefix)) return false;
  const next = target.charCodeAt(prefix.length);
  return Number.isNaN(next) || next === 47 /* / */ || next === 63 /* ? */;
}
