/**
 * A child's stdout read a line at a time: the self-upgrade's new holdup
 * (cli/upgrade.ts, one JSON object a line) and a --workers worker's ready line
 * (fleet/workers.ts). A line is passed on without its "\n"; an unfinished last
 * line is not passed on.
 */
import type { Readable } from "node:stream";

/** Calls `fn` with each line `stream` delivers, as UTF-8 text. */
export function eachLine(stream: Readable, fn: (line: string) => void): void {
  let buf = "";
  stream.setEncoding("utf8");
  stream.on("data", (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      fn(line);
    }
  });
}
