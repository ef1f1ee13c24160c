/**
 * The bound on pipelined HTTP/1.1 requests, per connection. node:http parses
 * every request a client pipelines and hands them over at once; the listener
 * answers them one after another (see QUEUE in listener.ts), so without a
 * bound one connection sending 60,000 GETs (1.7 MB) held 60,000 requests in
 * memory (+190 MB). Like nginx, which reads the next request only once the
 * one before is answered, holdup stops reading from a connection once
 * PIPELINE_DEPTH requests wait on it, and reads again when half of them are
 * answered.
 *
 * Stopping takes effect after the read in progress (measured: the parser
 * hands over every request of a read before the stop is seen, up to about
 * 2,400 tiny GETs from one 64 KiB read on Deno), so a connection holds at
 * most PIPELINE_DEPTH plus one read's requests, whatever it sends.
 * How to stop: on Deno 2.9 the parser reads the socket's handle directly, so
 * socket.pause() (and setting handle.reading) leaves it reading; only
 * handle.readStop() stops it. Bun 1.4's server parses natively and keeps
 * reading whatever JS does (socket.pause() only delays the events: all 60,000
 * requests arrived anyway; it has no readStop), so there the hard bound is
 * what holds: past
 * PIPELINE_CUT requests waiting, the connection is closed. The requests
 * still waiting were never sent upstream; the ones answered stay answered.
 * No client that is not attacking pipelines thousands of requests.
 */
import type { Socket } from "node:net";

/** Requests waiting behind the one being answered before holdup stops reading the connection. */
export const PIPELINE_DEPTH = 16;

/** Requests waiting on one connection past which it is closed (more than one read's worth on Deno). */
export const PIPELINE_CUT = 4096;

/** Process-wide figures, for GET /metrics. */
export const pipelineStats = {
  /** Pipelined requests waiting now, all connections. */
  waiting: 0,
  /** The most requests that ever waited on one connection at once. */
  deepest: 0,
  /** Connections holdup has stopped reading now because their pipeline is full. */
  stopped: 0,
  /** Connections closed for more than PIPELINE_CUT requests waiting. */
  cut: 0,
};

const STOPPED = Symbol("holdup.pipeline.stopped");
interface ReadHandle {
  readStop?: () => unknown;
  readStart?: () => unknown;
}
type PipelinedSocket = Socket & { [STOPPED]?: boolean; _handle?: ReadHandle | null };

/** A request joined the connection's queue; `depth` requests wait on it now. */
export function queued(socket: Socket, depth: number): void {
  const s = socket as PipelinedSocket;
  pipelineStats.waiting++;
  if (depth > pipelineStats.deepest) pipelineStats.deepest = depth;
  if (depth > PIPELINE_CUT && !s.destroyed) {
    pipelineStats.cut++;
    s.destroy();
    return;
  }
  // Only where the runtime can stop reading (Deno): on Bun, pause() stops nothing and could stall a body.
  const h = s._handle;
  if (depth < PIPELINE_DEPTH || s[STOPPED] || s.destroyed || typeof h?.readStop !== "function") return;
  s[STOPPED] = true;
  pipelineStats.stopped++;
  h.readStop();
  s.once("close", () => unstop(s));
}

/** A request left the connection's queue (started, or its connection closed); `depth` wait now. */
export function dequeued(socket: Socket, depth: number): void {
  const s = socket as PipelinedSocket;
  pipelineStats.waiting--;
  if (!s[STOPPED] || depth > PIPELINE_DEPTH / 2 || s.destroyed) return;
  unstop(s);
  s._handle?.readStart?.();
}

function unstop(s: PipelinedSocket): void {
  if (!s[STOPPED]) return;
  s[STOPPED] = false;
  pipelineStats.stopped--;
}
