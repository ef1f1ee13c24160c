/**
 * Backpressure for node streams: after a write() that returned false, wait
 * for "drain" — or "close", so that a peer that went away never leaves the
 * writer waiting forever. Used by the listener's body pump, the Deno upstream
 * client's request-body pump and the WebSocket tunnel.
 */
interface Emitter {
  on(event: "drain" | "close", fn: () => void): unknown;
  off(event: "drain" | "close", fn: () => void): unknown;
}

/** Calls `fn` once, at the first "drain" or "close" of `w`. */
export function onDrain(w: Emitter, fn: () => void): void {
  const go = () => {
    w.off("drain", go);
    w.off("close", go);
    fn();
  };
  w.on("drain", go);
  w.on("close", go);
}

/** Resolves at the first "drain" or "close" of `w`. */
export function drained(w: Emitter): Promise<void> {
  return new Promise((resolve) => onDrain(w, resolve));
}
