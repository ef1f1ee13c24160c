/**
 * `--workers N`: N serving processes on one port (SO_REUSEPORT), kept in step
 * through the shared state (the --state engine, else the parent's hub.ts).
 * The parent serves nothing: it restarts workers that exit, passes SIGHUP and
 * SIGTERM on, and a worker whose parent is gone shuts down by itself.
 * See docs/design/fleet.md.
 */
import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import process from "node:process";
import { formatListen, type ListenAddress } from "../config/address.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../observe/log.ts";
import type { Runtime } from "../runtime/types.ts";
import { eachLine } from "../util/lines.ts";
import { Hub } from "./hub.ts";
import { redact } from "./fleet.ts";

/** What a worker is told by its parent (environment variables). */
export interface WorkerRole {
  index: number;
  of: number;
  /** The port every worker shares, and the admin listener ("off" except worker 0). */
  listen: string;
  admin: string;
  /** The parent's channel, when no --state is configured. */
  state: string | null;
  parent: number;
  /** This parent's workers, among others sharing one engine. */
  group: string;
}

export const READY = "holdup-worker-ready";

export function workerRole(rt: Runtime): WorkerRole | null {
  const i = rt.env("HOLDUP_WORKER");
  if (i === undefined) return null;
  return {
    index: Number(i),
    of: Number(rt.env("HOLDUP_WORKERS") ?? 1),
    listen: rt.env("HOLDUP_WORKER_LISTEN") ?? "",
    admin: rt.env("HOLDUP_WORKER_ADMIN") ?? "off",
    state: rt.env("HOLDUP_WORKER_STATE") || null,
    parent: Number(rt.env("HOLDUP_WORKER_PARENT") ?? 0),
    group: rt.env("HOLDUP_WORKER_GROUP") ?? "0",
  };
}

/** In a worker: shut down when the parent is gone (its end of our stdin closes). */
export function followParent(): void {
  const gone = () => {
    try {
      process.kill(process.pid, "SIGTERM");
    } catch { /* exiting anyway */ }
  };
  process.stdin.on("data", () => {});
  process.stdin.on("end", gone);
  process.stdin.on("error", gone);
}

/** In a worker: the admin API re-read the file here; have the parent pass SIGHUP to the other workers. */
export function askParentToReload(role: WorkerRole): void {
  if (role.parent && process.ppid === role.parent) process.kill(role.parent, "SIGUSR2");
}

/**
 * Binds the address once, without SO_REUSEPORT, and lets it go: a port 0
 * becomes a fixed one, so every worker (and a restarted one) binds the same
 * port, and a port another process holds is reported here. The workers bind
 * with SO_REUSEPORT, which would otherwise let them share a port with another
 * holdup --workers of the same user without a word.
 */
export async function pin(a: ListenAddress, what: string, flag: string): Promise<ListenAddress | string> {
  const s = net.createServer();
  const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    s.once("error", resolve);
    s.listen({ port: a.port, host: a.hostname || undefined, exclusive: true }, () => resolve(null));
  });
  if (err) {
    const why = err.code === "EADDRINUSE" ? `address already in use (choose another with ${flag})` : err.message;
    return `cannot listen on ${formatListen(a)} for the ${what}: ${why}`;
  }
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return { ...a, port };
}

interface Worker {
  index: number;
  child: ChildProcess | null;
  startedAt: number;
  failures: number;
  ready: boolean;
}

