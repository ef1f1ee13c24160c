/**
 * An app started without {port} in its command must read $PORT itself. When its port still
 * accepts nothing after 5 s, one warning says so, instead of holdup waiting silently for
 * readyTimeout while requests are held.
 */
import type { Runtime } from "../runtime/types.ts";
import type { Instance } from "./instance.ts";

export const PORT_WARNING_MS = 5_000;

export function warnIfPortUnused(rt: Runtime, inst: Instance, command: string[], warn: (message: string, fields: Record<string, unknown>) => void): void {
  if (command.some((a) => a.includes("{port}"))) return;
  const timer = setTimeout(async () => {
    if (!inst.running || inst.readyAt !== null) return;
    try {
      await rt.tcpConnect("127.0.0.1", inst.port, 1000);
      return; // listening (a health path may still say not ready: that is not this warning's business)
    } catch { /* nothing listens */ }
    if (!inst.running) return;
    warn(
      `the app is not listening on its port after ${PORT_WARNING_MS / 1000} s: its command has no {port}, so it must listen on $PORT (here ${inst.port}); put {port} in its arguments or make it read $PORT`,
      { instance: inst.id, port: inst.port },
    );
  }, PORT_WARNING_MS);
  void inst.exited.then(() => clearTimeout(timer));
}
