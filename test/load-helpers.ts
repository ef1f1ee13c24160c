/**
 * Helpers of the tests that restart or replace what serves under load (run,
 * app-lifecycle, serial, upgrade): looping keep-alive clients that record
 * every answer, the check that none failed, and a temporary directory per test.
 * Kept apart from helpers.ts, which is near the 450-line mark.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Runs `fn` with a new temporary directory, removed afterwards whatever happens. */
export async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "holdup-test-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One answer (or failure: status 0) seen by a looping client. */
export interface LoadResult {
  /** Date.now() when it was sent. */
  sentAt: number;
  status: number;
  /** The answering app's pid: its JSON body's `pid` as is; null when the body is not JSON. */
  pid: number | null;
  ms: number;
  /** The body of a non-200 answer, or the fetch error with its cause. */
  error?: string;
}

/** `clients` loops of GETs (fetch: keep-alive) to `${url}/c<client>/<n>` until stop(). */
export function load(url: string, clients: number): { results: LoadResult[]; stop(): Promise<LoadResult[]> } {
  const results: LoadResult[] = [];
  let stopped = false;
  const loops = Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; !stopped; i++) {
      const sentAt = Date.now();
      const t0 = performance.now();
      try {
        const r = await fetch(`${url}/c${c}/${i}`);
        const text = await r.text();
        let pid: number | null = null;
        try {
          pid = JSON.parse(text).pid;
        } catch { /* not the app's answer */ }
        results.push({ sentAt, status: r.status, pid, ms: performance.now() - t0, ...(r.status !== 200 ? { error: text } : {}) });
      } catch (e) {
        results.push({ sentAt, status: 0, pid: null, ms: performance.now() - t0, error: `${e} ${(e as { cause?: unknown }).cause ?? ""}` });
      }
    }
  });
  return {
    results,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      return results;
    },
  };
}

/** Every result is a 200, and there are at least `min` of them. */
export function assertOk(results: Array<{ status: number; error?: string }>, min: number): void {
  const bad = results.filter((r) => r.status !== 200);
  assert.equal(bad.length, 0, `${bad.length} of ${results.length} failed: ${JSON.stringify(bad.slice(0, 3))}`);
  assert.ok(results.length >= min, `only ${results.length} requests`);
}
