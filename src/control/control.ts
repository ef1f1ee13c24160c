/**
 * Operator actions: reload (from the file, or a JSON body merged over the
 * current config), pause, resume, stop, and the status that describes it all.
 * SIGHUP and the admin API both come here.
 */
import { type Effective, fileLayer, type Layer, type LayerError, resolve, toJSON } from "../config/layers.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { Runtime } from "../runtime/types.ts";
import type { App, Apps } from "../apps/apps.ts";
import { DEFAULT_DEPLOY_TIMEOUT, deploy, type DeployRequest, type DeployResult, waitHealthy } from "./deploy.ts";
import type { Sharing } from "./sharing.ts";
import { bodyErrors, keepRestartOnly, upstreamRefused } from "../config/guard.ts";
import { compactLayers } from "../config/merge.ts";
import { drainUpstreams } from "./deploy.ts";
import { rollbackLayer } from "./rollback.ts";
import { describeApp, describeUpstream, modeOf, websocketsOf } from "./status.ts";

export { DEFAULT_DEPLOY_TIMEOUT, type DeployRequest, type DeployResult };

export interface ControlOptions {
  apps: Apps;
  runtime: Runtime;
  log: Logger;
  metrics: Metrics;
  effective: Effective;
  /** The layers a reload from the file starts from: defaults, then file (re-read), then flags. */
  base: { defaults: Layer; configPath: string | null; overrides: Layer | null };
  version: string;
}

/** What POST /restart and SIGHUP get back when holdup runs the app (see run/supervisor.ts). */
export type RestartResult =
  | { ok: true; instance: number; pid: number | null; ms: number }
  | { ok: false; error: string };

/** What SIGUSR2, POST /upgrade and `holdup upgrade` get back (cli/upgrade.ts). */
export type UpgradeResult = { ok: true; pid: number } | { ok: false; error: string; refused?: true };

export type ReloadResult =
  | { ok: true; notes: string[] }
  | { ok: false; status: 400 | 409; errors: LayerError[] };

export class Control {
  effective: Effective;
  /** Called with each config a reload put in force (the listeners' limits follow it). */
  onApplied: ((config: Config) => void) | null = null;
  /**
   * Runs before a reload is put in force (certificates are read and checked
   * here): errors refuse the whole reload and the old config stays; otherwise
   * its notes are reported and `commit` runs once the new config is in force.
   */
  prepare: ((config: Config, trigger: string) => { errors: LayerError[] } | { notes: string[]; commit(): void }) | null = null;
  /** SIGHUP and an empty POST /reload re-apply the config in force when there is no file (certificates are read again). */
  reloadWithoutFile = false;
  private started = Date.now();
  /** 1 at start, +1 for every reload and deploy put in force. */
  configVersion = 1;
  /** With --state: changes that are not files travel through it (the Sharing port; fleet/fleet.ts). */
  fleet: Sharing | null = null;
  /** Reload bodies and deploys that came through the fleet: a reload from the file keeps them. */
  private sharedLayers: Layer[] = [];
  /**
   * When holdup runs the app (config `run`): the app's serving instance is the
   * upstream, whatever the layers say; [] while none serves (requests are held).
   */
  private appUpstreams: string[] | null = null;
  /** Set when holdup runs the app: a zero-downtime restart. */
  restartApp: ((trigger: string) => Promise<RestartResult>) | null = null;
  /** Set by the command-line entry: start a new holdup and hand over to it (cli/upgrade.ts). */
  upgrade: ((trigger: string) => Promise<UpgradeResult>) | null = null;
  /** Set when holdup runs the app: its part of GET /status. */
  appStatus: (() => Record<string, unknown>) | null = null;
  connectionStatus: (() => unknown) | null = null; // the proxy listener's connections, for GET /status
  /** Set when holdup serves HTTPS: the certificates in force, for GET /status. */
  certificateStatus: (() => unknown[]) | null = null;
  /** Reloads run one at a time, in the order they arrived: a slow SIGHUP read cannot land after a later POST. */
  private reloads: Promise<unknown> = Promise.resolve();

  constructor(private o: ControlOptions) {
    this.effective = o.effective;
  }

  private inOrder<T>(fn: () => Promise<T> | T): Promise<T> {
    const next = this.reloads.then(fn, fn);
    this.reloads = next.catch(() => {});
    return next;
  }

  /** SIGHUP and an empty POST /reload: defaults + the file as it is now + flags. */
  reloadFromFile(trigger: string): Promise<ReloadResult> {
    if (this.o.base.configPath) this.o.log.info("reloading: reading the config file", { trigger, config: this.o.base.configPath });
    return this.inOrder(() => this.fromFile(trigger));
  }

