/** Header rewriting in both directions: hop-by-hop removal, Host, X-Forwarded-*. */

/** Headers that describe one connection, not the message (RFC 9110 §7.6.1). */
const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authenticate",
  "proxy-authorization",
];

/** Removes hop-by-hop headers, including every header that `Connection` names. */
export function stripHopByHop(h: Headers): void {
  const named = h.get("connection");
  if (named) for (const name of named.split(",")) {
    const n = name.trim();
    if (n) h.delete(n);
  }
  for (const name of HOP_BY_HOP) h.delete(name);
}

/**
 * The headers sent upstream: the client's (Host included, so the app sees the
 * name it was called by), less hop-by-hop, plus X-Forwarded-For/-Proto/-Host.
 * With `inPlace` (Bun, where they are mutable) the request's own headers are
 * rewritten rather than copied.
 */
export function upstreamHeaders(req: Request, clientIP: string, inPlace: boolean): Headers {
  const h = inPlace ? req.headers : new Headers(req.headers);
  stripHopByHop(h);
  const host = h.get("host");
  if (host) h.set("x-forwarded-host", host);
  h.set("x-forwarded-proto", req.url.charCodeAt(4) === 115 /* "https:" */ ? "https" : "http");
  if (clientIP) {
    const prior = h.get("x-forwarded-for");
    h.set("x-forwarded-for", prior ? `${prior}, ${clientIP}` : clientIP);
  }
  return h;
}

/**
 * The headers sent to the client: the upstream's, less hop-by-hop. When the
 * runtime's fetch() already decoded the body (Deno decodes gzip and br and has
 * no opt-out), Content-Encoding and the stale Content-Length go too, so the
 * header always matches the bytes. With `inPlace` the response's own headers
 * are rewritten rather than copied.
 */
export function clientHeaders(res: Response, decoded: boolean, heldMs: number, inPlace: boolean): Headers {
  const h = inPlace ? res.headers : new Headers(res.headers);
  stripHopByHop(h);
  if (decoded) {
    h.delete("content-encoding");
    h.delete("content-length");
  }
  h.set("x-holdup-held-ms", String(heldMs));
  return h;
}
