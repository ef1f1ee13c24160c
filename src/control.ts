/**
 * Operator actions: reload (from the file, or a JSON body merged over the
 * current config), pause, resume, stop, and the status that describes it all.
 * SIGHUP and the admin API both come here.
 */
import { formatListen } from "./config/address.ts";
import { type Effective, fileLayer, type Layer, type LayerError, resolve, toJSON } from "./config/layers.ts";
import type { Config } from "./config/schema.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { Runtime } from "./runtime/types.ts";
import type { State } from "./state.ts";

export interface ControlOptions {
  state: State;
  runtime: Runtime;
  log: Logger;
  metrics: Metrics;
  effective: Effective;
  /** The layers a reload from the file starts from: defaults, then file (re-read), then flags. */
  base: { defaults: Layer; configPath: string | null; overrides: Layer | null };
  version: string;
}

export type ReloadResult =
  | { ok: true; notes: string[] }
  | { ok: false; status: 400 | 409; errors: LayerError[] };

export class Control {
  effective: Effective;
  /** Called with each config a reload put in force (the listeners' limits follow it). */
  onApplied: ((config: Config) => void) | null = null;
  private started = Date.now();
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
    return this.inOrder(() => this.fromFile(trigger));
  }

  private async fromFile(trigger: string): Promise<ReloadResult> {
    const { defaults, configPath, overrides } = this.o.base;
    if (!configPath) {
      const errors = [{ where: trigger, field: "(config)", problem: "there is no config file to re-read; start holdup with -c FILE, or POST a JSON body to /reload" }];
      this.o.log.warn("reload refused", { trigger, reason: errors[0].problem });
      return { ok: false, status: 409, errors };
    }
    const file = await fileLayer(configPath);
    if ("errors" in file) return this.rejected(trigger, file.errors);
    return this.apply(trigger, [defaults, file.layer, ...(overrides ? [overrides] : [])]);
  }

  /** POST /reload with a JSON body: the operator's latest word, over whatever is in force. */
  reloadWithBody(trigger: string, body: unknown): Promise<ReloadResult> {
    return this.inOrder(() =>
      this.apply(trigger, [...this.effective.layers, { source: "reload", label: "reload body", raw: body as Layer["raw"] }])
    );
  }

  pause(): void {
    if (this.o.state.current.mode === "paused") return;
    this.o.state.setMode("paused");
    this.o.log.info("paused: new requests are held until resume or their deadline");
  }

  resume(): void {
    const from = this.o.state.current.mode;
    if (from === "running") return;
    const held = this.o.state.held;
    this.o.state.setMode("running");
    this.o.log.info(`resumed from ${from}`, { released: held });
  }

  stop(message: string): void {
    this.o.state.setMode("stopped", message);
    this.o.log.info("stopped: answering every request 503 until resume", { message });
  }

  status(): Record<string, unknown> {
    const s = this.o.state.current;
    return {
      holdup: this.o.version,
      runtime: `${this.o.runtime.name} ${this.o.runtime.version}`,
      uptimeSeconds: Math.round((Date.now() - this.started) / 1000),
      configVersion: s.version,
      mode: s.mode,
      paused: s.mode === "paused",
      stopped: s.mode === "stopped",
      ...(s.mode === "stopped" ? { stopMessage: s.stopMessage } : {}),
      held: this.o.state.held,
      websockets: this.websockets(),
      config: toJSON(s.config),
      sources: s.sources,
      configFile: this.o.base.configPath,
      upstreams: s.upstreams.map((u) => ({
        url: u.url,
        reachable: u.status === "up",
        status: u.status,
        lastError: u.lastError,
        inFlight: u.inFlight,
        attempts: u.attempts,
        failures: u.failures,
        websockets: this.o.state.websockets.countFor(u),
      })),
    };
  }

  /** Open WebSockets: in all, draining, and on upstreams a reload removed. */
  private websockets(): Record<string, unknown> {
    const ws = this.o.state.websockets;
    const current = new Set(this.o.state.current.upstreams);
    const removed = ws.byUpstream().filter(([u]) => !current.has(u)).map(([u, n]) => ({ url: u.url, open: n }));
    return { open: ws.size, draining: ws.draining, ...(removed.length ? { removedUpstreams: removed } : {}) };
  }

  private apply(trigger: string, layers: Layer[]): ReloadResult {
    const r = resolve(layers);
    if ("errors" in r) return this.rejected(trigger, r.errors);
    const next = r.effective;
    const running = this.o.state.current.config;
    const notes = keepRestartOnly(next.config, running);
    this.effective = next;
    this.o.log.format = next.config.log;
    const snap = this.o.state.applyConfig(next);
    this.onApplied?.(next.config);
    this.o.metrics.reloadsOk++;
    this.o.log.info("reloaded", {
      trigger,
      configVersion: snap.version,
      upstreams: next.config.upstreams,
      released: this.o.state.held,
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

/** listen and admin.listen change only on restart: keep the running ones, and say so. */
function keepRestartOnly(next: Config, running: Config): string[] {
  const notes: string[] = [];
  const fmt = (a: Config["listen"] | null) => (a ? formatListen(a) : "off");
  if (fmt(next.listen) !== fmt(running.listen)) {
    notes.push(`listen ${fmt(next.listen)} takes effect on restart; still serving ${fmt(running.listen)}`);
  }
  if (fmt(next.admin.listen) !== fmt(running.admin.listen)) {
    notes.push(`admin.listen ${fmt(next.admin.listen)} takes effect on restart; admin API still on ${fmt(running.admin.listen)}`);
  }
  next.listen = running.listen;
  next.admin.listen = running.admin.listen;
  return notes;
}
