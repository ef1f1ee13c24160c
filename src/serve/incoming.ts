/**
 * The node:http request as an `Incoming`: headers (HTTP/2's :authority read as
 * Host), the body as a web stream read only as fast as it is consumed (with
 * bodyTimeout while a read waits), and the checks every request passes before
 * a handler sees it (origin-form target, one valid Host).
 * @see docs/design/listener.md
 */
import type http from "node:http";
import { validHost } from "./target.ts";
import type { Incoming, Reply } from "./types.ts";
import { own } from "./reply.ts";

const noop = () => {};

export const BAD_TARGET = own(400, "the request-target must be a path (origin-form), e.g. GET /index.html");

/** Requests refused before any handler sees them for their Host: invalid, repeated, or missing in HTTP/1.1. */
export function badHost(req: http.IncomingMessage): Reply | null {
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 4 && raw[i].toLowerCase() === "host") hosts++;
  }
  if (hosts > 1) return own(400, "more than one Host header");
  const host = req.headers.host ?? (req.httpVersionMajor === 2 ? req.headers[":authority"] as string | undefined : undefined);
  if (host === undefined) {
    if (req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) return own(400, "HTTP/1.1 requests need a Host header");
  } else if (!validHost(host)) return own(400, "the Host header is not a valid host[:port]");
  return null;
}

export class NodeIncoming implements Incoming {
  readonly method: string;
  private abort: AbortController | null = null;
  private gone = false;
  private _body: ReadableStream<Uint8Array> | null | undefined;

  constructor(private req: http.IncomingMessage, readonly target: string, private bodyTimeout: number, readonly scheme: "http" | "https") {
    this.method = req.method ?? "GET";
  }

  get clientIP(): string {
    return this.req.socket.remoteAddress ?? "";
  }

  header(name: string): string | null {
    let v = this.req.headers[name];
    // HTTP/2 carries the host in :authority (a Host header, if sent, wins).
    if (v === undefined && name === "host" && this.req.httpVersionMajor === 2) v = this.req.headers[":authority"];
    if (v === undefined) return null;
    return Array.isArray(v) ? v.join(", ") : v;
  }

  forEachHeader(fn: (name: string, value: string) => void): void {
    const raw = this.req.rawHeaders;
    if (this.req.httpVersionMajor === 2) {
      // No pseudo-headers upstream: :authority becomes Host (unless there is one).
      const authority = this.req.headers[":authority"];
      if (this.req.headers.host === undefined && typeof authority === "string") fn("host", authority);
      for (let i = 0; i < raw.length; i += 2) if (raw[i][0] !== ":") fn(raw[i].toLowerCase(), raw[i + 1]);
      return;
    }
    for (let i = 0; i < raw.length; i += 2) fn(raw[i].toLowerCase(), raw[i + 1]);
  }

  get contentLength(): number | null {
    const v = this.req.headers["content-length"];
    return v === undefined ? null : Number(v);
  }

  private get hasBody(): boolean {
    const h = this.req.headers;
    return (h["content-length"] !== undefined && h["content-length"] !== "0") || h["transfer-encoding"] !== undefined;
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this._body === undefined) this._body = this.hasBody ? bodyStream(this.req, this.bodyTimeout) : null;
    return this._body;
  }

  get signal(): AbortSignal {
    if (!this.abort) {
      this.abort = new AbortController();
      if (this.gone) this.abort.abort();
    }
    return this.abort.signal;
  }

  clientGone(): void {
    this.gone = true;
    this.abort?.abort();
  }

  async readAll(max: number): Promise<Uint8Array | null> {
    if (!this.hasBody) return new Uint8Array(0);
    const declared = this.contentLength;
    if (declared !== null && declared > max) return null;
    const out = new Uint8Array(declared ?? Math.min(max, 64 * 1024));
    let size = 0;
    let buf = out;
    const reader = this.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (size + value.byteLength > max) {
        reader.cancel().catch(noop);
        return null;
      }
      if (size + value.byteLength > buf.byteLength) {
        const bigger = new Uint8Array(Math.min(max, Math.max(buf.byteLength * 2, size + value.byteLength)));
        bigger.set(buf.subarray(0, size));
        buf = bigger;
      }
      buf.set(value, size);
      size += value.byteLength;
    }
    return size === buf.byteLength ? buf : buf.subarray(0, size);
  }
}

/**
 * The request body as a web stream, read from node's stream only as fast as
 * it is consumed. While a read waits for the client, `timeoutMs` without a
 * byte closes the connection; while nothing reads (the request is held), no
 * timer runs.
 */
export function bodyStream(req: http.IncomingMessage, timeoutMs: number): ReadableStream<Uint8Array> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let cancelled = false;
  const disarm = () => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  return new ReadableStream<Uint8Array>({
    start(c) {
      req.pause();
      req.on("data", (chunk: Uint8Array) => {
        disarm();
        if (cancelled) return; // discarded
        c.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((c.desiredSize ?? 0) <= 0) req.pause();
      });
      req.once("end", () => {
        disarm();
        if (!cancelled) c.close();
      });
      const fail = () => {
        disarm();
        if (cancelled) return;
        try {
          c.error(new Error("client disconnected while sending the body"));
        } catch { /* already closed */ }
      };
      req.once("aborted", fail);
      req.once("error", fail);
      req.once("close", () => {
        if (!req.complete) fail();
      });
    },
    pull() {
      req.resume();
      // The parser may have the whole body already (req.complete): then nothing waits on the client.
      if (!timer && timeoutMs > 0 && !req.complete) {
        timer = setTimeout(() => {
          timer = null;
          req.socket.destroy(); // the client stopped sending its body
        }, timeoutMs);
      }
    },
    cancel() {
      disarm();
      cancelled = true;
      req.resume(); // discard the rest
    },
  }, { highWaterMark: 1 });
}
