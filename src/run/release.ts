/**
 * The release step (config `run.release`, `--release CMD`): a command run
 * before each new app instance — a schema migration, a cache warm-up — with
 * the app's cwd and env. A string runs with `sh -c`, an array as argv. Its
 * output is relayed line by line as `[release] …`. It runs in a process group
 * of its own so that holdup's shutdown stops it and what it forked.
 */
import { spawn } from "node:child_process";
import process from "node:process";
import type { RunConfig } from "../config/schema.ts";
import { formatExit } from "./instance.ts";
import { describeExit } from "./wrapper.ts";

export interface ReleaseRun {
  /** null when it exited 0, else why it failed. */
  done: Promise<string | null>;
  /** Stops it (SIGTERM to its group, SIGKILL after stopTimeout). */
  kill(): void;
}

export function runRelease(run: RunConfig, line: (stream: "stdout" | "stderr", line: string) => void): ReleaseRun {
  const release = run.release!;
  const [program, args] = typeof release === "string" ? ["sh", ["-c", release]] : [release[0], release.slice(1)];
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("HOLDUP_")) env[k] = v;
  Object.assign(env, run.env);
  const child = spawn(program, args, { cwd: run.cwd ?? undefined, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  for (const name of ["stdout", "stderr"] as const) {
    let buf = "";
    const s = child[name]!;
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        line(name, buf.slice(0, i).replace(/\r$/, ""));
        buf = buf.slice(i + 1);
      }
    });
    s.on("end", () => {
      if (buf) line(name, buf);
      buf = "";
    });
  }
  let finished = false;
  const done = new Promise<string | null>((resolve) => {
    child.once("error", (e) => {
      finished = true;
      resolve(formatExit({ code: null, signal: null, error: (e as Error).message }));
    });
    child.once("exit", (code, signal) => {
      finished = true;
      const exit = signal ? { code: null, signal } : describeExit(code);
      resolve(exit.code === 0 ? null : formatExit(exit));
    });
  });
  const signal = (sig: NodeJS.Signals) => {
    if (finished || !child.pid) return;
    try {
      process.kill(-child.pid, sig);
    } catch {
      try {
        child.kill(sig);
      } catch { /* gone */ }
    }
  };
  return {
    done,
    kill() {
      signal("SIGTERM");
      const t = setTimeout(() => signal("SIGKILL"), run.stopTimeout);
      void done.then(() => clearTimeout(t));
    },
  };
}
