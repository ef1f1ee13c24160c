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
 * - any other failure before a response head (an empty reply, a reset, a cut by
 *   a drain): the upstream may have seen it → only a replayable request that is
 *   idempotent or carries Idempotency-Key is resent, byte-exact: once at once,
 *   then every tryInterval while held, until tryDuration; others 502.
 * - an answer whose status is in retryOn, to such a request: "not ready" → held
 *   and retried after Retry-After (at least tryInterval) within the app's retry
 *   budget (forward/retry.ts); when the next try would pass tryDuration, or the
 *   budget is spent, that answer is passed on. Other requests get it at once.
 * - with maxConcurrent, a request waits in its upstream's FIFO line (counted as
 *   held) for a slot, kept until its response body is relayed (forward/limit.ts).
 * - a streamed (unbuffered) body is sent once: any failure → 502.
 * - no response head within responseTimeout → 504.
 */
import { attempt } from "./forward/attempt.ts";
import { type Body, bodySize, prepareBody } from "./forward/body.ts";
import { clientHeaders, upstreamHeaders } from "./forward/headers.ts";
import { type Limit, limitOf } from "./forward/limit.ts";
import { budgetOf, retryDelay } from "./forward/retry.ts";
import { CUT } from "./upstream.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { Runtime } from "./runtime/types.ts";
import type { HeaderList, Incoming, Reply } from "./serve/types.ts";
import type { State } from "./state.ts";

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);
const NULL_BODY_STATUS = new Set([101, 204, 205, 304]);

export interface ProxyDeps {
  state: State;
  runtime: Runtime;
  log: Logger;
  metrics: Metrics;
  /** The app's name, for metrics and the access log. */
  app: string;
}

