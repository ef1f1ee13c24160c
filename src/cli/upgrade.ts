/**
 * Self-upgrade (SIGUSR2, POST /upgrade, `holdup upgrade`): the old holdup
 * starts a new one from the same executable and arguments (read from disk
 * again), hands it the listening ports, stops accepting, keeps its in-flight
 * and held requests, follows the new one's modes and upstreams until they are
 * answered, then exits. The two talk over the new one's stdin and stdout, one
 * JSON object a line:
 *
 *   new → old  {"t":"ready"}     the app (if any) serves and the proxy port is bound
 *                                too (SO_REUSEPORT, Runtime.bindShared); the new one now
 *                                binds the rest, retrying each port until the old one has
 *                                closed it
 *   old → new  {"t":"released"}  the old one stopped accepting and closed admin,
 *                                metrics and redirect listeners
 *   new → old  {"t":"serving"}   every listener is bound: the old one closes its
 *                                connections as their answers go out
 *   new → old  {"t":"state"}     its apps' modes and upstreams, on every change
 *
 * Order, measurements and what a failure leaves: docs/design/upgrade.md.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import process from "node:process";
import type { Mode } from "../apps/state.ts";
import type { Apps } from "../apps/apps.ts";
import type { Control, UpgradeResult } from "../control/control.ts";
import type { Layer } from "../config/layers.ts";
import type { Logger } from "../observe/log.ts";
import type { Runtime } from "../runtime/types.ts";
import type { Listener } from "../serve/listener.ts";
import { eachLine } from "../util/lines.ts";

/** Set in the new holdup's environment (the old one's pid); removed at once so the app does not inherit it. */
export const UPGRADE_ENV = "HOLDUP_UPGRADE_FROM";
/** What the new holdup takes over from the old one (JSON, a Carried). */
export const CARRIED_ENV = "HOLDUP_UPGRADE_STATE";
export interface Carried {
  /** The addresses the old holdup is bound to (a port 0 in the arguments is one port by now). */
  ports: { listen: string; admin: string | null; metrics: string | null; redirect: string | null };
  /** Its reload bodies and deploys (the config file is read again; flags are the same). */
  layers: Layer[];
  /** Its apps' modes: a paused holdup's successor starts paused. */
  apps: AppView[];
}
/** How long the new holdup has to bind what the old one released. */
const SERVING_WITHIN_MS = 10_000;
/** How often the new holdup looks for a change to pass on (only while the old one lives). */
const FOLLOW_EVERY_MS = 25;

/** What the old holdup follows of each of the new one's apps. */
export interface AppView {
  name: string;
  mode: Mode;
  message: string;
  upstreams: string[];
}

export function viewOf(apps: Apps): AppView[] {
  return apps.list.map((a) => ({
    name: a.name,
    mode: a.state.current.mode,
    message: a.state.current.stopMessage,
    upstreams: a.state.current.upstreams.map((u) => u.url),
  }));
}

/**
 * In the old holdup: take on the new one's modes and (unless holdup runs the
 * app, whose own instance serves what this one holds) its upstreams.
 */
export async function follow(control: Control, apps: Apps, runsApp: boolean, views: AppView[]): Promise<void> {
  const explicit = control.effective.layers.some((l) => l.raw.apps);
  for (const v of views) {
    const a = apps.get(v.name);
    if (!a) continue;
    // Upstreams first: a reload and a resume seen in one report must release held requests to the new upstream.
    if (!runsApp && v.upstreams.join() !== a.state.current.upstreams.map((u) => u.url).join()) {
      const body = explicit ? { apps: [{ name: v.name, upstreams: v.upstreams }] } : { upstreams: v.upstreams };
      await control.reloadWithBody("upgrade (following the new holdup)", body);
    }
    const now = a.state.current;
    if (v.mode !== now.mode || (v.mode === "stopped" && v.message !== now.stopMessage)) {
      if (v.mode === "paused") control.pause([a]);
      else if (v.mode === "running") control.resume([a]);
      else control.stop(v.message, [a]);
    }
  }
}

/** What the old holdup does at each step (cli/main.ts wires it to its listeners, control and app). */
export interface Handover {
  /**
   * Close admin, metrics and redirect listeners; stop accepting on the proxy,
   * whose connections are closed first (after their next answer) while it
   * still accepts (handOver).
   */
  release(): Promise<void>;
  /** Close every connection as its answer goes out (Connection: close); release() began it for the proxy. */
  retire(): void;
  /** The new holdup's apps changed (or are first reported); reports are applied one after another. */
  follow(apps: AppView[]): Promise<void>;
  /** Resolves once every open proxy connection is answered and closed (bounded by the caller). */
  drained(): Promise<void>;
  /** Requests held now. */
  held(): number;
  /** Stop the app (if any), flush, exit 0. */
  exit(): Promise<never>;
}

