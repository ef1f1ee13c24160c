/**
 * The hold-and-retry loop: how one client request becomes one response.
 *
 * Each pass reads the current snapshot once (so a reload is seen whole), picks
 * a ready upstream and makes one attempt. When no upstream is ready — all
 * unreachable, or the proxy paused — the request is held: it waits in
 * `state.waiters` until a reload, a resume or an upstream coming up wakes it,
 * or until its deadline (arrival + tryDuration) or its client gives up.
 *
 * Retry policy, in one place:
 * - refused / DNS on a connection of the attempt's own: never sent → hold, retry.
 * - any other failure: the upstream may have seen it → only idempotent methods
 *   with a replayable body are resent (at most MAX_RESENDS times); others 502.
 * - a streamed (unbuffered) body is sent once: any failure → 502.
 * - no response head within responseTimeout → 504.
 */
import { attempt } from "./forward/attempt.ts";
import { type Body, prepareBody } from "./forward/body.ts";
import { clientHeaders, upstreamHeaders } from "./forward/headers.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { Conn, Runtime } from "./runtime/types.ts";
import type { State } from "./state.ts";

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);
const NULL_BODY_STATUS = new Set([101, 204, 205, 304]);
/** Resends of an idempotent request after a failure that may have reached the upstream. */
const MAX_RESENDS = 2;

export interface ProxyDeps {
  state: State;
  runtime: Runtime;
  log: Logger;
  metrics: Metrics;
}

export async function proxy(req: Request, conn: Conn, d: ProxyDeps): Promise<Response> {
  const start = performance.now();
  const url = req.url;
  const target = url.slice(url.indexOf("/", url.indexOf("//") + 2));
  const { state } = d;
  let snap = state.current;
  const done = (status: number, message: string, heldMs: number, extra?: Record<string, string>) =>
    finish(d, req, target, start, ownResponse(status, message, heldMs, extra), heldMs, null, message);

  if (snap.mode === "stopped") return stopped(d, req, target, start, snap.stopMessage);
  conn.noIdleTimeout();

  let body: Body;
  try {
    body = await prepareBody(req, snap.config.maxBodyBuffer);
  } catch {
    return done(499, "client disconnected while sending the body", 0);
  }
  const inPlace = d.runtime.mutableHeaders;
  const headers = upstreamHeaders(req, conn.clientIP, inPlace);
  const idempotent = IDEMPOTENT.has(req.method);
  const replayable = body.kind !== "stream";
  // Only on a connection of its own does "refused" prove a request unsent.
  const fresh = replayable && !idempotent;
  let resends = 0;
  let heldMs = 0;
  let wasHeld = false;

  for (;;) {
    snap = state.current;
    if (snap.mode === "stopped") return stopped(d, req, target, start, snap.stopMessage, heldMs);
    const deadline = start + snap.config.tryDuration;
    const u = snap.mode === "running" ? state.pick(snap) : null;
    if (u) {
      const input = {
        // A request that was never held skips watching its client: the hot path stays lean.
        target, method: req.method, headers, requestHeaders: req.headers, body, fresh, signal: wasHeld ? req.signal : null,
        responseTimeout: snap.config.responseTimeout,
      };
      let out;
      if (wasHeld) {
        // Released requests go out in waves of at most RELEASE_CONCURRENCY.
        await state.releaseGate.acquire();
        try {
          out = await attempt(d.runtime, u, input);
        } finally {
          state.releaseGate.release();
        }
      } else out = await attempt(d.runtime, u, input);
      if (out.kind === "response") {
        const res = out.response;
        const resHeaders = clientHeaders(res, out.decoded, Math.round(heldMs), inPlace);
        const bodyless = req.method === "HEAD" || NULL_BODY_STATUS.has(res.status);
        // Where headers were rewritten in place, the upstream's response goes out as it is.
        if (inPlace && (!bodyless || res.body === null)) return finish(d, req, target, start, res, heldMs, u.url);
        if (bodyless) res.body?.cancel().catch(() => {});
        const response = new Response(bodyless ? null : res.body, {
          status: res.status,
          statusText: res.statusText,
          headers: resHeaders,
        });
        return finish(d, req, target, start, response, heldMs, u.url, undefined, resHeaders);
      }
      if (out.kind === "timeout") {
        return done(504, `upstream ${u.url} sent no response head within ${snap.config.responseTimeout}ms`, heldMs);
      }
      if (out.kind === "client-gone") return done(499, "client disconnected", heldMs);
      if (!replayable) return done(502, `upstream ${u.url} failed: ${out.error}`, heldMs);
      if (out.failure === "after-send") {
        // It may have seen the request: resend only what is safe to resend.
        if (idempotent && ++resends <= MAX_RESENDS && performance.now() < deadline) continue;
        return done(502, `upstream ${u.url} failed after the request was sent: ${out.error}`, heldMs);
      }
      u.markDown(out.error); // never sent: hold and retry below
      continue;
    }

    // Hold: wait for a reload, a resume, an upstream coming up, the deadline or the client leaving.
    if (!wasHeld) {
      if (state.held >= snap.config.maxHeld) {
        return done(503, `too many requests held (maxHeld ${snap.config.maxHeld})`, 0, { "retry-after": "1" });
      }
      wasHeld = true;
    }
    if (performance.now() >= deadline) return heldTooLong(snap.mode, snap.config.tryDuration);
    state.held++;
    const since = performance.now();
    const why = await state.waiters.wait(deadline, req.signal);
    state.held--;
    heldMs += performance.now() - since;
    if (why === "aborted") return done(499, "client disconnected while held", heldMs);
    if (why === "shutdown") return done(503, "holdup is shutting down", heldMs, { "retry-after": "5" });
    if (why === "deadline") return heldTooLong(state.current.mode, snap.config.tryDuration);
  }

  function heldTooLong(mode: string, tryDuration: number): Response {
    const what = mode === "paused" ? "holdup is paused" : "no upstream became reachable";
    return done(503, `${what}; held for the whole tryDuration (${tryDuration}ms)`, heldMs, { "retry-after": "5" });
  }
}

