/**
 * Automatic rollback (`rollbackWindow`): for that long after a deploy's or a
 * restart's switch, the new upstreams' answers are watched; if they all go
 * down (a restarted instance: exits), or at least half of their answers (over
 * at least MIN_ANSWERS) are 5xx, the new version is judged bad and control.ts
 * (deploys) or run/supervisor.ts (restarts) switches back to what it replaced.
 * Reads the counters the hold loop keeps on each Upstream; nothing here runs
 * per request.
 */
import type { Layer } from "../config/layers.ts";
import type { Upstream } from "../apps/upstream.ts";

/** Answers needed before a 5xx share can condemn a deploy. */
export const MIN_ANSWERS = 10;
const EVERY_MS = 50;
/**
 * An instance that crashes is usually seen refusing connections a few ms before
 * its exit reaches holdup (through the wrapper's pipe): wait this long for the
 * exit so the rollback names its cause ("exited (exit code 1)"), not the symptom.
 */
const EXIT_GRACE_MS = 250;

/**
 * Watches `urls` in `state` (an app's) for `windowMs`. Resolves with why the
 * new version is bad — `exited` resolving (a restarted instance dying) too —
 * or null when the window passed cleanly (or another change replaced them).
 */
export async function watchDeploy(
  state: { current: { upstreams: readonly Upstream[] } },
  urls: string[],
  windowMs: number,
  exited?: Promise<string>,
): Promise<string | null> {
  let died: string | null = null;
  void exited?.then((why) => died = why);
  const picked = () => state.current.upstreams.filter((u) => urls.includes(u.url));
  const start = new Map(picked().map((u) => [u, { answers: u.answers, errors: u.answers5xx }]));
  const end = performance.now() + windowMs;
  while (performance.now() < end) {
    const tick = new Promise((r) => setTimeout(r, EVERY_MS));
    await (exited ? Promise.race([tick, exited]) : tick);
    if (died) return died;
    const now = picked();
    if (now.length !== urls.length) return null; // a reload or another deploy changed them: not ours to judge
    let answers = 0, errors = 0;
    for (const u of now) {
      const base = start.get(u) ?? { answers: 0, errors: 0 };
      answers += u.answers - base.answers;
      errors += u.answers5xx - base.errors;
    }
    if (answers >= MIN_ANSWERS && errors * 2 >= answers) return `${errors} of its ${answers} answers were 5xx`;
    if (now.every((u) => u.status === "down")) {
      if (exited) await Promise.race([exited, new Promise((r) => setTimeout(r, EXIT_GRACE_MS))]);
      return died ?? `it went down (${now[0].lastError ?? "unreachable"})`;
    }
  }
  return null;
}

/** The reload layer that puts `app` back on `to`. */
export function rollbackLayer(app: string, to: string[], explicitApps: boolean): Layer {
  const raw = explicitApps ? { apps: [{ name: app, upstreams: to }] } : { upstreams: to };
  return { source: "reload", label: `rollback ${app}`, raw: raw as Layer["raw"] };
}
