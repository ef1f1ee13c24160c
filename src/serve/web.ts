/**
 * Web-standard Request/Response on either side of an Incoming/Reply: the edge
 * entry (`export default { fetch }`) turns its Request into an Incoming, and
 * the admin API (a Hono app) gets a Request built from an Incoming.
 */
import { originForm, validHost } from "./target.ts";
import type { Incoming, Reply } from "./types.ts";
import { NodeBody } from "../util/nodebody.ts";

/**
 * An Incoming from a web Request. The path is taken from `req.url` only after
 * the Host it was built from is checked: a Host that is not a plain
 * host[:port] could have moved characters into the path. Null: answer 400.
 */
export function fromRequest(req: Request, clientIP: string): Incoming | null {
  const host = req.headers.get("host");
  if (host !== null && !validHost(host)) return null;
  const url = req.url;
  const schemeEnd = url.indexOf("//") + 2;
  const target = originForm(url.slice(url.indexOf("/", schemeEnd)));
  if (target === null) return null;
  let abort: AbortController | null = null;
  return {
    method: req.method,
    target,
    scheme: url.startsWith("https:") ? "https" : "http",
    clientIP,
    header: (name) => req.headers.get(name),
    forEachHeader: (fn) => req.headers.forEach((value, name) => fn(name, value)),
    body: req.body,
    get contentLength() {
      const v = req.headers.get("content-length");
      return v === null ? null : Number(v);
    },
    get signal() {
      return (abort ??= linked(req.signal)).signal;
    },
    async readAll(max) {
      const declared = req.headers.get("content-length");
      if (declared !== null && Number(declared) > max) return null;
      const bytes = new Uint8Array(await req.arrayBuffer());
      return bytes.byteLength > max ? null : bytes;
    },
  };
}

function linked(signal: AbortSignal): AbortController {
  const c = new AbortController();
  if (signal.aborted) c.abort();
  else signal.addEventListener("abort", () => c.abort(), { once: true });
  return c;
}

/** A Response from a Reply (edge entry). The stream length check is the platform's. */
export function toResponse(reply: Reply): Response {
  const body = reply.body instanceof NodeBody ? reply.body.stream : reply.body;
  if (reply.onDone) {
    if (body instanceof ReadableStream) {
      let bytes = 0;
      const done = reply.onDone;
      const counted = body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, c) {
          bytes += chunk.byteLength;
          c.enqueue(chunk);
        },
        flush() {
          done(bytes, true);
        },
      }));
      return new Response(counted, { status: reply.status, headers: reply.headers });
    }
    reply.onDone(body === null ? 0 : typeof body === "string" ? body.length : body.byteLength, true);
  }
  return new Response(body as BodyInit | null, { status: reply.status, headers: reply.headers });
}

/** A Request for a Hono app from an Incoming whose body was already read (or refused). */
export function toRequest(inc: Incoming, body: Uint8Array | null, base: string): Request {
  const headers = new Headers();
  inc.forEachHeader((name, value) => {
    try {
      headers.append(name, value);
    } catch { /* a header the platform refuses: the admin API does not need it */ }
  });
  const hasBody = body !== null && body.byteLength > 0 && inc.method !== "GET" && inc.method !== "HEAD";
  return new Request(base + inc.target, { method: inc.method, headers, body: hasBody ? body as BodyInit : null });
}

/** A Reply from a Response (admin API); the body streams (server-sent events). */
export function fromResponse(res: Response): Reply {
  const headers: [string, string][] = [];
  res.headers.forEach((value, name) => headers.push([name, value]));
  return { status: res.status, headers, body: res.body };
}
