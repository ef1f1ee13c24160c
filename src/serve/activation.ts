/**
 * Socket activation (systemd `.socket` units, `systemd-socket-activate`): with
 * LISTEN_PID equal to holdup's pid and LISTEN_FDS=1, the proxy serves the
 * listening socket passed as fd 3 instead of binding --listen, so connections
 * queue in the kernel while holdup restarts. The variables are removed once
 * read, so the app holdup runs does not take them for its own.
 *
 * Bun 1.4 cannot: node:http `listen({fd: 3})` silently binds a random port on
 * `::` (and Bun.serve({fd}) port 3000), so holdup refuses there rather than
 * serve the wrong port. On Linux the passed socket's port is read from /proc
 * and checked against the port the listener reports.
 */
import { readFileSync, readlinkSync } from "node:fs";
import process from "node:process";

export const LISTEN_FDS_START = 3;

export type Activation = { fd: number; names: string | null } | { error: string } | null;

/** Reads (and unsets) LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES. */
export function socketActivation(runtime: string): Activation {
  const fds = process.env.LISTEN_FDS, pid = process.env.LISTEN_PID, names = process.env.LISTEN_FDNAMES ?? null;
  if (fds === undefined) return null;
  delete process.env.LISTEN_FDS;
  delete process.env.LISTEN_PID;
  delete process.env.LISTEN_FDNAMES;
  if (pid === undefined || Number(pid) !== process.pid) return null; // meant for another process (as sd_listen_fds)
  const n = Number(fds);
  if (!Number.isInteger(n) || n < 1) return { error: `LISTEN_FDS="${fds}" is not a count of passed sockets` };
  if (n > 1) return { error: `socket activation: ${n} sockets passed (LISTEN_FDS=${n}); holdup serves one, the proxy's, on fd 3: pass one socket` };
  if (runtime === "bun") {
    return { error: "socket activation (LISTEN_FDS) does not work on Bun: its node:http listen({fd}) binds another port instead of the passed socket; run holdup on Deno (or the Deno build) for a .socket unit" };
  }
  return { fd: LISTEN_FDS_START, names };
}

/** The local port of listening socket `fd` from /proc (Linux), or null when it cannot be told. */
export function passedSocketPort(fd: number): number | null {
  try {
    const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
    if (!inode) return null;
    for (const table of ["/proc/self/net/tcp", "/proc/self/net/tcp6"]) {
      for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f[9] === inode) return parseInt(f[1].split(":").pop()!, 16);
      }
    }
  } catch { /* not Linux, or no /proc */ }
  return null;
}
