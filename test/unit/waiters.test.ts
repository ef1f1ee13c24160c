// Each reason a held request wakes (WakeReason), on Waiters alone and through State.
import { test } from "node:test";
import assert from "node:assert/strict";
import { State, Waiters } from "../../src/apps/state.ts";
import { defaultLayer, type Layer, resolve } from "../../src/config/layers.ts";
import { runtime } from "../../src/runtime/index.ts";

const soon = () => performance.now() + 60_000;

test("wake: 'changed' wakes every waiter at once", async () => {
  const w = new Waiters();
  const all = [w.wait(soon(), null), w.wait(soon(), null)];
  assert.equal(w.size, 2);
  w.wakeAll();
  assert.deepEqual(await Promise.all(all), ["changed", "changed"]);
  assert.equal(w.size, 0, "a woken waiter leaves the set");
});

test("wake: 'deadline' when its own deadline passes, and only that one", async () => {
  const w = new Waiters();
  const short = w.wait(performance.now() + 30, null);
  const long = w.wait(soon(), null);
  assert.equal(await short, "deadline");
  assert.equal(w.size, 1);
  w.wakeAll();
  assert.equal(await long, "changed");
});

test("wake: 'aborted' when its client leaves (and at once if it already had)", async () => {
  const w = new Waiters();
  const ac = new AbortController();
  const p = w.wait(soon(), ac.signal);
  ac.abort();
  assert.equal(await p, "aborted");
  assert.equal(await w.wait(soon(), ac.signal), "aborted");
  assert.equal(w.size, 0);
});

test("wake: 'shutdown' on close, and every later wait answers at once", async () => {
  const w = new Waiters();
  const p = w.wait(soon(), null);
  w.close();
  assert.equal(await p, "shutdown");
  assert.equal(await w.wait(soon(), null), "shutdown");
});

function stateOf(raw: Layer["raw"]): State {
  const r = resolve([defaultLayer({ stderrIsTTY: false }), { source: "flag", label: "test", raw }]);
  if ("errors" in r) throw new Error(JSON.stringify(r.errors));
  return new State(r.effective, runtime, { onUpstreamStatus() {} });
}

test("wake: a reload, a pause/resume and an upstream coming up each wake the held (State)", async () => {
  const s = stateOf({ upstreams: ["http://127.0.0.1:1"] } as Layer["raw"]);
  const r = resolve([defaultLayer({ stderrIsTTY: false }), { source: "flag", label: "test", raw: { upstreams: ["http://127.0.0.1:2"] } as Layer["raw"] }]);
  if ("errors" in r) throw new Error("config");
  let p = s.waiters.wait(soon(), null);
  s.applyConfig(r.effective);
  assert.equal(await p, "changed", "reload");
  assert.equal(s.current.version, 2);
  assert.deepEqual(s.current.upstreams.map((u) => u.url), ["http://127.0.0.1:2"], "the woken read the new snapshot whole");

  p = s.waiters.wait(soon(), null);
  s.setMode("paused");
  assert.equal(await p, "changed", "pause");
  p = s.waiters.wait(soon(), null);
  s.setMode("running");
  assert.equal(await p, "changed", "resume");

  p = s.waiters.wait(soon(), null);
  s.current.upstreams[0].markUp();
  assert.equal(await p, "changed", "an upstream came up");
  assert.equal(s.pick(s.current)?.url, "http://127.0.0.1:2");
  s.retire();
});
