/** The Deno adapter: the only file that touches the `Deno` global. */
import { nodeFetch } from "./node-client.ts";
import { addExitHook, runExitHooks } from "./exit.ts";
import type { KvLike, Runtime, WsPeer } from "./types.ts";

const encoder = new TextEncoder();

/**
 * Deno 2.9's Deno.serve aborts request.signal on successful responses too
 * ("legacy abort"), and warns once when a request whose signal was read
 * completes. holdup reads request.signal only while a request is held and
 * detaches before answering, so that abort never reaches it: the warning is
 * noise in a JSON log. (`--unstable-no-legacy-abort` / deno.json "unstable"
 * avoids it too, but `deno run dist/proxy.js` has neither.)
 */
let quieted = false;
function quietLegacyAbortWarning(): void {
  if (quieted) return;
  quieted = true;
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === "string" && args[0].startsWith("Deno.serve: request.signal aborts on successful")) return;
    warn(...args);
  };
}

export const denoRuntime: Runtime = {
  name: "deno",
  wholeBodyMax: 16 * 1024,
  acceptStallsOnEmfile: true,
  bindShared: (bind) => bind(),
  get version() {
    return Deno.version.deno;
  },
  args: () => Deno.args,
  env: (name) => Deno.env.get(name),
  envWithPrefix(prefix) {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(Deno.env.toObject())) if (k.startsWith(prefix)) out[k] = v;
    return out;
  },
  stderrIsTTY: () => Deno.stderr.isTerminal(),
  writeStderr(text) {
    writeAll(Deno.stderr, encoder.encode(text));
  },
  writeStdout(text) {
    writeAll(Deno.stdout, encoder.encode(text));
  },
  exit(code) {
    runExitHooks();
    return Deno.exit(code);
  },
  onExit: addExitHook,
  onSignal(signal, fn) {
    Deno.addSignalListener(signal, fn);
  },
  // node:http, not fetch(): see node-client.ts (raw encoded bytes, and faster behind the listener).
  fetchUpstream: nodeFetch,
  async tcpConnect(hostname, port, timeoutMs) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      (await Deno.connect({ hostname, port, signal: abort.signal })).close();
    } finally {
      clearTimeout(timer);
    }
  },
  spawnDenied() {
    // The app is started through /bin/sh (see run/wrapper.ts).
    if (Deno.permissions.querySync({ name: "run", command: "sh" }).state === "granted") return null;
    return "running an app needs Deno's --allow-run permission: deno run --allow-net --allow-read --allow-env --allow-run …";
  },
  selfCommand() {
    const granted = (name: "net" | "read" | "env" | "run" | "write" | "sys" | "ffi") =>
      Deno.permissions.querySync({ name }).state === "granted";
    if (Deno.permissions.querySync({ name: "run", command: Deno.execPath() }).state !== "granted") {
      return "--workers needs Deno's --allow-run permission (the parent starts its workers): deno run --allow-net --allow-read --allow-env --allow-run …";
    }
    if (!granted("net") || !granted("read") || !granted("env")) {
      return "--workers passes this process's permissions to its workers, and can pass only whole ones: run with --allow-net --allow-read --allow-env --allow-run (without =LIST)";
    }
    const flags = (["net", "read", "env", "run", "write", "sys", "ffi"] as const).filter(granted).map((n) => `--allow-${n}`);
    // Linux names a replaced executable "PATH (deleted)": a self-upgrade runs the new file at PATH.
    return [Deno.execPath().replace(/ \(deleted\)$/, ""), ["run", ...flags, Deno.mainModule, ...Deno.args]];
  },
  workerEnv: () => ({}),
  async openKv(path) {
    // deno-lint-ignore no-explicit-any
    const open = (Deno as any).openKv as ((path?: string) => Promise<KvLike>) | undefined;
    if (typeof open !== "function") {
      throw new Error("Deno KV needs Deno's --unstable-kv flag: deno serve --unstable-kv --parallel … (or set it in deno.json \"unstable\": [\"kv\"])");
    }
    // Isolates of `deno serve --parallel` open the same file at once: SQLite may answer "database is locked"
    // to all but one for a moment (seen under load); try again for up to 2 s before giving up.
    for (let wait = 25;; wait *= 2) {
      try {
        return await open(path ?? undefined);
      } catch (e) {
        if (!/locked|busy/i.test(String((e as Error).message)) || wait > 1000) throw e;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  },
  clientIPFor(_req, arg) {
    quietLegacyAbortWarning();
    return (arg as { remoteAddr?: { hostname?: string } } | undefined)?.remoteAddr?.hostname ?? "";
  },
  acceptWebSocket(req, _arg, protocol, h) {
    // Throws a TypeError when the client offered its protocols as "a,b" (Deno splits only on ", ").
    const { socket, response } = Deno.upgradeWebSocket(req, { protocol: protocol || undefined, idleTimeout: 0 });
    socket.binaryType = "arraybuffer";
    const peer: WsPeer = {
      send(data) {
        socket.send(data as string | ArrayBuffer);
        return true;
      },
      close: (code, reason) => socket.close(code, reason),
      get bufferedAmount() {
        return socket.bufferedAmount;
      },
      // Deno's WebSocket has no abort: a plain close is the most it offers.
      terminate() {
        try {
          socket.close();
        } catch { /* already closed */ }
      },
    };
    socket.onopen = () => h.open(peer);
    socket.onmessage = (e) => h.message(e.data);
    socket.onclose = (e) => h.close(e.code, e.reason);
    socket.onerror = () => {};
    return response;
  },
  edgeWebSocket: undefined,
};

function writeAll(w: { writeSync(p: Uint8Array): number }, bytes: Uint8Array) {
  let off = 0;
  while (off < bytes.length) off += w.writeSync(bytes.subarray(off));
}
