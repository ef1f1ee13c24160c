/**
 * What holdup needs from the runtime it runs on. The adapters in deno.ts and
 * bun.ts are the only files that touch the `Deno` or `Bun` globals.
 */

/** Per-request facts that only the server knows. Passed to Hono as `c.env`. */
export interface Conn {
  /** The client's IP address, "" when unknown. */
  readonly clientIP: string;
  /** Lifts the runtime's idle timeout for this request (Bun cuts a connection idle for 10 s). */
  noIdleTimeout(): void;
}

export type Handler = (req: Request, conn: Conn) => Response | Promise<Response>;

export interface ServeOptions {
  hostname: string;
  port: number;
  handler: Handler;
}

export interface RunningServer {
  hostname: string;
  port: number;
  /** Stops accepting; resolves once in-flight requests have finished. */
  shutdown(): Promise<void>;
}

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
  /**
   * Whether incoming request headers and fetch() response headers may be
   * changed in place (Bun), or must be copied first (Deno: immutable, per spec).
   */
  readonly mutableHeaders: boolean;
  args(): string[];
  env(name: string): string | undefined;
  /** Every HOLDUP_* variable, for the edge entry. */
  envWithPrefix(prefix: string): Record<string, string>;
  stderrIsTTY(): boolean;
  writeStderr(text: string): void;
  writeStdout(text: string): void;
  readTextFile(path: string): Promise<string>;
  exit(code: number): never;
  onSignal(signal: "SIGHUP" | "SIGTERM" | "SIGINT", fn: () => void): void;
  /** Throws an error whose `code` is "EADDRINUSE" when the port is taken. */
  serve(opts: ServeOptions): RunningServer;
  /**
   * fetch() to an upstream that keeps the client's Host header, never follows
   * redirects, and returns the body's bytes as the upstream encoded them where
   * the runtime allows; `decodedBody` tells whether it could not.
   */
  fetchUpstream(url: string, init: UpstreamInit): Promise<Response>;
  /**
   * True when this runtime's fetch() decoded a response body sent with
   * `contentEncoding`, given the Accept-Encoding the request carried.
   */
  decodedBody(contentEncoding: string, acceptEncoding: string | null): boolean;
  /** Opens and closes one TCP connection; rejects when it cannot. */
  tcpConnect(hostname: string, port: number, timeoutMs: number): Promise<void>;
  /** Turns the second argument a host gives `fetch(req, arg)` into a Conn. */
  connFor(req: Request, arg: unknown): Conn;
}