  private async fromFile(trigger: string): Promise<ReloadResult> {
    const { defaults, configPath, overrides } = this.o.base;
    if (!configPath && this.reloadWithoutFile) return this.apply(trigger, this.effective.layers);
    if (!configPath) {
      const errors = [{ where: trigger, field: "(config)", problem: "there is no config file to re-read; start holdup with -c FILE, or POST a JSON body to /reload" }];
      this.o.log.warn("reload refused", { trigger, reason: errors[0].problem });
      return { ok: false, status: 409, errors };
    }
    const file = await fileLayer(configPath);
    if ("errors" in file) return this.rejected(trigger, file.errors);
    const layers = [defaults, file.layer, ...(overrides ? [overrides] : []), ...this.sharedLayers];
    // A config-file deploy gets the health gate: an app that has a ready upstream now is not
    // switched to new upstreams before they answer (an app with none ready switches at once: its
    // requests are held either way, and wait for the new upstreams instead of the old).
    const r = resolve(layers);
    if ("errors" in r) return this.rejected(trigger, r.errors);
    for (const next of r.effective.config.apps) {
      const app = this.o.apps.get(next.name);
      if (!app || (this.appUpstreams && next === r.effective.config.apps[0])) continue; // the app holdup runs: its instance is the upstream
      const now = app.state.current.upstreams;
      const fresh = next.upstreams.filter((u) => !now.some((o) => o.url === u));
      if (!fresh.length || !now.some((u) => u.status === "up")) continue;
      const ready = await this.waitHealthy(app, fresh, next.healthPath, DEFAULT_DEPLOY_TIMEOUT);
      if (ready !== true) {
        return this.rejected(trigger, [{
          where: `config file ${configPath}`,
          field: `apps.${next.name}.upstreams`,
          problem: `${ready.upstream} did not become healthy within ${DEFAULT_DEPLOY_TIMEOUT / 1000}s (${ready.error}); the old upstreams stay`,
        }]);
      }
    }
    return this.apply(trigger, layers);
  }

  /** See deploy.ts: probes each upstream until it answers, at most `timeout` ms in all. */
  waitHealthy(app: App, urls: string[], healthPath: string | null, timeout: number): Promise<true | { upstream: string; error: string }> {
    return waitHealthy(this.o.runtime, app, urls, healthPath, timeout);
  }

  /** POST /deploy: health → switch → drain (deploy.ts). */
  deploy(d: DeployRequest): Promise<DeployResult> {
    const refused = d.upstreams.map((u) => upstreamRefused(u, this.effective.config.allowUpstreams)).find((p) => p);
    if (refused) return Promise.resolve({ ok: false, status: 400, error: `upstreams: ${refused}` });
    return deploy({
      ...this.o,
      switchTo: (d, patch) => this.switchTo(d, patch),
      rollbackWindow: () => this.effective.config.rollbackWindow,
      rollBack: (app, d, to, reason, switchedAt) => this.rollBack(app, d, to, reason, switchedAt),
    }, d);
  }

  /** A deploy's switch: the app's new upstreams as one more reload layer, put in force in order and shared with the fleet. */
  private async switchTo(d: DeployRequest, patch: Record<string, unknown>): Promise<string | null> {
    const app = d.app;
    const explicitApps = this.effective.layers.some((l) => l.raw.apps);
    const raw = explicitApps ? { apps: [{ name: app, ...patch }] } : patch;
    const layer: Layer = { source: "reload", label: `deploy ${app}`, raw: raw as Layer["raw"] };
    // The new upstreams just answered the health gate: up in the same turn as the swap, so the held requests it wakes go with no probe.
    const applied = await this.inOrder(() => {
      const r = this.apply(`deploy ${app}`, [...this.effective.layers, layer], d);
      if (r.ok) for (const url of d.upstreams) this.o.apps.get(app)?.state.upstreamFor(url)?.markUp();
      return r;
    });
    if (!applied.ok) return applied.errors.map((e) => `${e.field}: ${e.problem}`).join("; ");
    if (this.fleet) {
      // The other instances switch too (their held requests go when this one's ready events reach them).
      this.sharedLayers.push(layer);
      void this.fleet.submit({ kind: "deploy", by: this.fleet.instance, app, raw: layer.raw });
    }
    return null;
  }

