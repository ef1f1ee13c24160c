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
  exit(code: number): never;
  onSignal(signal: "SIGHUP" | "SIGTERM" | "SIGINT", fn: () => void): void;
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
   * Response bodies of known length up to this many bytes are read whole and
   * written once instead of streamed chunk by chunk. Measured (wrk -c64,
   * nginx origin, interleaved runs): Deno 6 B +33-43% req/s, 64 KiB worse
   * (2.7-4.2k vs 4.4-4.6k); Bun 6 B unchanged, 64 KiB +30% (6.3-7.0k vs 4.8-5.0k).
   */
  readonly wholeBodyMax: number;
  /** Opens and closes one TCP connection; rejects when it cannot. */
  tcpConnect(hostname: string, port: number, timeoutMs: number): Promise<void>;
  /**
   * Why this process may not start programs (Deno without --allow-run), as a
   * sentence naming the flag; null when it may.
   */
  spawnDenied(): string | null;
  /** The client's IP from the second argument a host gives `fetch(req, arg)` (edge entry). */
  clientIPFor(req: Request, arg: unknown): string;
}