/** The old holdup's side. */
export class Upgrader {
  private running: Promise<UpgradeResult> | null = null;
  /** The pid that took over; set once the handover began (no second upgrade from here). */
  private successor: number | null = null;

  constructor(private o: {
    rt: Runtime;
    log: Logger;
    /** Why this holdup cannot upgrade itself (socket activation…); null when it can. */
    refused: string | null;
    /** How long the new holdup may take to report "ready" (its app's readyTimeout and more). */
    readyWithinMs: number;
    /** Where this holdup listens now (the new one binds the same addresses), its runtime changes and modes. */
    carried: () => Carried;
    handover: Handover;
  }) {}

  start(trigger: string): Promise<UpgradeResult> {
    if (this.o.refused) return Promise.resolve({ ok: false, error: this.o.refused, refused: true });
    if (this.successor !== null) return Promise.resolve({ ok: false, error: `this holdup already handed over to pid ${this.successor} and is draining; upgrade that one`, refused: true });
    return this.running ??= this.run(trigger).finally(() => this.running = null);
  }

  private async run(trigger: string): Promise<UpgradeResult> {
    const { rt, log, handover } = this.o;
    const self = rt.selfCommand();
    if (typeof self === "string") return this.failed(trigger, self.replace("--workers", "an upgrade"));
    let child: ChildProcess;
    try {
      child = spawn(self[0], self[1], {
        env: { ...process.env as Record<string, string>, [UPGRADE_ENV]: String(process.pid), [CARRIED_ENV]: JSON.stringify(this.o.carried()) },
        stdio: ["pipe", "pipe", "inherit"],
      });
    } catch (e) {
      return this.failed(trigger, `could not start a new holdup: ${(e as Error).message ?? e}`);
    }
    child.stdin!.on("error", () => {});
    if (child.pid === undefined) {
      const [e] = await new Promise<[Error]>((r) => child.once("error", (e) => r([e])));
      return this.failed(trigger, `could not start a new holdup (${self[0]}): ${e.message}`);
    }
    log.info(`upgrade: starting new holdup pid ${child.pid}`, { trigger, command: [self[0], ...self[1]].join(" ") });
    const lines = lineReader(child);
    const ready = await lines.next("ready", this.o.readyWithinMs);
    if (ready !== true) return this.failed(trigger, ready, child);
    log.info("upgrade: new holdup serving; handing over", { pid: child.pid });
    if (migrateReqOff()) {
      log.warn("upgrade: net.ipv4.tcp_migrate_req is 0, so a connection the kernel has queued on this holdup's listener as it closes is reset (measured: 0-4 of ~2,500 new connections in 8 upgrades); `sysctl -w net.ipv4.tcp_migrate_req=1` moves them to the new holdup");
    }
    this.successor = child.pid!;
    // From here on (the new holdup may report a change while this one still retires its connections).
    let following = Promise.resolve();
    lines.onState = (apps) => {
      following = following.then(() => handover.follow(apps)).catch((e) => log.warn("upgrade: could not follow the new holdup", { error: String(e) }));
    };
    await handover.release();
    child.stdin!.write(`${JSON.stringify({ t: "released" })}\n`);
    const serving = await lines.next("serving", SERVING_WITHIN_MS);
    handover.retire();
    if (serving !== true) {
      // The ports are released and the new holdup could not take them: nothing left to do here but say so.
      log.error("upgrade: the new holdup did not take over the released ports; this holdup stopped accepting and drains", { pid: child.pid, error: serving });
    }
    // Answer the trigger first, then drain in the background.
    void this.drain(child);
    return serving === true ? { ok: true, pid: child.pid! } : { ok: false, error: serving };
  }

  private async drain(child: ChildProcess): Promise<never> {
    const { log, handover } = this.o;
    const held = handover.held();
    await handover.drained();
    log.info(`upgrade: old holdup exiting (answered ${held} held)`, { successor: child.pid });
    // The new holdup is not ours to stop: let it outlive us.
    child.stdout?.destroy();
    child.unref();
    return await handover.exit();
  }

  private failed(trigger: string, error: string, child?: ChildProcess): UpgradeResult {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      setTimeout(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"), 5000).unref?.();
    }
    this.o.log.error("upgrade failed; this holdup keeps serving", { trigger, error, ...(child?.pid ? { pid: child.pid } : {}) });
    return { ok: false, error };
  }
}

/** Linux ≥ 5.14 can move a closing listener's queued connections to another in its SO_REUSEPORT group; off by default. */
function migrateReqOff(): boolean {
  try {
    return readFileSync("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").trim() === "0";
  } catch {
    return false; // not Linux, or not readable: nothing to say
  }
}