  /** rollbackWindow: the deploy's new upstreams proved bad; switch the app back to `to` (held requests wait meanwhile). */
  private async rollBack(app: App, d: DeployRequest, to: string[], reason: string, switchedAt: number): Promise<DeployResult> {
    const bad = app.state.current.upstreams.filter((u) => !to.includes(u.url));
    const layer = rollbackLayer(d.app, to, this.effective.layers.some((l) => l.raw.apps));
    const applied = await this.inOrder(() => this.apply(`rollback ${d.app}`, [...this.effective.layers, layer], d));
    if (applied.ok && this.fleet) {
      this.sharedLayers.push(layer);
      void this.fleet.submit({ kind: "deploy", by: this.fleet.instance, app: d.app, raw: layer.raw });
    }
    this.o.log.warn("rolled back", { app: d.app, from: d.upstreams, to, reason, afterSwitchMs: Date.now() - switchedAt });
    await drainUpstreams(bad, d.drainTimeout);
    this.o.metrics.deploysFailed++;
    app.rolledBack = { at: new Date().toISOString(), from: d.upstreams, to, reason };
    return { ok: false, status: 502, error: `rolled back to ${to.join(", ")}: ${d.upstreams.join(", ")} ${reason}`, rolledBack: true };
  }

  /** The errors a reload with this body would give, without applying it (empty: it would apply). */
  checkBody(body: unknown): LayerError[] {
    const refused = this.refuse(body, "reload body");
    if (refused.length) return refused;
    const r = resolve([...this.effective.layers, { source: "reload", label: "reload body", raw: body as Layer["raw"] }]);
    return "errors" in r ? r.errors : [];
  }

  /**
   * Pause, resume or stop shared by the fleet (applied everywhere in its order):
   * null when there is no fleet (apply it here), else why nothing changed, or "" when done.
   */
  async shareMode(app: string | null, mode: "paused" | "running" | "stopped", message: string): Promise<string | null> {
    if (!this.fleet) return null;
    return await this.fleet.submit({ kind: "mode", by: this.fleet.instance, app, mode, message }) ?? "";
  }

  /** A reload body shared by the fleet: as shareMode; null also when the body is refused (reload here, for its errors). */
  async shareReload(body: unknown): Promise<string | null> {
    if (!this.fleet || this.checkBody(body).length) return null;
    return await this.fleet.submit({ kind: "patch", by: this.fleet.instance, body }) ?? "";
  }

  /** What a reload body or shared operation may not set (config/guard.ts), named. */
  refuse(body: unknown, where: string): LayerError[] {
    const o = { shared: this.fleet !== null, allow: this.effective.config.allowUpstreams };
    return bodyErrors(body, o).map((e) => ({ ...e, where }));
  }

  /**
   * A change from the fleet, applied here in the fleet's order; kept (for a
   * reload from the file) only once in force. `snapshot`: it holds every change before it.
   */
  applyShared(layer: Layer, snapshot = false): Promise<ReloadResult> {
    return this.inOrder(() => {
      const refused = this.refuse(layer.raw, layer.label);
      const r = refused.length ? this.rejected(layer.label, refused) : this.apply(layer.label, [...this.effective.layers, layer]);
      if (r.ok) this.sharedLayers = compactLayers(snapshot ? [layer] : [...this.sharedLayers, layer]);
      return r;
    });
  }

  /** POST /reload with a JSON body: the operator's latest word, over whatever is in force. */
  reloadWithBody(trigger: string, body: unknown): Promise<ReloadResult> {
    const refused = this.refuse(body, "reload body");
    if (refused.length) return Promise.resolve(this.rejected(trigger, refused));
    return this.inOrder(() =>
      this.apply(trigger, [...this.effective.layers, { source: "reload", label: "reload body", raw: body as Layer["raw"] }])
    );
  }

  /** The named app, every app (null), or undefined when there is no such app. */
  select(name: string | null): App[] | undefined {
    if (name === null) return this.o.apps.list;
    const app = this.o.apps.get(name);
    return app ? [app] : undefined;
  }

  /**
   * Makes `url` the only upstream of the first app (null: none, so requests
   * are held), in one swap that wakes every held request. Reloads keep it.
   */
  setAppUpstream(url: string | null): void {
    this.appUpstreams = url ? [url] : [];
    const config = withAppUpstreams(this.effective.config, this.appUpstreams);
    this.effective = { ...this.effective, config };
    this.o.apps.apply(config, this.effective.sources);
  }

  pause(apps: App[] = this.o.apps.list): void {
    for (const app of apps) {
      if (app.state.current.mode === "paused") continue;
      app.state.setMode("paused");
      this.o.log.info("paused: new requests are held until resume or their deadline", { app: app.name });
    }
  }

