/**
 * holdup running the app itself (`holdup -- COMMAND…`, config `run`): start,
 * zero-downtime restart (new instance ready → swap → drain → stop the old),
 * or serial (hold → stop the old → release step → start the new), crash
 * recovery with backoff, health-check kills, idle stop, shutdown. While no
 * instance serves, requests are held. See docs/design/run.md.
 */
import type { RunConfig } from "../config/schema.ts";
import type { Control, RestartResult } from "../control/control.ts";
import type { Logger } from "../observe/log.ts";
import type { Runtime } from "../runtime/types.ts";
import type { State } from "../apps/state.ts";
import type { Upstream } from "../apps/upstream.ts";
import { type Exit, formatExit, freeLoopbackPort, Instance } from "./instance.ts";
import { warnIfPortUnused } from "./portcheck.ts";
import { type ReleaseRun, runRelease } from "./release.ts";
import { watchDeploy } from "../control/rollback.ts";

export const BACKOFF_FIRST_MS = 500;
export const BACKOFF_MAX_MS = 30_000;
/** An instance that served this long before crashing resets the backoff. */
export const HEALTHY_MS = 60_000;
/** Triggers that start the app without a release step (the same version coming back). */
const NO_RELEASE = new Set(["crash recovery", "request after idle stop"]);


export interface SupervisorOptions {
  runtime: Runtime;
  log: Logger;
  state: State;
  control: Control;
}

export class Supervisor {
  /** The instance requests go to; null while none serves. */
  current: Instance | null = null;
  restarts = 0;
  failedRestarts = 0;
  /** Instances killed because health checks marked them down. */
  unhealthyKills = 0;
  lastExit: (Exit & { instance: number; at: string }) | null = null;
  lastError: string | null = null;
  /** The last automatic rollback of a restart (rollbackWindow), for /status. */
  rolledBack: { at: string; from: number; to: number; reason: string } | null = null;
  /** The new instance while rollbackWindow watches it: its exit is the watcher's to handle. */
  private watching: Instance | null = null;
  phase: "starting" | "running" | "restarting" | "backoff" | "idle" | "stopping" | "stopped" = "starting";
  private nextId = 1;
  private instances = new Set<Instance>();
  private chain: Promise<unknown> = Promise.resolve();
  private queued: Promise<RestartResult> | null = null;
  private busy = false;
  private backoff = BACKOFF_FIRST_MS;
  private backoffTimer: ReturnType<typeof setTimeout> | null = null;
  private lastActivity = performance.now();
  private idleTimer: ReturnType<typeof setInterval> | null = null;
  private shuttingDown = false;
  /** The "not listening on $PORT" warning is given once (see run/portcheck.ts). */
  private portWarned = false;
  /** The release command while it runs (stopped on shutdown). */
  private releasing: ReleaseRun | null = null;

  constructor(private o: SupervisorOptions) {}

  private get run(): RunConfig {
    return this.o.control.effective.config.run!;
  }

  /** Starts the first instance. Resolves with how it went. */
  start(): Promise<RestartResult> {
    this.armIdleTimer();
    return this.enqueue(() => this.replace("start"));
  }

  /** SIGHUP, POST /restart: a new instance, swapped in once ready. */
  restart(trigger: string): Promise<RestartResult> {
    if (this.shuttingDown) return Promise.resolve({ ok: false, error: "holdup is shutting down" });
    if (this.queued) return this.queued; // joins the restart already waiting its turn
    const p = this.enqueue(() => this.replace(trigger));
    if (this.busy) {
      this.queued = p;
      void p.finally(() => {
        if (this.queued === p) this.queued = null;
      });
    }
    return p;
  }

  /** Called for every proxied request and WebSocket handshake: idle bookkeeping, and a cold start after an idle stop. */
  touch(): void {
    this.lastActivity = performance.now();
    if (this.phase === "idle") {
      this.phase = "starting";
      void this.enqueue(() => this.replace("request after idle stop"));
    }
  }

  /**
   * Health checks marked `url` down: if it is the serving instance, it is hung —
   * killed (SIGKILL, it may not answer a stop signal) and restarted as after a crash.
   */
  unhealthy(url: string, reason: string): void {
    const c = this.current;
    if (!c || c.url !== url || !c.running || c.stopRequested || this.shuttingDown) return;
    this.unhealthyKills++;
    this.o.log.error("app instance unhealthy: killing it (SIGKILL) and starting a new one", { instance: c.id, pid: c.pid, reason });
    c.signal("KILL");
  }

  status(): Record<string, unknown> {
    const c = this.current;
    return {
      phase: this.phase,
      command: this.run.command,
      instance: c?.id ?? null,
      pid: c?.pid ?? null,
      port: c?.port ?? null,
      upstream: c?.url ?? null,
      readySince: c?.readyAt ? new Date(c.readyAt).toISOString() : null,
      restarts: this.restarts,
      failedRestarts: this.failedRestarts,
      unhealthyKills: this.unhealthyKills,
      lastExit: this.lastExit,
      lastError: this.lastError,
      ...(this.rolledBack ? { rolledBack: this.rolledBack } : {}),
      idleStop: this.run.idleStop,
      restartMode: this.run.restart,
      release: this.run.release,
    };
  }

