/**
 * One instance of the app: a process started through the wrapper (see
 * wrapper.ts) on a loopback port of its own, its output relayed line by line,
 * its readiness checked, and its stop (stopSignal, then SIGKILL).
 *
 * node:child_process is used on both runtimes: Deno and Bun implement it alike
 * for what is needed here (pipes, env, cwd, exit status).
 */
import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import process from "node:process";
import type { Runtime } from "../runtime/types.ts";
import { describeExit, PID_LINE, SHELL_NOTICE, WRAPPER } from "./wrapper.ts";

export interface RunSettings {
  command: string[];
  cwd: string | null;
  env: Record<string, string>;
  stopSignal: string;
  stopTimeout: number;
}

export interface Exit {
  code: number | null;
  signal: string | null;
  /** Set when the process could not be started at all. */
  error?: string;
}

export interface InstanceEvents {
  line(id: number, stream: "stdout" | "stderr", line: string): void;
}

/** A free loopback port: listen on port 0, note the port, close. */
export async function freeLoopbackPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once("error", reject);
    // exclusive: this probe never shares a port (SO_REUSEPORT) with anything, the proxy's own included (holdup
    // binds that one shared, for self-upgrade).
    s.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => resolve());
  });
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export class Instance {
  readonly url: string;
  pid: number | null = null;
  readonly startedAt = Date.now();
  /** Date.now() when it became ready, null before. */
  readyAt: number | null = null;
  /** Set once it has exited. */
  exit: Exit | null = null;
  /** holdup asked it to stop (so its exit is no crash). */
  stopRequested = false;
  readonly exited: Promise<Exit>;
  private child: ChildProcess;

  constructor(readonly id: number, readonly port: number, readonly settings: RunSettings, events: InstanceEvents) {
    this.url = `http://127.0.0.1:${port}`;
    const [program, ...args] = settings.command.map((a) => a.replaceAll("{port}", String(port)));
    const env: Record<string, string> = {};
    // holdup's own variables (HOLDUP_ADMIN_TOKEN, HOLDUP_STATE with its password, …) stay with holdup; run.env can pass them on.
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("HOLDUP_")) env[k] = v;
    Object.assign(env, settings.env, {
      PORT: String(port),
      HOLDUP_STOP_SIGNAL: settings.stopSignal.replace(/^SIG/, ""),
      HOLDUP_STOP_TICKS: String(Math.ceil(settings.stopTimeout / 100)),
    });
    this.child = spawn("sh", ["-c", WRAPPER, "holdup-run", program, ...args], {
      cwd: settings.cwd ?? undefined,
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.exited = new Promise<Exit>((resolve) => {
      const done = (e: Exit) => {
        if (this.exit) return;
        this.exit = e;
        resolve(e);
      };
      this.child.once("error", (e) => done({ code: null, signal: null, error: (e as Error).message }));
      this.child.once("exit", (code, signal) => done(signal ? { code: null, signal } : describeExit(code)));
    });
    this.child.stdin!.on("error", () => {}); // EPIPE once the wrapper is gone
    this.relay(this.child.stdout!, "stdout", events);
    this.relay(this.child.stderr!, "stderr", events);
  }

  get running(): boolean {
    return this.exit === null;
  }

  /**
   * Waits until the app answers: GET healthPath 2xx when set, else its port
   * accepts a connection. Resolves null when ready, else why not (it exited,
   * or `timeoutMs` passed).
   */
  async waitReady(rt: Runtime, healthPath: () => string | null, timeoutMs: number): Promise<string | null> {
    const end = performance.now() + timeoutMs;
    let every = 20;
    for (;;) {
      if (this.exit) return `it exited (${formatExit(this.exit)}) before it was ready`;
      const path = healthPath();
      if (await this.probe(rt, path)) {
        if (this.exit) return `it exited (${formatExit(this.exit)}) before it was ready`;
        this.readyAt = Date.now();
        return null;
      }
      const left = end - performance.now();
      if (left <= 0) {
        return `it was not ready within ${timeoutMs}ms (${path ? `GET ${path} never answered 2xx` : `port ${this.port} never accepted`})`;
      }
      // Poll quickly at first (a fast app is swapped in at once), then every 100 ms.
      await Promise.race([new Promise((r) => setTimeout(r, Math.min(every, left))), this.exited]);
      every = Math.min(every * 2, 100);
    }
  }

  private async probe(rt: Runtime, path: string | null): Promise<boolean> {
    try {
      if (!path) {
        await rt.tcpConnect("127.0.0.1", this.port, 1000);
        return true;
      }
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), 2000);
      try {
        const res = await rt.fetchUpstream(this.url + path, {
          method: "GET",
          headers: new Headers({ "user-agent": "holdup health check" }),
          body: null,
          signal: abort.signal,
          fresh: true,
        });
        await res.body?.cancel();
        return res.status >= 200 && res.status < 300;
      } finally {
        clearTimeout(timer);
      }
    } catch {
      return false;
    }
  }

  /** Sends a signal to the app's process group (through the wrapper). */
  signal(name: string): void {
    if (this.exit || this.child.stdin!.destroyed) return;
    this.child.stdin!.write(`${name.replace(/^SIG/, "")}\n`);
  }

  /** stopSignal, then SIGKILL after stopTimeout; resolves once it has exited. */
  stop(): Promise<Exit> {
    if (!this.stopRequested && !this.exit) {
      this.stopRequested = true;
      this.signal(this.settings.stopSignal);
      const timer = setTimeout(() => this.signal("KILL"), this.settings.stopTimeout);
      void this.exited.then(() => clearTimeout(timer));
    }
    this.stopRequested = true;
    return this.exited;
  }

  private relay(stream: NodeJS.ReadableStream, name: "stdout" | "stderr", events: InstanceEvents): void {
    let buf = "";
    const emit = (line: string) => {
      if (name === "stderr") {
        const m = PID_LINE.exec(line);
        if (m) {
          this.pid = Number(m[1]);
          return;
        }
        if (SHELL_NOTICE.test(line)) return;
      }
      events.line(this.id, name, line);
    };
    stream.setEncoding("utf8");
    stream.on("data", (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        emit(buf.slice(0, i).replace(/\r$/, ""));
        buf = buf.slice(i + 1);
      }
      // A line without an end is passed on once it is long.
      if (buf.length > 16_384) {
        emit(buf);
        buf = "";
      }
    });
    stream.on("end", () => {
      if (buf) emit(buf);
      buf = "";
    });
  }
}

export function formatExit(e: Exit): string {
  if (e.error) return `could not start: ${e.error}`;
  return e.signal ? `killed by ${e.signal}` : `exit code ${e.code}`;
}
