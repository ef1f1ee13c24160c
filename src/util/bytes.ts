/** Byte-array helpers shared by the request-body reader and the response writer. */

/** The chunks joined into one array of `size` bytes (one chunk is returned as is). */
export function concat(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}
