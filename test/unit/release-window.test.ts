// ReleaseWindow (apps/release-window.ts), on a clock the test moves: it starts at 4, grows by one
// per fast answer, not on slow ones, halves when an attempt is overtaken and left unanswered (a
// dropped SYN) and frees that slot, is not fooled by a pause that delays every attempt alike, and
// starts over when idle. A fake clock: real time cannot make "no answer for 50 ms" deterministic.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ReleaseWindow, WINDOW_MIN } from "../../src/apps/release-window.ts";

function windowAt(max = 128) {
  const clock = { t: 0 };
  return { w: new ReleaseWindow(max, () => clock.t), clock };
}

/** Starts `n` attempts; returns their tickets (those that got a slot now) and the waiters. */
function start(w: ReleaseWindow, n: number) {
  const got: number[] = [];
  const waiting = Array.from({ length: n }, () => w.acquire().then((t) => got.push(t)));
  return { got, waiting };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

test("release window: starts at 4, first come first served; each fast answer grows it by one, up to max", async () => {
  const { w, clock } = windowAt(6);
  assert.equal(w.size, WINDOW_MIN);
  const { got } = start(w, 10);
  await tick();
  assert.deepEqual(got, [0, 1, 2, 3], "4 slots at first, in order");
  clock.t = 2;
  w.done(0); // 2 ms: the fastest so far
  await tick();
  assert.equal(w.size, 5);
  assert.deepEqual(got, [0, 1, 2, 3, 4, 5], "the freed slot and the new one go to the next two in line");
  w.done(1);
  w.done(2);
  await tick();
  assert.equal(w.size, 6, "never past max");
  assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 8], "6 in flight: 3 to 8");
});

test("release window: answers much slower than the fastest do not grow it (the app is queueing them)", async () => {
  const { w, clock } = windowAt();
  start(w, 8);
  await tick();
  clock.t = 2;
  w.done(0); // fastest: 2 ms → size 5
  assert.equal(w.size, 5);
  clock.t = 10; // 10 ms > 1.5 × 2 + 1
  w.done(1);
  w.done(2);
  assert.equal(w.size, 5);
});

/** Attempts through `w`; `round(except)` answers every one in flight (oldest first) 1 ms on, but `except`. */
function sim(w: ReleaseWindow, clock: { t: number }, n: number) {
  const { got } = start(w, n);
  const answered = new Set<number>();
  const flying = () => got.filter((x) => !answered.has(x)).sort((a, b) => a - b);
  const answer = (t: number) => {
    answered.add(t);
    w.done(t);
  };
  return {
    flying,
    answer,
    async round(except = -1, ms = 1) {
      clock.t += ms;
      for (const t of flying()) if (t !== except) answer(t);
      await tick();
    },
  };
}

test("release window: an attempt left unanswered while later ones answer (a dropped SYN) halves it once and keeps no slot", async () => {
  const { w, clock } = windowAt(16);
  const s = sim(w, clock, 2000);
  await tick();
  const lost = 0; // ticket 0 never answers
  for (let i = 0; i < 3; i++) await s.round(lost);
  assert.equal(w.size, 16, "doubling each round of fast answers: 4, 8, 16 (max)");
  for (let i = 0; i < 47; i++) await s.round(lost);
  assert.equal(w.size, 16, "50 ms: not stuck yet");
  await s.round(lost); // 51 ms unanswered, overtaken by 50 rounds: stuck
  assert.ok(w.size >= 8 && w.size <= 9, `halved to 8, then one per round: ${w.size}`);
  assert.equal(s.flying().length, w.size + 1, "the window's attempts in flight, and the lost one beside them");
  const after = w.size;
  await s.round(lost);
  assert.ok(w.size <= after + 2, `from now on about one per round, not one per answer: ${after} → ${w.size}`);
  const now = w.size;
  clock.t += 1000;
  s.answer(lost); // its resent SYN got through: a late answer grows nothing
  assert.equal(w.size, now);
});

test("release window: a pause that delays every attempt alike (GC, a busy holdup) is no dropped SYN: no cut", async () => {
  const { w, clock } = windowAt();
  const s = sim(w, clock, 500);
  await tick();
  for (let i = 0; i < 3; i++) await s.round();
  assert.equal(w.size, 32);
  await s.round(-1, 300); // nothing answered for 300 ms, then every one, oldest first
  assert.equal(w.size, 32, "slow answers do not grow it, and none was overtaken");
});

test("release window: idle, it starts over at 4", async () => {
  const { w, clock } = windowAt();
  const { got } = start(w, 6);
  await tick();
  clock.t = 1;
  for (const t of [0, 1, 2, 3]) w.done(t);
  await tick();
  assert.ok(w.size > WINDOW_MIN);
  for (const t of got.filter((x) => x > 3)) w.done(t);
  assert.equal(w.size, WINDOW_MIN);
});
