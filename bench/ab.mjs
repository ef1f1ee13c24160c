#!/usr/bin/env node
// Paired A/B: holdup from a baseline checkout (HOLDUP_BASELINE=DIR, e.g. the commit
// before a change) against this tree, both running at once in front of one nginx
// origin, wrk runs interleaved A/B/A/B so a loaded machine's drift hits both alike.
// Prints each run and the medians with the ratio.
//
//   git archive HEAD~1 | tar -x -C /tmp/base && ln -s $PWD/node_modules /tmp/base/
//   HOLDUP_BASELINE=/tmp/base node bench/ab.mjs [--runtime bun|deno] [--pairs 6] [--seconds 3] [--c 64]
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { installCleanup, log, median } from "./lib/util.mjs";
import { checkTarget, startNginxOrigin, startTarget } from "./lib/servers.mjs";
import { wrk } from "./lib/steady.mjs";

const { values: o } = parseArgs({
  options: {
    runtime: { type: "string", default: "bun" }, pairs: { type: "string", default: "6" },
    seconds: { type: "string", default: "3" }, c: { type: "string", default: "64" },
  },
});
installCleanup();
const origin = await startNginxOrigin();
const a = await startTarget(`holdup-${o.runtime}@before`, origin.port);
const b = await startTarget(`holdup-${o.runtime}`, origin.port);
const rs = { before: [], after: [] };
try {
  for (const t of [a, b]) await checkTarget(t.port, "/", 6);
  for (const t of [a, b]) await wrk(`http://127.0.0.1:${t.port}/`, { c: Number(o.c), seconds: 1 });
  for (let i = 0; i < Number(o.pairs); i++) {
    const order = i % 2 ? [[b, "after"], [a, "before"]] : [[a, "before"], [b, "after"]];
    for (const [t, k] of order) {
      const r = await wrk(`http://127.0.0.1:${t.port}/`, { c: Number(o.c), seconds: Number(o.seconds) });
      rs[k].push(r.rps);
      log(`pair ${i + 1} ${k}: ${Math.round(r.rps)} req/s, p50 ${r.p50} ms, errors ${r.errors}`);
    }
  }
} finally {
  for (const t of [a, b, origin]) await t.stop();
}
const ma = median(rs.before), mb = median(rs.after);
const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
console.log(`${o.runtime}: before ${Math.round(ma)} req/s, after ${Math.round(mb)} req/s (median of ${rs.before.length} interleaved pairs, ` +
  `${o.seconds} s each, -c${o.c}): ${((mb / ma - 1) * 100).toFixed(1)}%; load average at the end ${load}`);
