/// <reference types="npm:bun-types" />
/** The Bun adapter: the only file that touches the `Bun` global. */
import type { Runtime, UpstreamInit } from "./types.ts";
import { Gate } from "../gate.ts";

const noop = () => {};

/**
 * At most `limit` upstream fetches waiting for their response head at once;
 * a slot frees when the head arrives, so a long streamed body holds none.
 * Bun's fetch() pools 64 upstream connections per process (a compile-time
 * constant): past 64 in flight it opens and closes extra connections,
 * leaving thousands in TIME_WAIT. Measured (wrk -c256, 6 B, nginx origin):
 * a bare passthrough went from 8.4k to 16.0k req/s with such a cap, holdup
 * from 7.7k to 11.7k. A request that gives up while queued leaves the queue.
 */
const inFlight = new Gate(64);

/** Runs `fn` holding one of the gate's slots; the slot frees when its promise settles (the response head). */
async function gated<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
  await inFlight.acquire(signal);
  try {
    return await fn();
  } finally {
    inFlight.release();
  }
}

type BunServer = ReturnType<typeof Bun.serve>;

export const bunRuntime: Runtime = {
  name: "bun",
  wholeBodyMax: 64 * 1024,
  acceptStallsOnEmfile: false,
  get version() {
    return Bun.version;
  },
  args: () => process.argv.slice(2),
  env: (name) => process.env[name],
  envWithPrefix(prefix) {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (k.startsWith(prefix) && v !== undefined) out[k] = v;
    return out;
  },
  stderrIsTTY: () => Boolean(process.stderr.isTTY),
  writeStderr(text) {
    process.stderr.write(text);
  },
  writeStdout(text) {
    process.stdout.write(text);
  },
  exit: (code) => process.exit(code),
  onSignal(signal, fn) {
    process.on(signal, fn);
  },
  fetchUpstream(url, init: UpstreamInit) {
    return gated(init.signal, () => fetch(url, {
      method: init.method,
      headers: init.headers,
      body: init.body,
      signal: init.signal,
      redirect: "manual",
      // Pass the upstream's encoded bytes through untouched.
      decompress: false,
      keepalive: !init.fresh,
      // @ts-ignore: duplex is needed for stream bodies
      duplex: "half",
    }));
  },
  tcpConnect(hostname, port, timeoutMs) {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`connect to ${hostname}:${port} timed out`)), timeoutMs);
      Bun.connect({
        hostname,
        port,
        socket: {
          open(socket) {
            clearTimeout(timer);
            socket.end();
            resolve();
          },
          data: noop,
          connectError(_socket, error) {
            clearTimeout(timer);
            reject(error);
          },
        },
      }).catch((error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  },
  spawnDenied: () => null,
  selfCommand() {
    // A compiled binary (bun build --compile) runs its embedded entry from /$bunfs/: re-exec the binary alone.
    const main = process.argv[1] ?? "";
    const compiled = main.startsWith("/$bunfs/") || /^[A-Z]:[\\/]~BUN[\\/]/.test(main);
    return [process.execPath, [...process.execArgv, ...(compiled ? [] : [main]), ...process.argv.slice(2)]];
  },
  openKv: () =>
    Promise.reject(new Error("Deno KV (state kv) exists only on Deno: Bun has no Deno KV. On Bun share state through Redis: HOLDUP_STATE=redis://host:6379")),
  workerEnv: (index) => ({ NODE_UNIQUE_ID: String(index + 1) }),
  clientIPFor: (req, arg) => (arg as BunServer | undefined)?.requestIP?.(req)?.address ?? "",
};