export async function runParent(o: {
  rt: Runtime;
  config: Config;
  log: Logger;
  version: string;
  configPath: string | null;
  fail(code: number, message: string): never;
}): Promise<void> {
  const { rt, config, log } = o;
  const self = rt.selfCommand();
  if (typeof self === "string") o.fail(1, `holdup: ${self}`);
  const n = config.workers;
  const listen = await pin(config.listen, "proxy", "--listen");
  if (typeof listen === "string") o.fail(1, `holdup: ${listen}`);
  const admin = config.admin.listen ? await pin(config.admin.listen, "admin API", "--admin") : null;
  if (typeof admin === "string") o.fail(1, `holdup: ${admin}`);
  let hub: Hub | null = null;
  let channel: string | null = null;
  if (!config.state) {
    hub = new Hub();
    channel = await hub.start();
  }

  const group = crypto.randomUUID().slice(0, 8);
  let stopping = false;
  const workers: Worker[] = Array.from({ length: n }, (_, index) => ({ index, child: null, startedAt: 0, failures: 0, ready: false }));
  let allReady!: () => void;
  const started = new Promise<void>((r) => allReady = r);
  /** Every worker served once: from then on, a worker that exits is restarted. */
  let serving = false;

  const start = (w: Worker) => {
    if (stopping) return;
    w.ready = false;
    w.startedAt = Date.now();
    const env: Record<string, string> = {
      ...process.env as Record<string, string>,
      ...rt.workerEnv(w.index),
      HOLDUP_WORKER: String(w.index),
      HOLDUP_WORKERS: String(n),
      HOLDUP_WORKER_LISTEN: formatListen(listen),
      HOLDUP_WORKER_ADMIN: w.index === 0 && admin ? formatListen(admin) : "off",
      HOLDUP_WORKER_STATE: channel ?? "",
      HOLDUP_WORKER_PARENT: String(process.pid),
      HOLDUP_WORKER_GROUP: group,
    };
    let child: ChildProcess;
    try {
      child = w.child = spawn(self[0], self[1], { env, stdio: ["pipe", "pipe", "inherit"] });
    } catch (e) {
      // Out of descriptors or processes (EMFILE, EAGAIN): the parent and the other workers stay; try again later.
      return void retry(w, String((e as Error).message ?? e));
    }
    child.stdin!.on("error", () => {});
    eachLine(child.stdout!, (line) => {
      if (!line.startsWith(READY)) return;
      w.ready = true;
      if (w.failures) log.info("worker serving again", { worker: w.index, pid: child.pid });
      if (workers.every((x) => x.ready)) {
        serving = true;
        allReady();
      }
    });
    child.on("error", (e) => {
      log.error("worker could not start", { worker: w.index, error: String(e.message) });
      // No process came of it (no pid): no 'close' will follow to restart it.
      if (child.pid === undefined && w.child === child) {
        w.child = null;
        retry(w, String(e.message));
      }
    });
    child.on("close", (code, signal) => {
      if (w.child !== child) return;
      w.child = null;
      w.ready = false;
      if (stopping) return;
      if (!serving) {
        // Never served (a port in use, a bad file): restarting would not help. Its error is above.
        o.log.error("a worker exited before holdup started serving; stopping", { worker: w.index, code, signal });
        void shutdown("start-up failure", typeof code === "number" && code > 0 ? code : 1);
        return;
      }
      const lived = Date.now() - w.startedAt;
      w.failures = lived < 10_000 ? w.failures + 1 : 1;
      const wait = Math.min(250 * 2 ** (w.failures - 1), 30_000);
      log.warn("worker exited; restarting it", { worker: w.index, pid: child.pid, code, signal, restartInMs: wait });
      setTimeout(() => start(w), wait);
    });
  };
  /** A spawn that failed: again after a backoff (as for a worker that exits), unless holdup is stopping. */
  const retry = (w: Worker, error: string) => {
    if (stopping) return;
    if (!serving) {
      o.log.error("a worker could not be started; stopping", { worker: w.index, error });
      setTimeout(() => void shutdown("start-up failure", 1), 0); // later: shutdown is declared below
      return;
    }
    w.failures++;
    const wait = Math.min(250 * 2 ** (w.failures - 1), 30_000);
    log.error("a worker could not be started; trying again", { worker: w.index, error, retryInMs: wait });
    setTimeout(() => start(w), wait);
  };
  for (const w of workers) start(w);

  const pids = () => workers.map((w) => w.child?.pid ?? null);
  const each = (sig: NodeJS.Signals, skip = -1) => {
    for (const w of workers) {
      if (w.index === skip || !w.child?.pid) continue;
      try {
        process.kill(w.child.pid, sig);
      } catch { /* already gone: it is restarted */ }
    }
  };

  rt.onSignal("SIGHUP", () => {
    log.info("SIGHUP: passed to every worker (each re-reads the config file)", { workers: pids() });
    each("SIGHUP");
  });
  // Worker 0's admin API re-read the file (POST /reload without a body): the others do too.
  rt.onSignal("SIGUSR2", () => each("SIGHUP", 0));

  const shutdown = async (signal: string, exitCode = 0) => {
    if (stopping && exitCode) return;
    if (stopping) {
      log.warn(`${signal} again: killing the workers and exiting now`);
      each("SIGKILL");
      log.flush();
      rt.exit(1);
    }
    stopping = true;
    if (!exitCode) log.info("shutting down: passing SIGTERM to every worker", { signal, workers: pids() });
    const exits = workers.map((w) => w.child && w.child.exitCode === null && w.child.signalCode === null
      ? new Promise<void>((r) => w.child!.once("close", () => r()))
      : Promise.resolve());
    each("SIGTERM");
    // The workers' own grace is 30 s; past it (and 5 s more) they are killed.
    const timer = setTimeout(() => each("SIGKILL"), 35_000);
    await Promise.all(exits);
    clearTimeout(timer);
    hub?.close();
    if (!exitCode) log.info("stopped");
    log.flush();
    rt.exit(exitCode);
  };
  rt.onSignal("SIGTERM", () => void shutdown("SIGTERM"));
  rt.onSignal("SIGINT", () => void shutdown("SIGINT"));

  await started;
  if (stopping) return;
  log.info("holdup started", {
    version: o.version,
    runtime: `${rt.name} ${rt.version}`,
    listen: formatListen(listen),
    admin: admin ? formatListen(admin) : "off",
    workers: n,
    pids: pids(),
    state: config.state ? redact(config.state) : "the parent's channel (local to this machine)",
    ...(o.configPath ? { config: o.configPath } : {}),
  });
}
