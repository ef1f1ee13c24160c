// Gate: at most `limit` holders, first come first served, a waiter may leave the line.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Gate } from "../../src/util/gate.ts";

test("gate: free slots are taken at once; the rest wait in order", async () => {
  const g = new Gate(2);
  assert.equal(g.acquire(), null);
  assert.equal(g.acquire(), null);
  const order: number[] = [];
  const waits = [1, 2, 3].map((n) => g.acquire()!.then(() => order.push(n)));
  g.release();
  await waits[0];
  assert.deepEqual(order, [1], "a release passes its slot straight to the first in line");
  g.release();
  g.release();
  await Promise.all(waits);
  assert.deepEqual(order, [1, 2, 3]);
  // Three holders released in turn: 2 slots free again.
  g.release();
  g.release();
  assert.equal(g.acquire(), null);
  assert.equal(g.acquire(), null);
  assert.notEqual(g.acquire(), null, "full again at the limit");
});

test("gate: a waiter that gives up leaves the line and does not take a slot", async () => {
  const g = new Gate(1);
  assert.equal(g.acquire(), null);
  const ac = new AbortController();
  const leaving = g.acquire(ac.signal)!;
  const staying = g.acquire()!;
  ac.abort(new Error("client left"));
  await assert.rejects(leaving, /client left/);
  g.release();
  await staying; // the slot went to the next one still in line
  const already = new AbortController();
  already.abort(new Error("gone before"));
  await assert.rejects(g.acquire(already.signal)!, /gone before/);
});
