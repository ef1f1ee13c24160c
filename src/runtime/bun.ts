/// <reference types="npm:bun-types" />
/** The Bun adapter: the only file that touches the `Bun` global. */
import type { Runtime, UpstreamInit } from "./types.ts";

const noop = () => {};
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
    return fetch(url, {
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
    });
  },
  decodedBody: () => false,
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
  clientIPFor: (req, arg) => (arg as BunServer | undefined)?.requestIP?.(req)?.address ?? "",
};