function ownResponse(status: number, message: string, heldMs: number, extra?: Record<string, string>): Response {
  const headers = new Headers(extra);
  headers.set("content-type", "text/plain; charset=utf-8");
  headers.set("x-holdup-held-ms", String(Math.round(heldMs)));
  return new Response(`holdup: ${message}\n`, { status, headers });
}

function stopped(d: ProxyDeps, req: Request, target: string, start: number, message: string, heldMs = 0): Response {
  const text = message || "This service is down for maintenance. Please try again soon.";
  const headers = new Headers({ "retry-after": "30", "x-holdup-held-ms": String(Math.round(heldMs)), "cache-control": "no-store" });
  let body = text + "\n";
  if ((req.headers.get("accept") ?? "").includes("text/html")) {
    headers.set("content-type", "text/html; charset=utf-8");
    body = maintenancePage(text);
  } else headers.set("content-type", "text/plain; charset=utf-8");
  return finish(d, req, target, start, new Response(body, { status: 503, headers }), heldMs, null, "stopped");
}

function maintenancePage(text: string): string {
  const esc = text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Down for maintenance</title>
<style>body{font:18px/1.5 system-ui,sans-serif;max-width:36em;margin:15vh auto;padding:0 1em;color:#222}</style>
</head><body><h1>Down for maintenance</h1><p>${esc}</p></body></html>
`;
}

/** Counts and logs the response once it is decided. */
function finish(
  d: ProxyDeps,
  req: Request,
  target: string,
  start: number,
  res: Response,
  heldMs: number,
  upstream: string | null,
  reason?: string,
  /** The headers `res` was built with, to build it again without copying `res.headers`. */
  headersInit?: HeadersInit,
): Response {
  d.metrics.request(res.status, heldMs);
  if (!d.log.accessEnabled) return res;
  const entry = {
    method: req.method,
    path: target,
    status: res.status,
    bytes: null as number | null,
    durationMs: 0,
    heldMs,
    upstream,
    reason,
  };
  const length = res.headers.get("content-length");
  if (length !== null || !res.body || upstream === null) {
    entry.bytes = length !== null ? Number(length) : res.body ? null : 0;
    entry.durationMs = performance.now() - start;
    d.log.access(entry);
    return res;
  }
  // A streamed body: count it as it goes, and log when it ends.
  let bytes = 0;
  const counted = res.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, c) {
        bytes += chunk.byteLength;
        c.enqueue(chunk);
      },
      flush() {
        entry.bytes = bytes;
        entry.durationMs = performance.now() - start;
        d.log.access(entry);
      },
    }),
  );
  return new Response(counted, { status: res.status, statusText: res.statusText, headers: headersInit ?? res.headers });
}
