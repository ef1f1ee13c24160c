/**
 * The hold-and-retry loop: how one client request becomes one response.
 * Each pass reads the current snapshot once, picks a ready upstream and makes
 * one attempt; with none ready the request is held in `state.waiters`. The
 * retry policy (what is resent, what is 502/504): docs/design/hold.md.
 */
import { attempt } from "./attempt.ts";
import { type Body, bodySize, prepareBody, TooLarge } from "./body.ts";
import { account } from "./front.ts";
import { type Limit, limitOf } from "./limit.ts";
import { budgetOf, retryDelay } from "./retry.ts";
import { CUT } from "../apps/upstream.ts";
import { clientHeaders, upstreamHeaders } from "./headers.ts";
import { requestId } from "./requestid.ts";
import type { Logger } from "../observe/log.ts";
import type { Metrics } from "../observe/metrics.ts";
import { kindFor, type PageKind, type PageSet, render } from "./pages.ts";
import type { Runtime } from "../runtime/types.ts";
import type { HeaderList, Incoming, Reply } from "../serve/types.ts";
import type { State } from "../apps/state.ts";

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);
const NULL_BODY_STATUS = new Set([101, 204, 205, 304]);

export interface ProxyDeps {
  state: State;
  runtime: Runtime;
  log: Logger;
  metrics: Metrics;
  /** The app's name, for metrics and the access log. */
  app: string;
  /** `--pages DIR`: the operator's templates (null: the built-in pages). Swapped whole on reload. */
  pages: { set: PageSet | null };
}

