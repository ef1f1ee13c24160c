/**
 * HTTP/2 limits per session, against one TLS connection fanning out into
 * thousands of upstream requests:
 * - SETTINGS_MAX_CONCURRENT_STREAMS (128, as nginx; Caddy sends 250): without
 *   it Deno's node:http2 announces no limit, and one connection became 10,000
 *   concurrent upstream requests. Deno, Bun and Node honour
 *   `settings.maxConcurrentStreams` on createSecureServer.
 * - rapid reset (CVE-2023-44487): a client that opens and resets streams is
 *   never bound by the stream limit (a reset frees its slot). Each reset
 *   stream's request is cancelled upstream (its 'aborted' event, see
 *   listener.ts), and past RESET_LIMIT resets within RESET_WINDOW_MS the
 *   session gets GOAWAY (ENHANCE_YOUR_CALM) and is closed.
 */
import type http2 from "node:http2";

export const H2_MAX_STREAMS = 128;
/** Client resets of streams tolerated per session within RESET_WINDOW_MS. */
export const RESET_LIMIT = 100;
export const RESET_WINDOW_MS = 10_000;
const ENHANCE_YOUR_CALM = 0xb;

export const h2Settings: http2.Settings = { maxConcurrentStreams: H2_MAX_STREAMS };

/**
 * Counts the streams of `session` that the client reset; past the limit,
 * calls `onFlood` once and closes the session. Returns what to call for
 * each new stream.
 */
export function resetGuard(session: http2.ServerHttp2Session, onFlood: () => void): (stream: http2.ServerHttp2Stream) => void {
  let windowStart = 0, resets = 0, flooded = false;
  return (stream) => {
    stream.once("aborted", () => {
      const now = Date.now();
      if (now - windowStart > RESET_WINDOW_MS) {
        windowStart = now;
        resets = 0;
      }
      if (++resets <= RESET_LIMIT || flooded) return;
      flooded = true;
      onFlood();
      try {
        session.goaway(ENHANCE_YOUR_CALM);
      } catch { /* already closing */ }
      session.destroy();
    });
  };
}
