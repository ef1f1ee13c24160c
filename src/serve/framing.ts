/**
 * HTTP/1.1 request framing that two parsers could read differently, refused
 * before any handler sees it (as nginx does), so a front proxy that reads it
 * another way cannot desynchronise holdup and smuggle a request:
 * - Transfer-Encoding other than exactly "chunked" (e.g. "identity, chunked",
 *   "gzip, chunked"): 501, the coding is not implemented. node:http on both
 *   runtimes reads any list ending in chunked as chunked.
 * - more than one Transfer-Encoding header: 400.
 Not covered: Deno 2.9.6's parser accepts a request line with two spaces
 * ("GET  / HTTP/1.1") and hands over the same method and target as the
 * well-formed line (Bun's answers 400); node:http does not expose the raw
 * line, so holdup cannot tell them apart there.
 * The connection is closed after the refusal: what follows on it cannot be
 * trusted to start where holdup thinks.
 */
import type http from "node:http";
import type { Reply } from "./types.ts";

export function badFraming(req: http.IncomingMessage): Reply | null {
  if (req.httpVersionMajor !== 1) return null;
  const raw = req.rawHeaders;
  let te: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length !== 17 || raw[i].toLowerCase() !== "transfer-encoding") continue;
    if (te !== null) return refuse(400, "more than one Transfer-Encoding header");
    te = raw[i + 1];
  }
  if (te !== null && te.trim().toLowerCase() !== "chunked") {
    return refuse(501, "the only Transfer-Encoding supported is chunked");
  }
  return null;
}

function refuse(status: number, message: string): Reply {
  return { status, headers: [["content-type", "text/plain; charset=utf-8"], ["connection", "close"]], body: `holdup: ${message}\n` };
}
