/**
 * `holdup pause [APP] --during -- CMD` (client.ts): runs CMD here, with
 * holdup's stdin, stdout and stderr, while holdup holds the app's requests.
 * SIGINT and SIGTERM sent to this client are passed on to CMD (and do not end
 * the client first), so the resume that follows CMD always runs.
 */
import { spawn } from "node:child_process";
import os from "node:os";
import process from "node:process";
import type { Runtime } from "../runtime/types.ts";

/** CMD's exit status: its code, 128+N when signal N ended it, 127 when it could not be started. */
export function runDuring(rt: Runtime, command: string[], err: (t: string) => void): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(command[0], command.slice(1), { stdio: "inherit" });
    let done = false;
    const pass = (sig: "SIGINT" | "SIGTERM") => () => {
      if (done) return;
      err(`holdup pause --during: ${sig}: passing it on to ${command[0]}; resuming once it has exited`);
      // By pid: Deno's ChildProcess.kill() makes the exit look like the signal's even when CMD handled it and exited.
      try {
        if (child.pid) process.kill(child.pid, sig);
      } catch { /* already gone */ }
    };
    rt.onSignal("SIGINT", pass("SIGINT"));
    rt.onSignal("SIGTERM", pass("SIGTERM"));
    child.once("error", (e) => {
      if (done) return;
      done = true;
      err(`holdup pause --during: cannot run ${command[0]}: ${(e as Error).message}`);
      resolve(127);
    });
    child.once("exit", (code, signal) => {
      if (done) return;
      done = true;
      const signals = os.constants.signals as Record<string, number>;
      resolve(signal ? 128 + (signals[signal] ?? 0) : code ?? 1);
    });
  });
}
