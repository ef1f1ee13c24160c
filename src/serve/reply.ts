/**
 * Writing a `Reply` back on a node:http response: headers (minus those HTTP/2
 * forbids), a short body at once, a body of known length up to `wholeBodyMax`
 * read whole and written once, anything else pumped with backpressure (an
 * upstream body still in node:http's hands, Deno's NodeBody, relayed node
 * stream to node stream, without a web stream); a body
 * that breaks off or disagrees with its Content-Length is cut, never ended
 * cleanly. Also the listener's own refusals (own, plain, CONNECT).
 * @see docs/design/listener.md
 */
import type http from "node:http";
import type { Socket } from "node:net";
import { concat } from "../util/bytes.ts";
import { drained } from "../util/drain.ts";
import { NodeBody, type NodeReadable } from "../util/nodebody.ts";
import type { Reply } from "./types.ts";

const noop = () => {};

/** The listener's own answer: plain text, connection closed after it. */
export function own(status: number, message: string): Reply {
  return { status, headers: [["content-type", "text/plain; charset=utf-8"], ["connection", "close"]], body: `holdup: ${message}\n` };
}

/** A whole HTTP/1.1 response as text, for a socket no http.ServerResponse stands for (CONNECT, a refused upgrade). */
export function plain(status: number, text: string, body: string, extra: string[] = []): string {
  return [`HTTP/1.1 ${status} ${text}`, "content-type: text/plain; charset=utf-8", `content-length: ${body.length}`, "connection: close", ...extra, "", body].join("\r\n");
}

/** CONNECT would turn holdup into a forward proxy: refuse it. */
export function refuseConnect(_req: http.IncomingMessage, socket: Socket): void {
  if (typeof (socket as unknown as http.ServerResponse).writeHead === "function") {
    // HTTP/2's CONNECT arrives as a request and a response.
    const res = socket as unknown as http.ServerResponse;
    res.writeHead(405, ["content-type", "text/plain; charset=utf-8", "allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"]);
    return void res.end("holdup: CONNECT is not supported\n");
  }
  socket.on("error", noop);
  socket.end(plain(405, "Method Not Allowed", "holdup: CONNECT is not supported\n", ["allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"]));
}

/** Cuts a response: HTTP/1 at the socket (Bun's res.destroy() alone sends a pending head: a clean, empty answer). */
function cut(res: http.ServerResponse): void {
  if (res.req?.httpVersionMajor !== 2) res.socket?.destroy();
  res.destroy();
}

export const H2_FORBIDDEN = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

/**
 * Writes a reply; `close` ends the connection after it (a request refused
 * before its body was read). A body of known length up to `wholeBodyMax` is
 * read whole and written once rather than pumped chunk by chunk (fewer awaits
 * and writes per response); set per runtime from measurements: see Runtime.wholeBodyMax.
 */
export function writeReply(res: http.ServerResponse, reply: Reply, close: boolean, wholeBodyMax = 0): void {
  if (res.destroyed) {
    if (reply.body instanceof ReadableStream || reply.body instanceof NodeBody) reply.body.cancel().catch(noop);
    reply.onDone?.(0, false);
    return;
  }
  const flat: string[] = [];
  const h2 = res.req?.httpVersionMajor === 2;
  for (const [name, value] of reply.headers) {
    if (name === "date") res.sendDate = false;
    // HTTP/2 forbids connection-specific headers (RFC 9113 8.2.2).
    if (h2 && H2_FORBIDDEN.has(name)) continue;
    flat.push(name, value);
  }
  if (close && !h2) res.shouldKeepAlive = false;
  res.writeHead(reply.status, flat);
  let body = reply.body;
  if (body instanceof NodeBody) {
    const source = body.take();
    if (source) return void relay(res, source, reply.length ?? null, wholeBodyMax, reply.onDone);
    body = body.stream;
  }
  if (!(body instanceof ReadableStream)) {
    res.end(body ?? undefined);
    reply.onDone?.(body === null ? 0 : typeof body === "string" ? body.length : body.byteLength, true);
    return;
  }
  const length = reply.length ?? null;
  if (length !== null && length <= wholeBodyMax) return void whole(res, body, length, reply.onDone);
  void pump(res, body, length, reply.onDone);
}

/**
 * A node stream relayed to the response node to node (the Deno upstream
 * client's body, NodeBody): written as it comes with backpressure, or, when
 * its declared length is at most `wholeMax`, gathered and written in one
 * end(). Longer or shorter than declared, or broken off: cut, never a clean end.
 */
function relay(res: http.ServerResponse, src: NodeReadable, declared: number | null, wholeMax: number, onDone?: (bytes: number, complete: boolean) => void): void {
  let bytes = 0;
  let over = false;
  const chunks: Uint8Array[] | null = declared !== null && declared <= wholeMax ? [] : null;
  const finish = (complete: boolean) => {
    if (over) return;
    over = true;
    res.off("drain", resume);
    res.off("close", gone);
    if (!complete) {
      src.destroy();
      cut(res);
    }
    onDone?.(bytes, complete);
  };
  const resume = () => src.resume();
  const gone = () => finish(false);
  const failed = () => finish(false);
  src.on("data", (chunk: Uint8Array) => {
    if (over) return;
    bytes += chunk.byteLength;
    if (declared !== null && bytes > declared) return finish(false);
    if (chunks) chunks.push(chunk);
    else if (!res.write(chunk)) src.pause();
  });
  src.on("end", () => {
    if (over) return;
    if (declared !== null && bytes !== declared) return finish(false);
    res.end(chunks?.length ? concat(chunks, bytes) : undefined);
    finish(true);
  });
  src.on("error", failed);
  src.on("close", failed); // after "end" this does nothing; before it, the upstream broke off
  res.on("drain", resume);
  res.on("close", gone); // the client left (after a complete answer, finish already ran)
}

async function whole(
  res: http.ServerResponse,
  body: ReadableStream<Uint8Array>,
  declared: number,
  onDone?: (bytes: number, complete: boolean) => void,
): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await new Response(body).arrayBuffer());
  } catch {
    cut(res);
    onDone?.(0, false);
    return;
  }
  if (bytes.byteLength !== declared) {
    cut(res); // shorter or longer than its Content-Length: cut, never a clean end
    onDone?.(bytes.byteLength, false);
    return;
  }
  res.end(bytes);
  onDone?.(declared, true);
}

async function pump(
  res: http.ServerResponse,
  body: ReadableStream<Uint8Array>,
  declared: number | null,
  onDone?: (bytes: number, complete: boolean) => void,
): Promise<void> {
  const reader = body.getReader();
  let bytes = 0;
  let complete = false;
  const onClose = () => reader.cancel().catch(noop);
  res.once("close", onClose);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      if (declared !== null && bytes > declared) throw new Error("the upstream sent more than its Content-Length");
      if (!res.write(value)) await drained(res);
      if (res.destroyed) throw new Error("client disconnected");
    }
    if (declared !== null && bytes !== declared) throw new Error("the upstream body ended before its Content-Length");
    res.end();
    complete = true;
  } catch {
    reader.cancel().catch(noop);
    cut(res); // so the client sees a truncated message, never a clean end
  } finally {
    res.off("close", onClose);
    onDone?.(bytes, complete);
  }
}
