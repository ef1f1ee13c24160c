/**
 * The proxy listener on the runtime's own web server (Bun.serve), for the
 * option `HOLDUP_LISTENER=web` on Bun: plain HTTP/1.1, no TLS, no WebSocket
 * upgrades (answered 501). It carries the hardening the server allows (the
 * Host check before routing, the idle timeout, the request count); what it
 * cannot carry and what it wins, measured: docs/design/listener.md ("Bun.serve").
 */
import type { Certificates } from "./tls.ts";
import type { Listener, ListenerLimits, ListenOptions } from "./listener.ts";
import { fromRequest, toResponse } from "./web.ts";
import type { Reply } from "./types.ts";
import type { WebServe } from "../runtime/types.ts";


const bad = (status: number, message: string) =>
  new Response(`holdup: ${message}\n`, { status, headers: { "content-type": "text/plain; charset=utf-8", connection: "close" } });

/** Bun's idleTimeout is whole seconds, 1 to 255 (0 would mean none). */
const idleOf = (l: ListenerLimits) => Math.max(1, Math.min(255, Math.ceil(Math.min(l.keepAliveTimeout, l.headerTimeout) / 1000)));

/**
 * A Response from a Reply, cheaply: a body holdup holds whole is Bun's at
 * once (onDone now); a streamed one up to `wholeMax` is read whole first (its
 * length checked: a short or long one is an error, never a clean end); only
 * a longer stream is counted chunk by chunk (toResponse's TransformStream,
 * which costs Bun about 2× CPU a 64 KiB response, measured).
 */
async function respond(reply: Reply, wholeMax: number): Promise<Response> {
  let body = reply.body;
  if (body instanceof ReadableStream) {
    const length = reply.length ?? null;
    if (length === null || length > wholeMax) return toResponse(reply);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await new Response(body).arrayBuffer());
    } catch (e) {
      reply.onDone?.(0, false);
      throw e;
    }
    if (bytes.byteLength !== length) {
      reply.onDone?.(bytes.byteLength, false);
      throw new Error("the upstream body did not match its Content-Length");
    }
    body = bytes;
  }
  reply.onDone?.(body === null ? 0 : typeof body === "string" ? body.length : (body as Uint8Array).byteLength, true);
  return new Response(body as BodyInit | null, { status: reply.status, headers: reply.headers });
}

export function listenWeb(o: ListenOptions, serve: WebServe): Promise<Listener> {
  let requests = 0;
  let closing = false;
  const server = serve({
    hostname: o.hostname,
    port: o.port,
    reusePort: !!o.reusePort,
    idleSeconds: idleOf(o.limits),
    fetch(req, clientIP) {
      if (req.method === "CONNECT") return bad(405, "CONNECT is not supported");
      if (req.headers.get("upgrade") !== null) return bad(501, "protocol upgrades are not supported by this listener (HOLDUP_LISTENER=web)");
      if (closing) return bad(503, "shutting down");
      const host = req.headers.get("host");
      if (host === null) return bad(400, "HTTP/1.1 requests need a Host header");
      if (host.includes(",")) return bad(400, "more than one Host header");
      const inc = fromRequest(req, clientIP);
      if (!inc) return bad(400, "the request-target must be a path (origin-form) and the Host a valid host[:port]");
      requests++;
      const done = (reply: Reply): Response | Promise<Response> => {
        requests--;
        return respond(reply, o.wholeBodyMax ?? 0);
      };
      let reply;
      try {
        reply = o.handler(inc);
      } catch (e) {
        requests--;
        throw e;
      }
      return reply instanceof Promise ? reply.then(done, (e) => {
        requests--;
        throw e;
      }) : done(reply);
    },
  });
  return Promise.resolve({
    hostname: o.hostname,
    port: server.port,
    scheme: "http",
    setCertificates(_certs: Certificates) {},
    update(next) {
      server.reload(idleOf(next));
    },
    // Bun.serve reports no connections: only requests in progress are known.
    get connections() {
      return requests;
    },
    stats: () => ({ open: requests, limit: o.limits.maxConnections, byKind: { http1: requests, h2: 0, websocket: 0 }, evicted: 0, refused: 0 }),
    get requests() {
      return requests;
    },
    shutdown() {
      closing = true;
      return server.stop();
    },
  });
}
