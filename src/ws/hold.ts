/**
 * The hold loop of a WebSocket handshake, shared by the byte tunnel
 * (upgrade.ts) and the edge relay (relay.ts): held exactly as a request is,
 * until an upstream is ready, its deadline, its client leaving or shutdown.
 * `attempt` returns RETRY when the upstream was never reached.
 */
import type { Snapshot, State } from "../apps/state.ts";
import type { Upstream } from "../apps/upstream.ts";

export const RETRY: unique symbol = Symbol("retry");

export type HoldEnd<T> =
  /** `attempt` returned this. */
  | { kind: "done"; value: T }
  /** holdup answers the handshake itself: `detail` is for the log. */
  | { kind: "refuse"; status: number; message: string; detail?: string; headers: [string, string][] }
  /** The client left while held. */
  | { kind: "gone" };

/** Arrival time and time held so far (performance.now() ms); `heldMs` grows while held. */
export interface HoldClock {
  readonly start: number;
  heldMs: number;
}

export async function holdForUpstream<T>(
  state: State,
  clock: HoldClock,
  signal: AbortSignal,
  attempt: (u: Upstream, snap: Snapshot) => Promise<T | typeof RETRY>,
): Promise<HoldEnd<T>> {
  const refuse = (status: number, message: string, detail: string | undefined, retryAfter: string): HoldEnd<T> =>
    ({ kind: "refuse", status, message, detail, headers: [["retry-after", retryAfter]] });
  let wasHeld = false;
  for (;;) {
    const snap = state.current;
    if (snap.mode === "stopped") return refuse(503, snap.stopMessage || "this service is down for maintenance", "stopped", "30");
    if (state.websockets.closing) return refuse(503, "holdup is shutting down", undefined, "5");
    const deadline = clock.start + snap.config.tryDuration;
    const u = snap.mode === "running" ? state.pick(snap) : null;
    if (u) {
      const r = await attempt(u, snap);
      if (r === RETRY) continue; // never reached it: hold and retry
      return { kind: "done", value: r };
    }

    // Hold, exactly as a request is held.
    if (!wasHeld) {
      if (state.held >= snap.config.maxHeld) {
        return refuse(503, "too many requests are waiting; try again shortly", `maxHeld ${snap.config.maxHeld} reached`, "1");
      }
      wasHeld = true;
    }
    const holdTooLong = () => {
      const what = state.current.mode === "paused" ? "holdup is paused" : "no upstream became reachable";
      return refuse(503, `${what}; held for the whole tryDuration (${snap.config.tryDuration}ms)`, undefined, "5");
    };
    if (performance.now() >= deadline) return holdTooLong();
    state.held++;
    const since = performance.now();
    const why = await state.waiters.wait(deadline, signal);
    state.held--;
    clock.heldMs += performance.now() - since;
    if (why === "aborted") return { kind: "gone" };
    if (why === "shutdown") return refuse(503, "holdup is shutting down", undefined, "5");
    if (why === "deadline") return holdTooLong();
  }
}

/** The path part of an upstream's URL ("" for none): an upstream with a base path gets it before the client's path. */
export function basePath(u: Upstream): string {
  const i = u.url.indexOf("/", u.url.indexOf("//") + 2);
  return i < 0 ? "" : u.url.slice(i).replace(/\/$/, "");
}
