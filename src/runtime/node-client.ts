/**
 * The upstream client on Deno: node:http's request, returning what the hold
 * loop reads of a web Response (status, headers, a body) without making one:
 * the headers stay node's raw list and the body node's stream (NodeBody), so
 * the node:http listener relays it node to node. The signal aborts it at any
 * stage. Why not Deno's fetch(), and why the pool has no per-host socket cap
 * (measured): docs/design/runtimes.md. Released held requests use a second,
 * capped pool: docs/design/hold.md.
 */
import http from "node:http";
import https from "node:https";
import { drained } from "../util/drain.ts";
import { NodeBody } from "../util/nodebody.ts";
import type { UpstreamInit } from "./types.ts";

const agentOptions = { keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256, scheduling: "lifo" as const };
const pooled = { "http:": new http.Agent(agentOptions), "https:": new https.Agent(agentOptions) };
/**
 * Released held requests (UpstreamInit.released) go over at most this many
 * kept-alive connections per upstream, queued on them in order, instead of
 * each opening its own. Why 64: docs/design/hold.md ("Releasing a wave").
 */
export const RELEASE_SOCKETS = 64;
/**
 * A socket stays busy until its response body ends, so long bodies (event
 * streams, downloads: no Content-Length, or more than LONG_BODY bytes) would
 * take the release pool's sockets and make the rest of the wave wait for them
 * to end. Such a response's socket leaves the pool ("agentRemove", node's way
 * to keep a request open outside its agent), which opens another in its place;
 * it is closed once the body has been read.
 */
const LONG_BODY = 64 * 1024;
const releaseOptions = { keepAlive: true, maxSockets: RELEASE_SOCKETS, maxFreeSockets: RELEASE_SOCKETS, scheduling: "fifo" as const };
const releasePool = { "http:": new http.Agent(releaseOptions), "https:": new https.Agent(releaseOptions) };

interface Origin {
  protocol: "http:" | "https:";
  hostname: string;
  port: number;
  /** The Host header for this origin: host[:port] (the port only when not the scheme's default), IPv6 in brackets. */
  host: string;
}
/** Parsed upstream origins ("http://host:port"), so the hot path splits no URL. */
const origins = new Map<string, Origin>();

function split(url: string): { origin: Origin; path: string } {
  // url = upstream origin (+ optional base path) + target; the target starts with "/".
  const schemeEnd = url.indexOf("//") + 2;
  const slash = url.indexOf("/", schemeEnd);
  const base = slash === -1 ? url : url.slice(0, slash);
  const path = slash === -1 ? "/" : url.slice(slash);
  let origin = origins.get(base);
  if (!origin) {
    const u = new URL(base);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new TypeError(`unsupported upstream scheme ${u.protocol}`);
    const hostname = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
    origin = { protocol: u.protocol, hostname, port: Number(u.port) || (u.protocol === "https:" ? 443 : 80), host: u.host };
    if (origins.size > 1000) origins.clear();
    origins.set(base, origin);
  }
  return { origin, path };
}

const NULL_BODY = new Set([204, 205, 304]);

