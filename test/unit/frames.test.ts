// The Close frames holdup writes, and what FrameTracker reads from them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { clientClose, FrameTracker, serverClose } from "../../src/ws/frames.ts";

test("frames: a server Close is unmasked, a client Close masked; both read back the same", () => {
  const s = serverClose(1012, "service restart");
  const c = clientClose(1012, "service restart");
  assert.equal(s[0], 0x88, "FIN + opcode 8");
  assert.equal(s[1] & 0x80, 0, "server frames are not masked");
  assert.equal(c[1] & 0x80, 0x80, "client frames are masked");
  for (const f of [s, c]) {
    const t = new FrameTracker();
    let seen: [number, string] | null = null;
    t.onClose = (code, reason) => seen = [code, reason];
    assert.equal(t.feed(f), f.byteLength);
    assert.deepEqual(seen, [1012, "service restart"]);
    assert.ok(t.atBoundary);
    assert.equal(t.messages, 0, "a Close is not a data message");
  }
});

test("frames: a Close reason is cut to fit the 125-byte control payload", () => {
  const f = serverClose(1001, "x".repeat(300));
  assert.equal(f.byteLength, 2 + 125);
  const t = new FrameTracker();
  t.feed(f);
  assert.equal(t.close?.reason.length, 123);
});

test("frames: a Close with no payload reads as 1005; only the first Close counts", () => {
  const t = new FrameTracker();
  t.feed(new Uint8Array([0x88, 0x00]));
  t.feed(serverClose(1000, "later"));
  assert.deepEqual(t.close, { code: 1005, reason: "" });
});

test("frames: with stopAtBoundary, feed stops between two frames", () => {
  const text = new Uint8Array([0x81, 0x02, 0x68, 0x69]); // "hi", unmasked
  const both = new Uint8Array([...text, ...text]);
  const t = new FrameTracker();
  assert.equal(t.feed(both, 0, true), 0, "already at a boundary: nothing read");
  assert.equal(t.feed(both, 0, false), both.byteLength);
  assert.equal(t.messages, 2);
  const u = new FrameTracker();
  assert.equal(u.feed(both.subarray(0, 3)), 3);
  assert.ok(!u.atBoundary, "inside a frame");
  assert.equal(u.feed(both, 3, true), 4, "stops at the end of the first frame");
  assert.ok(u.atBoundary);
});