  resume(apps: App[] = this.o.apps.list): void {
    for (const app of apps) {
      const from = app.state.current.mode;
      if (from === "running") continue;
      const held = app.state.held;
      app.state.setMode("running");
      this.o.log.info(`resumed from ${from}`, { app: app.name, released: held });
    }
  }

  stop(message: string, apps: App[] = this.o.apps.list): void {
    for (const app of apps) {
      app.state.setMode("stopped", message);
      this.o.log.info("stopped: answering every request 503 until resume", { app: app.name, message });
    }
  }

  /**
   * Everything, or one app. The top-level mode, held and upstreams describe
   * all apps together (mode "mixed" when they differ), so a single-app
   * holdup reads as before.
   */
  status(only?: App): Record<string, unknown> {
    const list = only ? [only] : this.o.apps.list;
    const mode = modeOf(list);
    const first = list[0].state.current;
    const stopMessage = list.find((a) => a.state.current.mode === "stopped")?.state.current.stopMessage;
    return {
      holdup: this.o.version,
      runtime: `${this.o.runtime.name} ${this.o.runtime.version}`,
      uptimeSeconds: Math.round((Date.now() - this.started) / 1000),
      configVersion: this.configVersion,
      mode,
      paused: mode === "paused",
      stopped: mode === "stopped",
      ...(stopMessage !== undefined ? { stopMessage } : {}),
      held: list.reduce((n, a) => n + a.state.held, 0),
      websockets: websocketsOf(list),
      ...(this.connectionStatus ? { connections: this.connectionStatus() } : {}),
      config: toJSON(this.effective.config),
      sources: first.sources,
      configFile: this.o.base.configPath,
      ...(this.appStatus ? { app: this.appStatus() } : {}),
      ...(this.fleet ? { state: this.fleet.status() } : {}),
      ...(this.certificateStatus ? { certificates: this.certificateStatus() } : {}),
      upstreams: list.flatMap((a) => a.state.current.upstreams.map((u) => describeUpstream(u, a))),
      apps: list.map(describeApp),
    };
  }

  /** Resolves the layers and puts them in force whole, or refuses them whole (the old config stays). */
  private apply(trigger: string, layers: Layer[], deploy?: { app: string; drainTimeout: number }): ReloadResult {
    const r = resolve(layers);
    if ("errors" in r) return this.rejected(trigger, r.errors);
    const next = r.effective;
    const running = this.effective.config;
    const notes = keepRestartOnly(next.config, running);
    if (this.appUpstreams) next.config = withAppUpstreams(next.config, this.appUpstreams);
    if (running.run && !next.config.run) {
      next.config.run = running.run;
      notes.push("run cannot be removed by a reload; the app keeps running (stop holdup to stop it)");
    } else if (!running.run && next.config.run) {
      next.config.run = null;
      notes.push("run takes effect on restart: holdup was started without an app");
    }
    const prepared = this.prepare?.(next.config, trigger);
    if (prepared && "errors" in prepared) return this.rejected(trigger, prepared.errors);
    if (prepared) notes.push(...prepared.notes);
    this.effective = next;
    prepared?.commit();
    this.o.log.format = next.config.log;
    const released = this.o.apps.list.reduce((n, a) => n + a.state.held, 0);
    const { removed } = this.o.apps.apply(next.config, next.sources, deploy);
    this.configVersion++;
    this.onApplied?.(next.config);
    if (!trigger.startsWith("deploy")) this.o.metrics.reloadsOk++;
    this.o.log.info("reloaded", {
      trigger,
      configVersion: this.configVersion,
      upstreams: next.config.apps.length === 1 ? next.config.apps[0].upstreams : Object.fromEntries(next.config.apps.map((a) => [a.name, a.upstreams])),
      released,
      ...(removed.length ? { removedApps: removed.map((a) => a.name) } : {}),
      ...(notes.length ? { notes } : {}),
    });
    return { ok: true, notes };
  }

  private rejected(trigger: string, errors: LayerError[]): ReloadResult {
    this.o.metrics.reloadsFailed++;
    this.o.log.error("reload rejected; the old config stays", {
      trigger,
      errors: errors.map((e) => `${e.where}: ${e.field}: ${e.problem}`),
    });
    return { ok: false, status: 400, errors };
  }
}

/** The config with `upstreams` as the first app's (the app holdup runs), top-level too. */
function withAppUpstreams(c: Config, upstreams: string[]): Config {
  return { ...c, upstreams, apps: c.apps.map((a, i) => (i === 0 ? { ...a, upstreams } : a)) };
}

