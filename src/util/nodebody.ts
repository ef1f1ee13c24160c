/**
 * An upstream response body still in node:http's hands (the Deno upstream
 * client): the node:http listener relays it node stream to node stream, and
 * only a reader that needs a web stream (the edge entry, a health check's
 * cancel) makes one. On Deno 2.9 a web ReadableStream costs 10-13 µs to make
 * and a read per chunk more: measured, docs/design/listener.md ("Deno: node to node").
 */

import type { Readable } from "node:stream";

/** An http.IncomingMessage, as read here. */
export type NodeReadable = Readable;

export class NodeBody {
  private web: ReadableStream<Uint8Array> | null = null;
  /** Taken by a reader (relay or web stream): nothing else may read it. */
  taken = false;

  constructor(readonly source: NodeReadable) {}

  /** The body as a web stream that reads from the socket only as fast as it is consumed. */
  get stream(): ReadableStream<Uint8Array> {
    if (!this.web) {
      this.taken = true;
      this.web = toStream(this.source);
    }
    return this.web;
  }

  /** Like ReadableStream.cancel(): the rest is not wanted (the upstream connection closes). */
  cancel(): Promise<void> {
    if (this.web) return this.web.cancel();
    this.taken = true;
    this.source.destroy();
    return Promise.resolve();
  }

  /** Takes the node stream for a relay; null when something else read it first. */
  take(): NodeReadable | null {
    if (this.taken) return null;
    this.taken = true;
    return this.source;
  }
}

function toStream(res: NodeReadable): ReadableStream<Uint8Array> {
  /** Closed, errored or cancelled: the controller takes nothing more. */
  let over = false;
  return new ReadableStream<Uint8Array>({
    start(c) {
      res.on("data", (chunk: Uint8Array) => {
        if (over) return;
        c.enqueue(chunk);
        if ((c.desiredSize ?? 0) <= 0) res.pause();
      });
      res.on("end", () => {
        if (over) return;
        over = true;
        c.close();
      });
      const failed = (e: Error) => {
        if (over) return;
        over = true;
        c.error(e);
      };
      res.on("error", failed);
      // Closed before its end (the upstream reset it, or it was cut): an error, never a clean end.
      res.on("close", () => failed(new Error("the upstream closed the response before its end")));
    },
    pull() {
      res.resume();
    },
    cancel() {
      over = true;
      res.destroy();
    },
  });
}
