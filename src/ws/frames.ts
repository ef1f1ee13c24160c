/**
 * Just enough of RFC 6455 framing for a raw byte tunnel: a tracker that follows
 * frame boundaries in one direction without copying payloads (so holdup knows
 * when it may insert a Close frame, and sees close codes and message counts),
 * and the two Close frames holdup writes itself.
 */

/** Follows the frames of one direction of a WebSocket byte stream. */
export class FrameTracker {
  /** Header bytes of the frame being read (at most 2 + 8 + 4). */
  private hdr = new Uint8Array(14);
  private hdrLen = 0;
  /** Payload bytes left in the current frame; -1 while reading a header. */
  private remaining = -1;
  private opcode = 0;
  private fin = false;
  private mask: Uint8Array | null = null;
  /** The payload of a Close frame being read, unmasked (codes and reasons are at most 125 bytes). */
  private closePayload: number[] | null = null;
  private payloadPos = 0;
  /** Complete data messages seen (a frame with FIN and opcode 0, 1 or 2). */
  messages = 0;
  bytes = 0;
  /** The first Close frame seen in this direction: code (1005 when it carried none) and reason. */
  close: { code: number; reason: string } | null = null;
  /** Called when a Close frame has been read whole. */
  onClose: ((code: number, reason: string) => void) | null = null;

  /** True between frames: a frame of holdup's own may be written to this direction's receiver now. */
  get atBoundary(): boolean {
    return this.remaining === -1 && this.hdrLen === 0;
  }

  /**
   * Reads `chunk` from `from`. With `stopAtBoundary`, stops at the first frame
   * boundary (which may be `from` itself) and returns the offset reached;
   * otherwise reads it all and returns its length.
   */
  feed(chunk: Uint8Array, from = 0, stopAtBoundary = false): number {
    let i = from;
    const n = chunk.byteLength;
    while (i < n) {
      if (stopAtBoundary && this.atBoundary) break;
      if (this.remaining === -1) {
        // Header: 2 bytes, then the extended length and the mask key they announce.
        this.hdr[this.hdrLen++] = chunk[i++];
        if (this.hdrLen < 2) continue;
        const len7 = this.hdr[1] & 0x7f;
        const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (this.hdr[1] & 0x80 ? 4 : 0);
        if (this.hdrLen < need) continue;
        if (this.startPayload(len7) === 0) this.endFrame();
        continue;
      }
      const take = Math.min(this.remaining, n - i);
      if (this.closePayload) {
        for (let k = 0; k < take; k++) {
          const b = chunk[i + k] ^ (this.mask ? this.mask[this.payloadPos & 3] : 0);
          if (this.closePayload.length < 125) this.closePayload.push(b);
          this.payloadPos++;
        }
      }
      i += take;
      this.remaining -= take;
      if (this.remaining === 0) this.endFrame();
    }
    this.bytes += i - from;
    return i;
  }

  /** Reads the complete header; returns the payload length. */
  private startPayload(len7: number): number {
    const h = this.hdr;
    this.fin = (h[0] & 0x80) !== 0;
    this.opcode = h[0] & 0x0f;
    let len = len7, p = 2;
    if (len7 === 126) {
      len = (h[2] << 8) | h[3];
      p = 4;
    } else if (len7 === 127) {
      len = 0;
      for (let k = 2; k < 10; k++) len = len * 256 + h[k];
      p = 10;
    }
    this.mask = h[1] & 0x80 ? h.slice(p, p + 4) : null;
    this.remaining = len;
    this.payloadPos = 0;
    this.closePayload = this.opcode === 8 ? [] : null;
    return len;
  }

  private endFrame(): void {
    if (this.opcode <= 2 && this.fin) this.messages++;
    if (this.closePayload) {
      const p = this.closePayload;
      const code = p.length >= 2 ? (p[0] << 8) | p[1] : 1005;
      const reason = p.length > 2 ? new TextDecoder().decode(new Uint8Array(p.slice(2))) : "";
      this.closePayload = null;
      if (!this.close) {
        this.close = { code, reason };
        this.onClose?.(code, reason);
      }
    }
    this.remaining = -1;
    this.hdrLen = 0;
  }
}

function closePayload(code: number, reason: string): Uint8Array {
  const text = new TextEncoder().encode(reason).subarray(0, 123);
  const p = new Uint8Array(2 + text.byteLength);
  p[0] = code >> 8;
  p[1] = code & 0xff;
  p.set(text, 2);
  return p;
}

/** A Close frame as a server sends it (to the client): unmasked. */
export function serverClose(code: number, reason: string): Uint8Array {
  const p = closePayload(code, reason);
  const f = new Uint8Array(2 + p.byteLength);
  f[0] = 0x88;
  f[1] = p.byteLength;
  f.set(p, 2);
  return f;
}

/** holdup's own Ping to the client (unmasked, payload "holdup"); the client's Pong passes on to the app, as RFC 6455 5.5.3 allows. */
export const SERVER_PING: Uint8Array = new Uint8Array([0x89, 6, ...new TextEncoder().encode("holdup")]);

/** A Close frame as a client sends it (to the upstream): masked with a random key. */
export function clientClose(code: number, reason: string): Uint8Array {
  const p = closePayload(code, reason);
  const f = new Uint8Array(6 + p.byteLength);
  f[0] = 0x88;
  f[1] = 0x80 | p.byteLength;
  const key = crypto.getRandomValues(new Uint8Array(4));
  f.set(key, 2);
  for (let k = 0; k < p.byteLength; k++) f[6 + k] = p[k] ^ key[k & 3];
  return f;
}