/** `target`: the path and query to send upstream (the request's own, less a stripped app prefix). */
export async function proxy(req: Incoming, d: ProxyDeps, target: string = req.target): Promise<Reply> {
  const start = performance.now();
  const { state } = d;
  let snap = state.current;
  const rid = requestId(req.header("x-request-id"));
  // What the client reads is short and says what happened; the detail (upstream, error) goes to the log.
  const done = (status: number, message: string, heldMs: number, detail?: string, retryAfter: number | null = null, extra?: HeaderList) => {
    const reply = ownReply(d, req, rid, kindFor(status), status, message, heldMs, retryAfter);
    if (extra) reply.headers.push(...extra);
    return finish(d, req, rid, start, reply, heldMs, null, detail ?? message);
  };

  if (snap.mode === "stopped") return stopped(d, req, rid, start, snap.stopMessage);

  let body: Body;
  try {
    body = await prepareBody(req, snap.config.maxBodyBuffer, snap.config.maxBody);
  } catch (e) {
    if (e instanceof TooLarge) {
      // The rest of the body stays unread: the connection closes after the answer.
      return done(413, `the request body is larger than maxBody (${snap.config.maxBody} bytes)`, 0, undefined, null, [["connection", "close"]]);
    }
    return done(499, "client disconnected while sending the body", 0);
  }
  const headers = upstreamHeaders(req, rid);
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
    if (snap.mode === "stopped") return stopped(d, req, rid, start, snap.stopMessage, heldMs);
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
        // A client that leaves cancels its upstream request (the fetch is aborted, its connection closed), as nginx
        // and Caddy do.
        target, method: req.method, headers, body, fresh, released: wasHeld && !fresh,
        signal: req.signal,
        responseTimeout: snap.config.responseTimeout,
      };
      let out;
      if (wasHeld) {
        // Released requests go out through a window that grows as the app answers (apps/release-window.ts).
        const ticket = await state.releaseWindow.acquire();
        try {
          out = await attempt(d.runtime, u, input);
        } finally {
          state.releaseWindow.done(ticket);
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
        const h = clientHeaders(res, Math.round(heldMs), rid);
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
        return finish(d, req, rid, start, {
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
      if (out.failure === "after-send" || out.failure === "bad-response") {
        // It may have seen the request: resend only what is safe to resend. The first resend goes at
        // once (a kept-alive connection the app closed as it was reused); later ones are held a tryInterval.
        // An answer that cannot be parsed is an answer, not "not ready": 502 at once.
        if (resendable && out.failure === "after-send") {
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
        return done(503, "too many requests are waiting; try again shortly", 0, `maxHeld ${snap.config.maxHeld} reached`, 1);
      }
      if (heldBytes > 0 && state.heldBodyBytes + heldBytes > snap.config.maxHeldBodyBytes) {
        return done(503, "too many request bodies are waiting; try again shortly", 0, `maxHeldBodyBytes ${snap.config.maxHeldBodyBytes} reached`, 1);
      }
      wasHeld = true;
    }
    if (performance.now() >= deadline) return heldTooLong(snap.mode, snap.config.tryDuration);
    // A browser held past waitingPageAfter gets a page that reloads itself; API clients stay held.
    const pageAt = snap.config.waitingPageAfter !== null && wantsPage(req) ? start + snap.config.waitingPageAfter : Infinity;
    if (performance.now() >= pageAt) return waitingPage(d, req, rid, start, heldMs);
    state.held++;
    state.heldBodyBytes += heldBytes;
    const mark = { at: start };
    state.heldSince.add(mark);
    const since = performance.now();
    const until = retryAt > since ? Math.min(deadline, pageAt, retryAt) : Math.min(deadline, pageAt);
    const why = await state.waiters.wait(until, req.signal);
    state.held--;
    state.heldBodyBytes -= heldBytes;
    state.heldSince.delete(mark);
    heldMs += performance.now() - since;
    if (why === "aborted") return done(499, "client disconnected while held", heldMs);
    if (why === "shutdown") return done(503, "holdup is shutting down", heldMs, undefined, 5);
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
      return done(503, "too many requests are waiting; try again shortly", heldMs, "maxHeld or maxHeldBodyBytes reached waiting for maxConcurrent", 1);
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
    if (pageAt !== Infinity && performance.now() < deadline) return waitingPage(d, req, rid, start, heldMs);
    return done(503, `the app is busy (maxConcurrent); held for the whole tryDuration (${state.current.config.tryDuration}ms)`, heldMs, undefined, 5);
  }

  /** Whether this request may be held (for a pause between resends) without passing maxHeld or maxHeldBodyBytes. */
  function canHold(): boolean {
    if (wasHeld) return true;
    return state.held < state.current.config.maxHeld &&
      (heldBytes === 0 || state.heldBodyBytes + heldBytes <= state.current.config.maxHeldBodyBytes);
  }

  function heldTooLong(mode: string, tryDuration: number): Reply {
    const what = mode === "paused" ? "holdup is paused" : "no upstream became reachable";
    return done(503, `${what}; held for the whole tryDuration (${tryDuration}ms)`, heldMs, undefined, 5);
  }
}

/** One of holdup's own answers: HTML, JSON or plain text (see pages.ts), with the request id and Retry-After. */
function ownReply(
  d: ProxyDeps,
  req: Incoming,
  rid: string,
  kind: PageKind | null,
  status: number,
  message: string,
  heldMs: number,
  retryAfter: number | null,
  plain = `holdup: ${message}`,
): Reply {
  const page = render(req, kind, { status, message, requestId: rid, retryAfter, app: d.app }, d.pages.set, plain);
  const headers: HeaderList = page.headers;
  headers.push(["x-holdup-held-ms", String(Math.round(heldMs))], ["x-request-id", rid]);
  if (retryAfter !== null) headers.push(["retry-after", String(retryAfter)]);
  if (kind === "stop" || kind === "waiting") headers.push(["cache-control", "no-store"]);
  return { status, headers, body: req.method === "HEAD" ? null : page.body };
}

function stopped(d: ProxyDeps, req: Incoming, rid: string, start: number, message: string, heldMs = 0): Reply {
  const text = message || "This service is down for maintenance. Please try again soon.";
  return finish(d, req, rid, start, ownReply(d, req, rid, "stop", 503, text, heldMs, 30, text), heldMs, null, "stopped");
}

function wantsPage(req: Incoming): boolean {
  return (req.method === "GET" || req.method === "HEAD") && (req.header("accept") ?? "").includes("text/html");
}

/** `--waiting-page-after`: a small "starting…" page that reloads itself, for browsers held that long. */
function waitingPage(d: ProxyDeps, req: Incoming, rid: string, start: number, heldMs: number): Reply {
  const message = "The service is starting. This page reloads itself in a moment.";
  return finish(d, req, rid, start, ownReply(d, req, rid, "waiting", 503, message, heldMs, 2), heldMs, null, "waiting page");
}

/** Counts and logs the reply once it is decided (a streamed body: once it has been sent). */
function finish(
  d: ProxyDeps,
  req: Incoming,
  requestId: string,
  start: number,
  reply: Reply,
  heldMs: number,
  upstream: string | null,
  reason?: string,
  /** Called once the body has been relayed (or abandoned). */
  relayed?: () => void,
): Reply {
  const line = account(d, { app: d.app, method: req.method, path: req.target, status: reply.status, heldMs, start, requestId });
  if (!line) {
    if (relayed) reply.onDone = relayed;
    return reply;
  }
  reply.onDone = (bytes, complete) => {
    relayed?.();
    line(bytes, upstream, complete ? reason : reason ?? "response cut short");
  };
  return reply;
}
