/**
 * One forwarding attempt: send the request to one upstream and wait for its
 * response head, at most responseTimeout. The outcome says what happened in
 * terms the hold loop can act on; the retry policy lives there, not here.
 */
import type { Runtime } from "../runtime/types.ts";
import { CUT, type Upstream } from "../apps/upstream.ts";
import { type Body, bodyInit } from "./body.ts";
import { Deadlines } from "../util/deadlines.ts";
import { classifyFailure, describeFailure, type FailureKind } from "./errors.ts";

export type Outcome =
  | { kind: "response"; response: Response }
  | { kind: "failed"; failure: FailureKind; error: string }
  | { kind: "timeout" }
  | { kind: "client-gone" };

const TIMEOUT = "response timeout";
const CLIENT_GONE = "client disconnected";
const deadlines = new Deadlines();

export interface AttemptInput {
  /** Path and query, e.g. "/a/b?c=d". */
  target: string;
  method: string;
  headers: [string, string][];
  body: Body;
  /** See UpstreamInit.fresh. */
  fresh: boolean;
  /** The client's signal: a disconnect aborts the attempt. */
  signal: AbortSignal;
  responseTimeout: number;
}

export async function attempt(runtime: Runtime, u: Upstream, a: AttemptInput): Promise<Outcome> {
  if (a.signal.aborted) return { kind: "client-gone" }; // left while waiting its turn: send nothing
  const abort = new AbortController();
  const deadline = { at: performance.now() + a.responseTimeout, onExpire: () => abort.abort(TIMEOUT) };
  deadlines.add(deadline, a.responseTimeout);
  const onClientGone = () => abort.abort(CLIENT_GONE);
  a.signal.addEventListener("abort", onClientGone);
  u.attempts++;
  u.inFlight++;
  u.active.add(abort);
  try {
    const response = await runtime.fetchUpstream(u.url + a.target, {
      method: a.method,
      headers: a.headers,
      body: bodyInit(a.body),
      signal: abort.signal,
      fresh: a.fresh,
    });
    return { kind: "response", response };
  } catch (error) {
    if (abort.signal.aborted) {
      const why = abort.signal.reason;
      if (why === CUT) return { kind: "failed", failure: "after-send", error: CUT };
      return why === TIMEOUT ? { kind: "timeout" } : { kind: "client-gone" };
    }
    return { kind: "failed", failure: classifyFailure(error), error: describeFailure(error) };
  } finally {
    deadlines.delete(deadline);
    a.signal.removeEventListener("abort", onClientGone);
    u.inFlight--;
    u.active.delete(abort);
  }
}