/** The new holdup's stdout, read a line at a time: waits for one message, passes state on. */
function lineReader(child: ChildProcess) {
  let want: { t: string; done: (r: true | string) => void } | null = null;
  let exited: string | null = null;
  /** Messages that came before anyone waited for them. */
  const seen = new Set<string>();
  const r = {
    onState: null as ((apps: AppView[]) => void) | null,
    next(t: string, ms: number): Promise<true | string> {
      if (seen.has(t)) return Promise.resolve(true);
      if (exited) return Promise.resolve(exited);
      return new Promise((resolve) => {
        const timer = setTimeout(() => finish(`the new holdup did not report ${t === "ready" ? "serving" : "every listener bound"} within ${ms / 1000}s`), ms);
        const finish = (v: true | string) => {
          clearTimeout(timer);
          want = null;
          resolve(v);
        };
        want = { t, done: finish };
      });
    },
  };
  eachLine(child.stdout!, (line) => {
    let m: { t?: string; apps?: AppView[] };
    try {
      m = JSON.parse(line);
    } catch {
      return; // not ours
    }
    if (m.t === "state" && Array.isArray(m.apps)) r.onState?.(m.apps);
    else if (want && m.t === want.t) want.done(true);
    else if (m.t) seen.add(m.t);
  });
  child.on("exit", (code, signal) => {
    exited = `the new holdup exited (${signal ? `signal ${signal}` : `code ${code}`}) before taking over; see its error above`;
    want?.done(exited);
  });
  child.on("error", (e) => {
    exited = `could not start a new holdup: ${e.message}`;
    want?.done(exited);
  });
  return r;
}

/** The new holdup's side: present when UPGRADE_ENV was set (and now removed from the environment). */
export class Successor {
  private oldGone = false;

  private constructor(readonly from: number, readonly carried: Carried) {
    // The old holdup's end of stdin closes when it exits: stop writing to it then.
    const gone = () => this.oldGone = true;
    process.stdin.on("data", () => {});
    process.stdin.on("end", gone);
    process.stdin.on("error", gone);
    process.stdout.on("error", gone);
  }

  static fromEnv(rt: Runtime): Successor | null {
    const from = rt.env(UPGRADE_ENV);
    if (from === undefined) return null;
    const carried = JSON.parse(rt.env(CARRIED_ENV) ?? "{}") as Carried;
    delete process.env[UPGRADE_ENV];
    delete process.env[CARRIED_ENV];
    return new Successor(Number(from), carried);
  }

  private send(m: Record<string, unknown>): void {
    if (this.oldGone) return;
    try {
      process.stdout.write(`${JSON.stringify(m)}\n`);
    } catch {
      this.oldGone = true;
    }
  }

  ready(): void {
    this.send({ t: "ready", pid: process.pid });
  }

  /** Every listener is bound: say so, then pass on every change of the apps while the old holdup lives. */
  serving(view: () => AppView[]): void {
    this.send({ t: "serving", pid: process.pid });
    let last = "";
    const tick = () => {
      if (this.oldGone) return clearInterval(timer);
      const apps = view();
      const text = JSON.stringify(apps);
      if (text === last) return;
      last = text;
      this.send({ t: "state", apps });
    };
    const timer = setInterval(tick, FOLLOW_EVERY_MS);
    tick();
  }
}

/** A port that outlives this holdup: how long its listener waits for its connections to close before it stops accepting. */
const RETIRE_BEFORE_CLOSE_MS = 2000;

/**
 * Lets go of a port the next holdup serves too (a self-upgrade's shared port, a
 * socket systemd passed): the connections are retired while it still accepts
 * (each closes after an answer that says so, or idle for 1 s); the listener
 * closes once it had none for a moment (at most RETIRE_BEFORE_CLOSE_MS).
 * Closing it first would reset what its accept queue holds, and Deno closes
 * each keep-alive connection after its answer without saying so (measured).
 * `closed`: it stopped accepting; `drained`: every connection is closed too.
 */
export function handOver(l: Listener): { closed: Promise<void>; drained: Promise<void> } {
  const drained = l.shutdown({ keepIdle: 1000, keepAccepting: true });
  const closed = whenIdle(() => l.connections === 0, RETIRE_BEFORE_CLOSE_MS).then(() => l.stopAccepting());
  return { closed, drained };
}

/**
 * Resolves once `ok()` held for 10 checks in a row (5 ms apart), or after `ms`:
 * the old holdup's last connections are closed and no new one came for a while
 * (each new one is told to close, and comes back to either holdup).
 */
async function whenIdle(ok: () => boolean, ms: number): Promise<void> {
  for (let quiet = 0, end = Date.now() + ms; quiet < 10 && Date.now() < end;) {
    await new Promise((r) => setTimeout(r, 5));
    quiet = ok() ? quiet + 1 : 0;
  }
}