export function nodeFetch(url: string, init: UpstreamInit): Promise<Response> {
  const { origin, path } = split(url);
  // A flat [name, value, …] list, as node:http takes it: no object keyed by name to build, repeated headers kept apart.
  const headers: string[] = [];
  let host = false;
  for (const [name, value] of init.headers as [string, string][]) {
    const k = name.toLowerCase();
    if (k === "host") host = true;
    headers.push(k, value);
  }
  // node:http adds Host itself only to headers given as an object: as node would write it.
  if (!host) headers.push("host", origin.host);
  const signal = init.signal;
  return new Promise<Response>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const mod = origin.protocol === "https:" ? https : http;
    const req = mod.request({
      protocol: origin.protocol,
      hostname: origin.hostname,
      port: origin.port,
      method: init.method,
      path,
      headers,
      // A connection of its own: "refused" then proves the request unsent.
      agent: init.fresh ? false : init.released ? releasePool[origin.protocol] : pooled[origin.protocol],
    });
    // A streamed body cannot be sent again: Deno's retry would hang or send a partial copy (see noResend).
    if (init.body instanceof ReadableStream) noResend(req);
    let settled = false;
    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      reject(e);
    };
    const onAbort = () => {
      // An aborted request must not go out again; the socket guard holds if Deno's private name ever changes.
      noResend(req);
      req.on("socket", (s) => s.destroy());
      req.destroy();
      fail(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    req.on("error", fail);
    req.on("response", (res: http.IncomingMessage) => {
      if (settled) return void res.destroy();
      settled = true;
      signal.removeEventListener("abort", onAbort);
      const status = res.statusCode ?? 0;
      // The statuses a web Response can carry (what fetch() would have given): anything else is not relayed.
      if (status < 200 || status > 599) {
        res.destroy();
        return reject(new TypeError(`the upstream sent a response that cannot be relayed: status ${status}`));
      }
      const empty = init.method === "HEAD" || NULL_BODY.has(status);
      if (empty) res.resume();
      else if (init.released && !init.fresh) {
        const length = res.headers["content-length"];
        if (length === undefined || Number(length) > LONG_BODY) leavePool(res);
      }
      resolve(new NodeResponse(status, res.statusMessage ?? "", res.rawHeaders, empty ? null : new NodeBody(res)) as unknown as Response);
    });
    sendBody(req, init.body as Uint8Array | string | ReadableStream<Uint8Array> | null);
  });
}

/**
 * Deno's client sends a request again, once, on a new connection when its reused pooled socket closes before a
 * response head (canRetryRequest: reusedSocket && !res && agent && !_retrying), whether the request was destroyed
 * or not, with what was still queued when it got its socket. Marking it as retried turns that off (measured:
 * docs/design/runtimes.md).
 */
function noResend(req: http.ClientRequest): void {
  (req as unknown as { _retrying: boolean })._retrying = true;
}

/** A released response with a long body: its socket leaves the release pool now and closes when the body ends. */
function leavePool(res: http.IncomingMessage): void {
  const socket = res.socket;
  if (!socket) return;
  socket.emit("agentRemove");
  res.once("end", () => socket.destroy());
}

function sendBody(req: http.ClientRequest, body: Uint8Array | string | ReadableStream<Uint8Array> | null): void {
  if (body === null) return void req.end();
  if (!(body instanceof ReadableStream)) return void req.end(body);
  void (async () => {
    const reader = body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (req.destroyed) throw new Error("upstream request gone");
        if (!req.write(value)) await drained(req);
      }
      req.end();
    } catch (e) {
      reader.cancel().catch(() => {});
      req.destroy(e as Error); // the client's body failed: the upstream must not see a clean end
    }
  })();
}

/**
 * The upstream's header list as the part of web Headers the hold loop reads
 * (get, has, forEach): names lowercased, repeated ones kept apart in forEach
 * (in the order received) and joined with ", " by get. Building web Headers
 * and a Response cost Deno 2.9 about 15 µs a response (measured).
 */
class RawHeaders {
  constructor(private raw: string[]) {}
  get(name: string): string | null {
    const raw = this.raw;
    let out: string | null = null;
    for (let i = 0; i < raw.length; i += 2) {
      if (raw[i].length === name.length && raw[i].toLowerCase() === name) out = out === null ? raw[i + 1] : `${out}, ${raw[i + 1]}`;
    }
    return out;
  }
  has(name: string): boolean {
    return this.get(name) !== null;
  }
  forEach(fn: (value: string, name: string) => void): void {
    const raw = this.raw;
    for (let i = 0; i < raw.length; i += 2) fn(raw[i + 1], raw[i].toLowerCase());
  }
}

/** What nodeFetch resolves with: read as a web Response by its callers (status, headers, body.cancel()). */
class NodeResponse {
  readonly headers: RawHeaders;
  constructor(readonly status: number, readonly statusText: string, raw: string[], readonly body: NodeBody | null) {
    this.headers = new RawHeaders(raw);
  }
  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }
}