/** `target`: the path and query to send upstream (the request's own, less a stripped app prefix). */
export async function proxy(req: Incoming, d: ProxyDeps, target: string = req.target): Promise<Reply> {
  const start = performance.now();
  const { state } = d;
  let snap = state.current;
  // What the client reads is short and says what happened; the detail (upstream, error) goes to the log.
  const done = (status: number, message: string, heldMs: number, detail?: string, extra?: HeaderList) =>
    finish(d, req, start, ownReply(status, message, heldMs, extra), heldMs, null, detail ?? message);

  if (snap.mode === "stopped") return stopped(d, req, start, snap.stopMessage);

  let body: Body;
  try {
    body = await prepareBody(req, snap.config.maxBodyBuffer);
  } catch {
    return done(499, "client disconnected while sending the body", 0);
  }
  const headers = upstreamHeaders(req);
  const idempotent = IDEMPOTENT.has(req.method);
  const replayable = body.kind !== "stream";
  // Only on a connection of its own does "refused" prove a request unsent.
  const fresh = replayable && !idempotent;
  // Safe to send again after an ambiguous failure or a "not ready" answer: byte-exact, from the buffer.
  const resendable = replayable && (idempotent || req.header("idempotency-key") !== null);
  let resends = 0;
  /** No attempt before this (performance.now() ms): a Retry-After or tryInterval pause between resends. */
  let retryAt = 0;
  /** Why the next attempt is a resend, for /metrics. */
  let resend: "status" | "empty-reply" | "drain" | null = null;
  let first = true;
  let heldMs = 0;
  let wasHeld = false;
  /** Bytes of this request's buffered body counted in state.heldBodyBytes while it is held. */
  const heldBytes = bodySize(body);

  for (;;) {
    snap = state.current;
    if (snap.mode === "stopped") return stopped(d, req, start, snap.stopMessage, heldMs);
    const deadline = start + snap.config.tryDuration;
    const u = snap.mode === "running" && (retryAt === 0 || performance.now() >= retryAt) ? state.pick(snap) : null;
    if (u) {
      if (first) {
        first = false;
        if (snap.config.retryOn.length) budgetOf(state).request(performance.now());
      }
      // The concurrency cap: take a slot, or wait in line as a held request.
      const max = snap.config.maxConcurrent;
      let slot: Limit | null = null;
      if (max !== null) {
        slot = limitOf(u);
        if (!slot.tryTake(slot.cap(u, max, snap.config.slowStart))) {
          const refused = await queue(slot, deadline, snap.config.waitingPageAfter);
          if (refused) return refused;
          if (!state.current.upstreams.includes(u)) {
            // A reload or deploy replaced it while this waited: pass the slot on and pick again.
            slot.release(slot.cap(u, max, snap.config.slowStart));
            continue;
          }
        }
      }
      const lim = slot;
      let freed = lim === null;
      const free = () => {
        if (freed) return;
        freed = true;
        lim!.release(lim!.cap(u, max!, state.current.config.slowStart));
      };
      if (resend) {
        d.metrics.resend(d.app, resend);
        resend = null;
      }
      const input = {
        // A request that was never held skips watching its client: the hot path stays lean.
        target, method: req.method, headers, body, fresh, signal: wasHeld ? req.signal : null,
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
      if (out.kind !== "response") free();
      if (out.kind === "response") {
        const res = out.response;
        if (resendable && snap.config.retryOn.includes(res.status)) {
          const now = performance.now();
          const at = now + retryDelay(res.headers.get("retry-after"), snap.config.tryInterval);
          if (at < deadline && canHold()) {
            if (budgetOf(state).tryRetry(now)) {
              res.body?.cancel().catch(() => {});
              free();
              retryAt = at;
              resend = "status";
              continue;
            }
            d.metrics.retryBudgetSpent(d.app);
          }
        }
        const h = clientHeaders(res, Math.round(heldMs));
        if ("error" in h) {
          res.body?.cancel().catch(() => {});
          free();
          return done(502, "the upstream sent a response that cannot be relayed", heldMs, `upstream ${u.url}: ${h.error}`);
        }
        const bodyless = req.method === "HEAD" || NULL_BODY_STATUS.has(res.status);
        if (bodyless) res.body?.cancel().catch(() => {});
        u.relaying++;
        u.answers++;
        if (res.status >= 500) u.answers5xx++;
        return finish(d, req, start, {
          status: res.status,
          headers: h.headers,
          body: bodyless ? null : res.body,
          length: bodyless ? null : h.length,
        }, heldMs, u.url, undefined, () => {
          u.relaying--;
          free();
        });
      }
      if (out.kind === "timeout") {
        return done(504, "the upstream sent no response in time", heldMs, `upstream ${u.url} sent no response head within ${snap.config.responseTimeout}ms`);
      }
      if (out.kind === "client-gone") return done(499, "client disconnected", heldMs);
      if (!replayable) return done(502, "the upstream failed", heldMs, `upstream ${u.url} failed: ${out.error}`);
      if (out.failure === "after-send") {
        // It may have seen the request: resend only what is safe to resend. The first resend goes at
        // once (a kept-alive connection the app closed as it was reused); later ones are held a tryInterval.
        if (resendable) {
          retryAt = ++resends > 1 ? performance.now() + snap.config.tryInterval : 0;
          if (retryAt < deadline && (retryAt === 0 || canHold())) {
            resend = out.error === CUT ? "drain" : "empty-reply";
            continue;
          }
        }
        return done(502, "the upstream failed", heldMs, `upstream ${u.url} failed after the request was sent: ${out.error}`);
      }
      u.markDown(out.error); // never sent: hold and retry below
      continue;
    }

    // Hold: wait for a reload, a resume, an upstream coming up, the deadline or the client leaving.
    if (!wasHeld) {
      if (state.held >= snap.config.maxHeld) {
        return done(503, "too many requests are waiting; try again shortly", 0, `maxHeld ${snap.config.maxHeld} reached`, [["retry-after", "1"]]);
      }
      if (heldBytes > 0 && state.heldBodyBytes + heldBytes > snap.config.maxHeldBodyBytes) {
        return done(503, "too many request bodies are waiting; try again shortly", 0, `maxHeldBodyBytes ${snap.config.maxHeldBodyBytes} reached`, [["retry-after", "1"]]);
      }
      wasHeld = true;
    }
    if (performance.now() >= deadline) return heldTooLong(snap.mode, snap.config.tryDuration);
    // A browser held past waitingPageAfter gets a page that reloads itself; API clients stay held.
    const pageAt = snap.config.waitingPageAfter !== null && wantsPage(req) ? start + snap.config.waitingPageAfter : Infinity;
    if (performance.now() >= pageAt) return waitingPage(d, req, start, heldMs);
    state.held++;
    state.heldBodyBytes += heldBytes;
    const since = performance.now();
    const until = retryAt > since ? Math.min(deadline, pageAt, retryAt) : Math.min(deadline, pageAt);
    const why = await state.waiters.wait(until, req.signal);
    state.held--;
    state.heldBodyBytes -= heldBytes;
    heldMs += performance.now() - since;
    if (why === "aborted") return done(499, "client disconnected while held", heldMs);
    if (why === "shutdown") return done(503, "holdup is shutting down", heldMs, undefined, [["retry-after", "5"]]);
    if (why === "deadline" && performance.now() >= deadline) return heldTooLong(state.current.mode, snap.config.tryDuration);
    // A reload, deploy or resume: try the new state now rather than after the pause.
    if (state.current.version !== snap.version) retryAt = 0;
  }

  /**
   * Waits in an upstream's line for a slot (maxConcurrent), counted as held.
   * Resolves null with the slot taken, or with the reply when it cannot wait.
   */
  async function queue(lim: Limit, deadline: number, pageAfter: number | null): Promise<Reply | null> {
    if (!canHold()) {
      return done(503, "too many requests are waiting; try again shortly", heldMs, "maxHeld or maxHeldBodyBytes reached waiting for maxConcurrent", [["retry-after", "1"]]);
    }
    const pageAt = pageAfter !== null && wantsPage(req) ? start + pageAfter : Infinity;
    wasHeld = true;
    state.held++;
    state.heldBodyBytes += heldBytes;
    const since = performance.now();
    const why = await lim.wait(Math.min(deadline, pageAt), req.signal);
    state.held--;
    state.heldBodyBytes -= heldBytes;
    heldMs += performance.now() - since;
    if (why === "ok") return null;
    if (why === "aborted") return done(499, "client disconnected while held", heldMs);
    if (pageAt !== Infinity && performance.now() < deadline) return waitingPage(d, req, start, heldMs);
    return done(503, `the app is busy (maxConcurrent); held for the whole tryDuration (${state.current.config.tryDuration}ms)`, heldMs, undefined, [["retry-after", "5"]]);
  }

  /** Whether this request may be held (for a pause between resends) without passing maxHeld or maxHeldBodyBytes. */
  function canHold(): boolean {
    if (wasHeld) return true;
    return state.held < state.current.config.maxHeld &&
      (heldBytes === 0 || state.heldBodyBytes + heldBytes <= state.current.config.maxHeldBodyBytes);
  }

  function heldTooLong(mode: string, tryDuration: number): Reply {
    const what = mode === "paused" ? "holdup is paused" : "no upstream became reachable";
    return done(503, `${what}; held for the whole tryDuration (${tryDuration}ms)`, heldMs, undefined, [["retry-after", "5"]]);
  }
}

function ownReply(status: number, message: string, heldMs: number, extra?: HeaderList): Reply {
  const headers: HeaderList = [
    ["content-type", "text/plain; charset=utf-8"],
    ["x-holdup-held-ms", String(Math.round(heldMs))],
  ];
  if (extra) headers.push(...extra);
  return { status, headers, body: `holdup: ${message}\n` };
}

function stopped(d: ProxyDeps, req: Incoming, start: number, message: string, heldMs = 0): Reply {
  const text = message || "This service is down for maintenance. Please try again soon.";
  const html = (req.header("accept") ?? "").includes("text/html");
  const headers: HeaderList = [
    ["retry-after", "30"],
    ["x-holdup-held-ms", String(Math.round(heldMs))],
    ["cache-control", "no-store"],
    ["content-type", html ? "text/html; charset=utf-8" : "text/plain; charset=utf-8"],
  ];
  const body = html ? maintenancePage(text) : text + "\n";
  return finish(d, req, start, { status: 503, headers, body }, heldMs, null, "stopped");
}

function wantsPage(req: Incoming): boolean {
  return (req.method === "GET" || req.method === "HEAD") && (req.header("accept") ?? "").includes("text/html");
}

/** `--waiting-page-after`: a small "starting…" page that reloads itself, for browsers held that long. */
function waitingPage(d: ProxyDeps, req: Incoming, start: number, heldMs: number): Reply {
  const headers: HeaderList = [
    ["retry-after", "2"],
    ["x-holdup-held-ms", String(Math.round(heldMs))],
    ["cache-control", "no-store"],
    ["content-type", "text/html; charset=utf-8"],
  ];
  const body = req.method === "HEAD" ? null : `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="2"><title>Starting…</title>
<style>body{font:18px/1.5 system-ui,sans-serif;max-width:36em;margin:15vh auto;padding:0 1em;color:#222}</style>
</head><body><h1>Starting…</h1><p>The service is starting. This page reloads itself in a moment.</p></body></html>
`;
  return finish(d, req, start, { status: 503, headers, body }, heldMs, null, "waiting page");
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

/** Counts and logs the reply once it is decided (a streamed body: once it has been sent). */
function finish(
  d: ProxyDeps,
  req: Incoming,
  start: number,
  reply: Reply,
  heldMs: number,
  upstream: string | null,
  reason?: string,
  /** Called once the body has been relayed (or abandoned). */
  relayed?: () => void,
): Reply {
  d.metrics.request(reply.status, heldMs, d.app);
  if (!d.log.accessEnabled) {
    if (relayed) reply.onDone = relayed;
    return reply;
  }
  const method = req.method, path = req.target, status = reply.status;
  reply.onDone = (bytes, complete) => {
    relayed?.();
    d.log.access({
      method, path, status, bytes, durationMs: performance.now() - start, heldMs, upstream,
      reason: complete ? reason : reason ?? "response cut short",
    });
  };
  return reply;
}
