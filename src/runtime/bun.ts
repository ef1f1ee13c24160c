/// <reference types="npm:bun-types" />
/** The Bun adapter: the only file that touches the `Bun` global. */
import { addExitHook, runExitHooks } from "./exit.ts";
import type { Runtime, UpstreamInit, WsHandlers, WsPeer } from "./types.ts";
import { Gate } from "../util/gate.ts";

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
type BunSocket = Bun.ServerWebSocket<WsHandlers>;

function peerOf(ws: BunSocket): WsPeer {
  return {
    // send() returns the bytes sent, -1 when queued, 0 when dropped (past backpressureLimit: the edge's
    // handlers set none, so never) — and 0 for an empty message that was sent.
    send: (data) => ws.send(data) !== 0 || (typeof data === "string" ? data.length : data.byteLength) === 0,
    close: (code, reason) => ws.close(code, reason),
    get bufferedAmount() {
      return ws.getBufferedAmount();
    },
    terminate: () => ws.terminate(),
  };
}

/**
 * The `websocket` handlers Bun's auto-serve reads from the edge entry's
 * default export: each accepted socket carries its own WsHandlers as `data`.
 * No backpressureLimit (Bun's default, 16 MiB, silently drops what is sent
 * past it): the relay caps what it queues itself (wsMaxBuffered → 1009).
 * idleTimeout stays Bun's (120 s, with pings a live client answers).
 */
const edgeWebSocket = {
  open(ws: BunSocket) {
    ws.data.open(peerOf(ws));
  },
  message(ws: BunSocket, message: string | Uint8Array) {
    ws.data.message(message);
  },
  close(ws: BunSocket, code: number, reason: string) {
    ws.data.close(code, reason);
  },
  drain: noop,
  backpressureLimit: 0,
  closeOnBackpressureLimit: false,
};

export const bunRuntime: Runtime = {
  name: "bun",
  wholeBodyMax: 64 * 1024,
  acceptStallsOnEmfile: false,
  bindShared(bind) {
    // Bun's node:http and node:net call the global Bun.serve / Bun.listen from listen(), synchronously, and
    // drop `reusePort` outside a cluster worker: add it to those calls (measured: two processes then share the port).
    const { serve, listen } = Bun;
    const bun = Bun as unknown as { serve: typeof serve; listen: typeof listen };
    // deno-lint-ignore no-explicit-any
    const shared = <F extends (...a: any[]) => unknown>(f: F) => ((o: object, ...rest: unknown[]) => f.call(Bun, { ...o, reusePort: true }, ...rest)) as unknown as F;
    bun.serve = shared(serve);
    bun.listen = shared(listen);
    try {
      return bind();
    } finally {
      bun.serve = serve;
      bun.listen = listen;
    }
  },
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
  exit(code) {
    runExitHooks();
    return process.exit(code);
  },
  onExit: addExitHook,
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
    // Linux names a replaced executable "PATH (deleted)" (/proc/self/exe): a self-upgrade runs the new file at PATH.
    const exe = process.execPath.replace(/ \(deleted\)$/, "");
    return [exe, [...process.execArgv, ...(compiled ? [] : [main]), ...process.argv.slice(2)]];
  },
  openKv: () =>
    Promise.reject(new Error("Deno KV (state kv) exists only on Deno: Bun has no Deno KV. On Bun share state through Redis: HOLDUP_STATE=redis://host:6379")),
  workerEnv: (index) => ({ NODE_UNIQUE_ID: String(index + 1) }),
  clientIPFor: (req, arg) => (arg as BunServer | undefined)?.requestIP?.(req)?.address ?? "",
  acceptWebSocket(req, arg, protocol, handlers) {
    // Bun's auto-serve passes its server as fetch's second argument.
    const server = arg as BunServer | undefined;
    if (typeof server?.upgrade !== "function") throw new Error("no Bun server to upgrade on (fetch's second argument)");
    const ok = server.upgrade(req, { data: handlers, headers: protocol ? { "Sec-WebSocket-Protocol": protocol } : undefined });
    if (!ok) throw new Error("Bun did not upgrade the request");
    return undefined;
  },
  edgeWebSocket,
};