  /** SIGTERM: stop every instance (stopSignal, then SIGKILL after stopTimeout). */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    this.phase = "stopping";
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.releasing?.kill();
    await Promise.all([...this.instances].map((i) => i.stop()));
    this.phase = "stopped";
  }

  private enqueue(fn: () => Promise<RestartResult>): Promise<RestartResult> {
    const run = async () => {
      if (this.shuttingDown) return { ok: false as const, error: "holdup is shutting down" };
      this.busy = true;
      try {
        return await fn();
      } finally {
        this.busy = false;
      }
    };
    const next = this.chain.then(run, run);
    this.chain = next.catch(() => {});
    return next;
  }

  /** Start a new instance, wait until it is ready, swap it in, drain and stop the old one. */
  private async replace(trigger: string): Promise<RestartResult> {
    const t0 = performance.now();
    const run = this.run;
    let old = this.current;
    if (old) this.phase = "restarting";
    if (old && run.restart === "serial") {
      // Hold new requests, let the old instance's requests finish, stop it: never two at once.
      const u = this.upstreamFor(old);
      this.current = null;
      this.o.control.setAppUpstream(null);
      this.o.log.info("serial restart: holding requests while the old instance stops", { trigger, instance: old.id, pid: old.pid });
      await this.retire(old, u);
      old = null;
      if (this.shuttingDown) return { ok: false, error: "holdup is shutting down" };
    }
    let releaseError: string | null = null;
    if (run.release !== null && !NO_RELEASE.has(trigger)) {
      releaseError = await this.release(run, trigger);
      if (this.shuttingDown) return { ok: false, error: "holdup is shutting down" };
      if (releaseError !== null) {
        this.failedRestarts++;
        if (old?.running) {
          const error = `the release command failed (${releaseError}); instance #${old.id} keeps serving`;
          this.lastError = error;
          this.phase = "running";
          this.o.log.error("restart failed: the release command failed; the old instance keeps serving", { trigger, oldInstance: old.id, error: releaseError });
          return { ok: false, error };
        }
        this.o.log.error("the release command failed; starting the app again", { trigger, error: releaseError });
      }
    }
    const inst = await this.spawn(run);
    this.o.log.info("app starting", { trigger, instance: inst.id, port: inst.port, command: run.command });
    if (!this.portWarned) {
      warnIfPortUnused(this.o.runtime, inst, run.command, (message, fields) => {
        if (!this.portWarned) this.o.log.warn(message, fields);
        this.portWarned = true;
      });
    }
    const notReady = await inst.waitReady(this.o.runtime, () => this.o.control.effective.config.healthPath, run.readyTimeout);
    if (this.shuttingDown) {
      await inst.stop();
      return { ok: false, error: "holdup is shutting down" };
    }
    if (notReady) {
      await inst.stop();
      const error = `new instance #${inst.id}: ${notReady}${old?.running ? `; instance #${old.id} keeps serving` : ""}`;
      this.lastError = error;
      if (old?.running) {
        this.failedRestarts++;
        this.phase = "running";
        this.o.log.error("restart failed; the old instance keeps serving", { trigger, instance: inst.id, oldInstance: old.id, error: notReady });
      } else {
        this.o.log.error("app failed to start", { trigger, instance: inst.id, error: notReady });
        if (this.nextId > 2) this.scheduleRecovery(); // the first start's failure is the caller's to handle
      }
      return { ok: false, error };
    }
    // Swap: requests held now, and every new one, go to the new instance.
    const oldUpstream = this.upstreamFor(old);
    this.current = inst;
    this.phase = "running";
    this.lastError = releaseError === null ? null : `the release command failed (${releaseError}); the app was started again as instance #${inst.id}`;
    if (inst.id > 1) this.restarts++;
    this.lastActivity = performance.now();
    this.armIdleTimer();
    this.o.control.setAppUpstream(inst.url);
    const ms = Math.round(performance.now() - t0);
    this.o.log.info("app instance serving", { trigger, instance: inst.id, pid: inst.pid, upstream: inst.url, readyMs: ms });
    const window = this.o.control.effective.config.rollbackWindow;
    if (old?.running && window !== null) return await this.watch(inst, old, oldUpstream, window, trigger, ms);
    if (old) void this.retire(old, oldUpstream);
    // A failed release on a restart fails the restart (POST /restart 502), though the app serves again.
    if (releaseError !== null && trigger !== "start") return { ok: false, error: this.lastError! };
    return { ok: true, instance: inst.id, pid: inst.pid, ms };
  }

  /** Runs run.release to its end; null when it exited 0, else why it failed. */
  private async release(run: RunConfig, trigger: string): Promise<string | null> {
    const t0 = performance.now();
    this.o.log.info("release command starting", { trigger, release: run.release });
    const r = this.releasing = runRelease(run, (stream, line) => this.o.log.release(stream, line));
    const error = await r.done;
    this.releasing = null;
    const ms = Math.round(performance.now() - t0);
    if (error === null) this.o.log.info("release command done", { trigger, ms });
    return error;
  }

  /**
   * rollbackWindow: the old instance is drained but kept while the new one is
   * watched; if the new one exits or answers mostly 5xx, switch back to the old.
   */
  private async watch(inst: Instance, old: Instance, oldUpstream: Upstream | null, window: number, trigger: string, ms: number): Promise<RestartResult> {
    this.watching = inst;
    const bad = await watchDeploy(this.o.state, [inst.url], window, inst.exited.then((e) => `exited (${formatExit(e)})`));
    this.watching = null;
    if (bad && old.running) {
      this.current = old;
      this.o.control.setAppUpstream(old.url);
      this.failedRestarts++;
      this.rolledBack = { at: new Date().toISOString(), from: inst.id, to: old.id, reason: bad };
      this.o.log.warn("rolled back", { trigger, instance: inst.id, to: old.id, reason: bad });
      await inst.stop();
      return { ok: false, error: `rolled back to instance #${old.id}: instance #${inst.id} ${bad}` };
    }
    void this.retire(old, oldUpstream);
    if (!inst.running && this.current === inst) {
      // It died with nothing to go back to: recover as after a crash.
      this.current = null;
      this.o.control.setAppUpstream(null);
      this.scheduleRecovery();
      return { ok: false, error: `instance #${inst.id} ${bad ?? "exited"}` };
    }
    return { ok: true, instance: inst.id, pid: inst.pid, ms };
  }

  private async spawn(run: RunConfig): Promise<Instance> {
    const port = await freeLoopbackPort();
    const inst = new Instance(this.nextId++, port, run, {
      line: (id, stream, line) => this.o.log.app(id, stream, line),
    });
    this.instances.add(inst);
    void inst.exited.then((exit) => this.exited(inst, exit));
    return inst;
  }

  /** Drain the old instance (its in-flight requests finish, ≤ drainTimeout), then stop it. */
  private async retire(old: Instance, u: Upstream | null): Promise<void> {
    const end = performance.now() + this.run.drainTimeout;
    while (u && (u.inFlight > 0 || u.relaying > 0) && performance.now() < end && old.running) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const cut = u ? u.inFlight + u.relaying : 0;
    this.o.log.info("stopping the old app instance", { instance: old.id, pid: old.pid, ...(cut ? { cutRequests: cut } : {}) });
    await old.stop();
  }

  private upstreamFor(inst: Instance | null): Upstream | null {
    if (!inst) return null;
    return this.o.state.current.upstreams.find((u) => u.url === inst.url) ?? null;
  }

  private exited(inst: Instance, exit: Exit): void {
    this.instances.delete(inst);
    this.lastExit = { instance: inst.id, ...exit, at: new Date().toISOString() };
    if (inst.stopRequested) {
      this.o.log.info("app instance stopped", { instance: inst.id, pid: inst.pid, exit: formatExit(exit) });
      return;
    }
    if (inst !== this.current || inst === this.watching) {
      this.o.log.warn("app instance exited", { instance: inst.id, pid: inst.pid, exit: formatExit(exit) });
      return;
    }
    // A crash of the serving instance: hold requests while it comes back.
    this.current = null;
    this.o.control.setAppUpstream(null);
    if (inst.readyAt && Date.now() - inst.readyAt >= HEALTHY_MS) this.backoff = BACKOFF_FIRST_MS;
    this.o.log.error("app exited; holding requests while it restarts", {
      instance: inst.id, pid: inst.pid, exit: formatExit(exit), restartInMs: this.backoff,
    });
    this.scheduleRecovery();
  }

  private scheduleRecovery(): void {
    if (this.shuttingDown || this.backoffTimer) return;
    this.phase = "backoff";
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = null;
      if (this.current?.running) return; // a restart got there first
      void this.enqueue(async () => {
        if (this.current?.running) return { ok: true, instance: this.current.id, pid: this.current.pid, ms: 0 };
        this.phase = "starting";
        return await this.replace("crash recovery");
      });
    }, wait);
  }

  private armIdleTimer(): void {
    const idle = this.run.idleStop;
    if (!idle || this.idleTimer) return;
    this.idleTimer = setInterval(() => this.checkIdle(), Math.max(50, Math.min(idle / 4, 1000)));
  }

  private checkIdle(): void {
    const idle = this.run.idleStop;
    const c = this.current;
    if (!idle || !c || this.busy || this.phase !== "running") return;
    // Open WebSockets and responses still streaming are activity: the idle time counts from their end.
    const u = this.upstreamFor(c);
    if (this.o.state.websockets.size > 0 || (u && (u.inFlight > 0 || u.relaying > 0))) {
      this.lastActivity = performance.now();
      return;
    }
    const last = Math.max(this.lastActivity, this.o.state.websockets.lastEnded);
    if (this.o.state.held > 0 || performance.now() - last < idle) return;
    this.phase = "idle";
    this.current = null;
    this.o.control.setAppUpstream(null);
    this.o.log.info("app idle: stopping it until the next request", { instance: c.id, pid: c.pid, idleStopMs: idle });
    void c.stop();
  }
}
