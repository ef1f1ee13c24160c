#!/usr/bin/env node
// What --workers buys on this machine: steady-state requests/s of holdup with
// --workers 2 against --workers 1, on Deno and on Bun, in the same run, through
// an nginx origin (6 B body), wrk -t2 -c64. Runs alternate 1,2,2,1,… so a
// machine that gets busier or quieter during the run favours neither.
//
//   node bench/workers.mjs [--runs 2] [--duration 8] [--c 64]
import os from "node:os";
import { parseArgs } from "node:util";
import { BIN, ensureFdLimit, freePort, installCleanup, log, median, sleep, spawnGroup, table, waitPort, fmtInt, fmtMs } from "./lib/util.mjs";
import { startNginxOrigin } from "./lib/servers.mjs";
import { wrk } from "./lib/steady.mjs";

const { values: o } = parseArgs({ options: { runs: { type: "string" }, duration: { type: "string" }, c: { type: "string" } } });
const RUNS = Number(o.runs ?? 2), SECONDS = Number(o.duration ?? 8), C = Number(o.c ?? 64);
ensureFdLimit(4096);
installCleanup();

async function holdup(rt, workers, origin) {
  const port = await freePort();
  const entry = "src/proxy.ts";
  const [cmd, args] = rt === "bun"
    ? [BIN.bun, [entry]]
    : [BIN.deno, ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-run", entry]];
  const h = spawnGroup(`holdup-${rt}-w${workers}`, cmd, [...args, "-l", `127.0.0.1:${port}`, "--admin", "off", "-u", origin.url, "--log", "off", "--workers", String(workers)]);
  await waitPort(port, { proc: h });
  // Every worker listening: the parent says "holdup started" once all are.
  for (const end = Date.now() + 20_000; !/"holdup started"/.test(h.output()); await sleep(50)) {
    if (h.exited || Date.now() > end) throw new Error(`holdup did not start: ${h.tail()}`);
  }
  return { port, stop: () => h.stop() };
}

const measure = (port, seconds) => wrk(`http://127.0.0.1:${port}/`, { c: C, seconds });

const origin = await startNginxOrigin();
const results = new Map();
const load = [];
try {
  for (const rt of ["deno", "bun"]) {
    for (let run = 0; run < RUNS; run++) {
      for (const workers of run % 2 === 0 ? [1, 2] : [2, 1]) {
        const h = await holdup(rt, workers, origin);
        try {
          await measure(h.port, 2); // warm-up
          load.push(os.loadavg()[0]);
          const r = await measure(h.port, SECONDS);
          log(`${rt} --workers ${workers} run ${run + 1}/${RUNS}: ${fmtInt(r.rps)} req/s, p99 ${fmtMs(r.p99)}, errors ${r.errors}`);
          const key = `${rt} ${workers}`;
          results.set(key, [...(results.get(key) ?? []), r]);
        } finally {
          await h.stop();
        }
      }
    }
  }
} finally {
  origin.stop();
}

const rows = ["deno", "bun"].map((rt) => {
  const one = results.get(`${rt} 1`), two = results.get(`${rt} 2`);
  const rps1 = median(one.map((r) => r.rps)), rps2 = median(two.map((r) => r.rps));
  return [rt, fmtInt(rps1), fmtInt(rps2), `${(rps2 / rps1).toFixed(2)}×`, fmtMs(median(one.map((r) => r.p99))), fmtMs(median(two.map((r) => r.p99))),
    String([...one, ...two].reduce((n, r) => n + r.errors, 0))];
});
console.log(`\nholdup --workers 2 vs --workers 1: wrk -t2 -c${C} -d${SECONDS}s, nginx origin (6 B), median of ${RUNS} runs each, alternating;`);
console.log(`${os.cpus().length} CPUs, 1-min load average during the runs ${Math.min(...load).toFixed(1)}–${Math.max(...load).toFixed(1)} (wrk and nginx share the cores)\n`);
console.log(table(["runtime", "--workers 1 req/s", "--workers 2 req/s", "ratio", "p99 (1)", "p99 (2)", "errors"], rows));
