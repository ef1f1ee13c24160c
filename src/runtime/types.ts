/**
 * What holdup needs from the runtime it runs on. The adapters in deno.ts and
 * bun.ts are the only files that touch the `Deno` or `Bun` globals.
 */

export interface UpstreamInit {
  method: string;
  headers: HeadersInit;
  body: BodyInit | null;
  signal: AbortSignal;
  /**
   * Use a connection of its own rather than a pooled keep-alive one. Only then
   * does "connection refused" prove the upstream never saw the request: both
   * runtimes resend a request internally when a pooled connection dies, and may
   * then report the refusal of the resend.
   */
  fresh: boolean;
  /**
   * A held request being released: sent over the runtime's bounded release
   * pool (a few kept-alive connections, requests queued on them) instead of
   * the general pool. Never set with `fresh`.
   */
  released?: boolean;
}

/** The part of Deno KV the edge's shared state uses (fleet/kv.ts). */
export interface KvEntry {
  key: unknown[];
  value: unknown;
  versionstamp: string | null;
}
export interface KvLike {
  get(key: unknown[]): Promise<KvEntry>;
  set(key: unknown[], value: unknown, options?: { expireIn?: number }): Promise<unknown>;
  list(selector: { start: unknown[]; end: unknown[] }): AsyncIterable<KvEntry>;
  atomic(): KvAtomic;
  watch(keys: unknown[][]): AsyncIterable<KvEntry[]>;
  close(): void;
}
export interface KvAtomic {
  check(...checks: Array<{ key: unknown[]; versionstamp: string | null }>): KvAtomic;
  set(key: unknown[], value: unknown): KvAtomic;
  commit(): Promise<{ ok: boolean }>;
}

/** The client's side of a WebSocket the edge entry accepted (acceptWebSocket). */
export interface WsPeer {
  /** False when the runtime dropped the message instead of queueing it. */
  send(data: string | ArrayBuffer | Uint8Array): boolean;
  /** Throws for a code the runtime will not send (see relay.ts). */
  close(code?: number, reason?: string): void;
  /** Bytes queued toward the client, not yet written. */
  readonly bufferedAmount: number;
  /** Drops the connection without a closing handshake (where the runtime can). */
  terminate(): void;
}

/** What an accepted client WebSocket reports to. */
export interface WsHandlers {
  open(peer: WsPeer): void;
  message(data: string | ArrayBuffer | Uint8Array): void;
  /** Closed: the code the client sent (1005: none; 1006, or 0 on Deno: dropped without a Close). */
  close(code: number, reason: string): void;
}

export interface Runtime {
  readonly name: "deno" | "bun";
  readonly version: string;
  args(): string[];
  env(name: string): string | undefined;
  /** Every HOLDUP_* variable, for the edge entry. */
  envWithPrefix(prefix: string): Record<string, string>;
  stderrIsTTY(): boolean;
  writeStderr(text: string): void;
  writeStdout(text: string): void;
  /** Runs the onExit hooks (in order, once), then ends the process with `code`. */
  exit(code: number): never;
  /**
   * `fn` runs when holdup ends through exit() (a shutdown, an upgrade's
   * handover, a failure it reports), just before the process ends (the
   * --pid-file removal). Synchronous; one that throws does not stop the exit.
   */
  onExit(fn: () => void): void;
  onSignal(signal: "SIGHUP" | "SIGTERM" | "SIGINT" | "SIGUSR2", fn: () => void): void;
  /**
   * fetch() to an upstream that keeps the client's Host header, never follows
   * redirects, and returns the body's bytes as the upstream encoded them (never
   * decoded: Bun's fetch() with decompress: false, node:http on Deno).
   */
  fetchUpstream(url: string, init: UpstreamInit): Promise<Response>;
  /**
   * Deno 2.9's node:http accept loop stops for good after an EMFILE; the
   * listener re-arms it on a timer where this is true (see serve/listener.ts).
   */
  readonly acceptStallsOnEmfile: boolean;
  /**
   * Runs `bind` (a node:http or node:net `listen()` call) so that the socket it
   * binds has SO_REUSEPORT, which lets a self-upgrade's new holdup bind the
   * proxy port before the old one closes it (docs/design/upgrade.md). Deno's
   * node:http honours `listen({reusePort})`; Bun 1.4's passes it on to
   * `Bun.serve`/`Bun.listen` only in a node:cluster worker, so the Bun adapter
   * adds it to those calls for the duration of `bind` (they are made in it).
   */
  bindShared<T>(bind: () => T): T;
  /**
   * Response bodies of known length up to this many bytes are read whole and
   * written once instead of streamed chunk by chunk. Measured (wrk -c64,
   * nginx origin, interleaved runs): Deno 6 B +33-43% req/s, 64 KiB worse
   * (2.7-4.2k vs 4.4-4.6k); Bun 6 B unchanged, 64 KiB +30% (6.3-7.0k vs 4.8-5.0k).
   * Deno again with the node-to-node relay (serve/reply.ts relay): 64 KiB gathered
   * and written once cost more CPU than written as it comes (304 → 423 µs/request
   * at -c64, 381 → 415 at -c256, interleaved pairs): Deno stays at 16 KiB.
   */
  readonly wholeBodyMax: number;
  /** Opens and closes one TCP connection; rejects when it cannot. */
  tcpConnect(hostname: string, port: number, timeoutMs: number): Promise<void>;
  /**
   * Why this process may not start programs (Deno without --allow-run), as a
   * sentence naming the flag; null when it may.
   */
  spawnDenied(): string | null;
  /**
   * The command that runs this holdup again with the same entry, runtime
   * flags (Deno's permissions) and arguments: from source, from the bundle
   * and as a compiled binary. For `--workers`; a sentence when it cannot.
   */
  selfCommand(): [string, string[]] | string;
  /**
   * Environment a worker needs to share its listening port with its siblings.
   * Bun 1.4's node:http ignores `reusePort` except in a node:cluster worker,
   * which it recognises by NODE_UNIQUE_ID (measured: EADDRINUSE without it,
   * an even spread with it); Deno's node:http honours `reusePort` as is.
   */
  workerEnv(index: number): Record<string, string>;
  /** Opens Deno KV (the platform's, or the file at `path`); rejects with what to do where there is none. */
  openKv(path: string | null): Promise<KvLike>;
  /** The client's IP from the second argument a host gives `fetch(req, arg)` (edge entry). */
  clientIPFor(req: Request, arg: unknown): string;
  /**
   * Accepts a WebSocket handshake inside a web `fetch(req, arg)` handler (edge
   * entry) with `protocol` ("" for none) as the subprotocol, reporting to
   * `handlers`. Returns the Response to answer with, or undefined where the
   * runtime has answered itself (Bun's server.upgrade); throws when the
   * runtime refuses the request.
   */
  acceptWebSocket(req: Request, arg: unknown, protocol: string, handlers: WsHandlers): Response | undefined;
  /**
   * What the edge entry's default export must carry as `websocket` for the
   * host to dispatch accepted WebSockets (Bun's auto-serve); undefined where
   * nothing is needed (Deno).
   */
  readonly edgeWebSocket: object | undefined;
}
