/**
 * Request bodies: up to maxBodyBuffer are read once and kept, so that a retry
 * replays them byte for byte; a larger one is left unread as a stream, to be
 * sent once, when an upstream is ready. A kept body is one Uint8Array of
 * exactly its size (allocated from Content-Length when the client sent one),
 * so 1,000 held 1 MiB bodies cost about 1 GiB, not several.
 */
import { concat } from "../util/bytes.ts";
import type { Incoming } from "../serve/types.ts";

export type Body =
  | { kind: "none" }
  | { kind: "buffered"; bytes: Uint8Array }
  | { kind: "stream"; stream: ReadableStream<Uint8Array> };

const NONE: Body = { kind: "none" };

/** The body is larger than maxBody (declared, or counted while reading a chunked one). */
export class TooLarge extends Error {}

/**
 * `maxBody` (null: none): a declared length past it throws TooLarge before a
 * byte is read; a chunked body is then read whole (at most maxBody) before
 * anything goes upstream, so a body found too large has sent nothing.
 */
export async function prepareBody(req: Incoming, maxBuffer: number, maxBody: number | null = null): Promise<Body> {
  const n = req.contentLength;
  if (n === 0) return NONE;
  if (n !== null && maxBody !== null && n > maxBody) throw new TooLarge();
  const stream = req.body;
  if (!stream) return NONE;
  if (n !== null) {
    if (n > maxBuffer) return { kind: "stream", stream };
    const bytes = await req.readAll(n);
    if (bytes === null || bytes.byteLength !== n) throw new Error("client disconnected while sending the body");
    return { kind: "buffered", bytes };
  }
  // Chunked: read up to the limit; past it, send what was read and then the rest.
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
    if (maxBody !== null) {
      if (size > maxBody) {
        reader.cancel().catch(() => {});
        throw new TooLarge();
      }
    } else if (size > maxBuffer) return { kind: "stream", stream: resume(chunks, reader) };
  }
  if (size === 0) return NONE;
  return { kind: "buffered", bytes: concat(chunks, size) };
}

/** Bytes kept in memory for this body. */
export function bodySize(body: Body): number {
  return body.kind === "buffered" ? body.bytes.byteLength : 0;
}

export function bodyInit(body: Body): BodyInit | null {
  return body.kind === "none" ? null : body.kind === "buffered" ? body.bytes as BodyInit : body.stream;
}

function resume(head: Uint8Array[], reader: ReadableStreamDefaultReader<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = head.shift();
      if (next) return controller.enqueue(next);
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

