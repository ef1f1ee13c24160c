#!/usr/bin/env node
// Paired A/B: holdup from a baseline checkout (HOLDUP_BASELINE=DIR, e.g. the commit
// before a change) against this tree, both running at once in front of one nginx
// origin, wrk runs interleaved A/B/A/B so a loaded machine's drift hits both alike.
// Prints each run, the medians, and the median of the pairs' after/before ratios.
//
//   git archive HEAD~1 | tar -x -C /tmp/base && ln -s $PWD/node_modules /tmp/base/
//   HOLDUP_BASELINE=/tmp/base node bench/ab.mjs [--runtime bun|deno] [--pairs 6] [--seconds 3] [--c 64]
//     [--path /64k.bin] [--peer caddy]   (--peer: a third target run in each pair, for a ratio from the same run)
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { installCleanup, log, median } from "./lib/util.mjs";
import { checkTarget, startNginxOrigin, startTarget } from "./lib/servers.mjs";
import { wrk } from "./lib/steady.mjs";

const { values: o } = parseArgs({
  options: {
    runtime: { type: "string", default: "bun" }, pairs: { type: "string", default: "6" },
    seconds: { type: "string", default: "3" }, c: { type: "string", default: "64" },
    path: { type: "string", default: "/" }, peer: { type: "string" },
  },
});
installCleanup();
const origin = await startNginxOrigin();
const a = await startTarget(`holdup-${o.runtime}@before`, origin.port);
const b = await startTarget(`holdup-${o.runtime}`, origin.port);
const p = o.peer ? await startTarget(o.peer, origin.port) : null;
const rs = { before: [], after: [], peer: [] };
const p99 = { before: [], after: [], peer: [] };
/** CPU µs holdup spent per request (user + system, from /proc): far less sensitive to a loaded machine than req/s. */
const cpu = { before: [], after: [], peer: [] };
const ticks = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return Number(f[11]) + Number(f[12]); // utime + stime, in 1/100 s
};
try {
  const all = p ? [a, b, p] : [a, b];
  for (const t of all) await checkTarget(t.port, "/", 6);
  for (const t of all) await wrk(`http://127.0.0.1:${t.port}${o.path}`, { c: Number(o.c), seconds: 1 });
  for (let i = 0; i < Number(o.pairs); i++) {
    const order = i % 2 ? [[b, "after"], [a, "before"]] : [[a, "before"], [b, "after"]];
    if (p) order.splice(i % 3, 0, [p, "peer"]);
    for (const [t, k] of order) {
      const t0 = ticks(t.proc.pid);
      const r = await wrk(`http://127.0.0.1:${t.port}${o.path}`, { c: Number(o.c), seconds: Number(o.seconds) });
      const us = (ticks(t.proc.pid) - t0) * 1e4 / r.requests;
      rs[k].push(r.rps);
      p99[k].push(r.p99);
      cpu[k].push(us);
      log(`pair ${i + 1} ${k}: ${Math.round(r.rps)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, errors ${r.errors}, ${us.toFixed(1)} µs CPU/request`);
    }
  }
} finally {
  for (const t of [a, b, p, origin]) await t?.stop();
}
const ma = median(rs.before), mb = median(rs.after);
const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
// The paired statistic: each pair's ratio, then their median (drift between pairs cancels out).
const ratio = median(rs.after.map((x, i) => x / rs.before[i]));
const ca = median(cpu.before), cb = median(cpu.after);
console.log(`${o.runtime}: before ${Math.round(ma)} req/s, after ${Math.round(mb)} req/s (medians of ${rs.before.length} interleaved pairs, ` +
  `${o.seconds} s each, -c${o.c}): ${((mb / ma - 1) * 100).toFixed(1)}%; median of the pairs' ratios ${((ratio - 1) * 100).toFixed(1)}%; ` +
  `holdup CPU per request ${ca.toFixed(1)} → ${cb.toFixed(1)} µs (${((cb / ca - 1) * 100).toFixed(1)}%); load average at the end ${load}`);
if (p) {
  const mp = median(rs.peer);
  console.log(`${o.peer} (same run, ${o.path}, -c${o.c}): ${Math.round(mp)} req/s, p99 ${median(p99.peer)} ms, ${median(cpu.peer).toFixed(1)} µs CPU/request; ` +
    `holdup ÷ ${o.peer}: before ${(ma / mp).toFixed(2)} ×, after ${(mb / mp).toFixed(2)} × (req/s); p99 before ${median(p99.before)} ms, after ${median(p99.after)} ms`);
} else console.log(`p99 medians: before ${median(p99.before)} ms, after ${median(p99.after)} ms`);
