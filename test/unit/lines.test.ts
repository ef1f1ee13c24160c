// eachLine (util/lines.ts): lines split across chunks, several in one chunk, UTF-8 cut mid-character.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { once } from "node:events";
import { eachLine } from "../../src/util/lines.ts";

test("eachLine: whole lines in order, however the chunks fall; an unfinished last line is not passed on", async () => {
  const s = new PassThrough();
  const lines: string[] = [];
  eachLine(s, (l) => lines.push(l));
  const euro = Buffer.from("€"); // 3 bytes, written in two chunks
  for (const c of ['{"t":"re', 'ady"}\n{"t":"serving"}\n\nholdup-worker-ready ', euro.subarray(0, 1), euro.subarray(1), "\npartial"]) s.write(c);
  s.end();
  await once(s, "end");
  assert.deepEqual(lines, ['{"t":"ready"}', '{"t":"serving"}', "", "holdup-worker-ready €"]);
});
