/**
 * The two shapes every listener speaks: an `Incoming` request (what the
 * client sent, already checked for a valid request-target and Host) and a
 * `Reply` (status, a clean header list and a body). The node:http listener
 * (listener.ts) and the web-standard entry (web.ts) each turn their own
 * request type into an Incoming and write a Reply back, so the hold loop never
 * sees the runtime's server.
 */

import type { NodeBody } from "../util/nodebody.ts";

export type HeaderList = [string, string][];

export interface Incoming {
  readonly method: string;
  /** Path and query exactly as the client sent them (origin-form): never rebuilt from Host. */
  readonly target: string;
  /** The listener's real scheme, for X-Forwarded-Proto. */
  readonly scheme: "http" | "https";
  /** The client's IP address, "" when unknown. */
  readonly clientIP: string;
  /** One header (lowercase name); repeated ones joined with ", ". */
  header(name: string): string | null;
  /** Every header as received (lowercase names), in order. */
  forEachHeader(fn: (name: string, value: string) => void): void;
  /** The request body; null when there is none. Read it at most once. */
  readonly body: ReadableStream<Uint8Array> | null;
  /** Content-Length when the client sent one. */
  readonly contentLength: number | null;
  /**
   * Aborts when the client goes away before its reply was sent (an HTTP/2
   * stream reset included). Created on first read: a request answered without
   * an upstream attempt does not pay for it.
   */
  readonly signal: AbortSignal;
  /** Reads the body whole (admin API): null when it exceeds `max` bytes. */
  readAll(max: number): Promise<Uint8Array | null>;
}

export interface Reply {
  status: number;
  headers: HeaderList;
  /** NodeBody: an upstream body still in node:http's hands (Deno), relayed node to node. */
  body: ReadableStream<Uint8Array> | NodeBody | Uint8Array | string | null;
  /**
   * The declared length of a streamed body (the upstream's Content-Length):
   * a stream that ends short or runs long is cut, never ended cleanly.
   */
  length?: number | null;
  /** Called once the body has been sent (or abandoned): bytes written and whether it completed. */
  onDone?: (bytes: number, complete: boolean) => void;
}

export type IncomingHandler = (req: Incoming) => Reply | Promise<Reply>;
