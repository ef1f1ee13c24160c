#!/usr/bin/env node
// What an open dashboard costs the proxy: steady-state requests/s of holdup
// through an nginx origin (6 B body), wrk -t2 -c64, with no dashboard and with
// one open (a client reading GET /events, as the page does: a status each
// second), on Deno and on Bun, in the same run. Runs alternate without/with,
// with/without, … so a machine that gets busier or quieter favours neither.
// Then, since that ratio is within the machine's run-to-run noise, the
// absolute cost: holdup's CPU time (utime + stime from /proc) while idle for
// --idle S (20) seconds with no dashboard, with one open, and with none again.
//
//   node bench/dashboard.mjs [--runs 4] [--duration 5] [--c 64] [--idle 20]
import { readFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import { parseArgs } from "node:util";
import { BIN, ensureFdLimit, fmtInt, fmtMs, freePort, installCleanup, log, median, sleep, spawnGroup, table, waitPort } from "./lib/util.mjs";
import { startNginxOrigin } from "./lib/servers.mjs";
import { wrk } from "./lib/steady.mjs";

const { values: o } = parseArgs({ options: { runs: { type: "string" }, duration: { type: "string" }, c: { type: "string" }, idle: { type: "string" } } });
const RUNS = Number(o.runs ?? 4), SECONDS = Number(o.duration ?? 5), C = Number(o.c ?? 64), IDLE = Number(o.idle ?? 20);
ensureFdLimit(4096);
installCleanup();

async function holdup(rt, origin) {
  const [port, admin] = [await freePort(), await freePort()];
  const [cmd, args] = rt === "bun" ? [BIN.bun, ["src/proxy.ts"]] : [BIN.deno, ["run", "--allow-net", "--allow-read", "--allow-env", "src/proxy.ts"]];
  const h = spawnGroup(`holdup-${rt}`, cmd, [...args, "-l", `127.0.0.1:${port}`, "--admin", `127.0.0.1:${admin}`, "-u", origin.url, "--log", "off"]);
  await waitPort(port, { proc: h });
  await waitPort(admin, { proc: h });
  return { port, admin, pid: h.pid, stop: () => h.stop() };
}

/** One dashboard: the page once, then its event stream, read as it comes. Resolves to a stop() that returns the events seen. */
async function openDashboard(admin) {
  await new Promise((resolve, reject) => http.get(`http://127.0.0.1:${admin}/`, (r) => r.resume().on("end", resolve)).on("error", reject));
  let events = 0;
  const req = http.get(`http://127.0.0.1:${admin}/events`, (res) => {
    res.setEncoding("utf8");
    res.on("data", (d) => events += d.split("\nevent: ").length - 1 + (d.startsWith("event: ") ? 1 : 0));
    res.on("error", () => {});
  });
  req.on("error", () => {});
  return () => {
    req.destroy();
    return events;
  };
}

/** CPU time (user + system) a process has used, in ms (Linux /proc; the clock ticks at 100 Hz). */
function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** holdup's CPU per second of wall time while idle for IDLE seconds. */
async function idleCpu(pid) {
  const [c0, t0] = [cpuMs(pid), performance.now()];
  await sleep(IDLE * 1000);
  return (cpuMs(pid) - c0) / ((performance.now() - t0) / 1000);
}

const origin = await startNginxOrigin();
const idle = new Map();
const results = new Map();
const load = [];
try {
  for (const rt of ["deno", "bun"]) {
    const h = await holdup(rt, origin);
    try {
      await wrk(`http://127.0.0.1:${h.port}/`, { c: C, seconds: 2 }); // warm-up
      for (let run = 0; run < RUNS; run++) {
        for (const dash of run % 2 === 0 ? [false, true] : [true, false]) {
          const close = dash ? await openDashboard(h.admin) : null;
          load.push(os.loadavg()[0]);
          const r = await wrk(`http://127.0.0.1:${h.port}/`, { c: C, seconds: SECONDS });
          const events = close?.();
          if (dash && !(events >= SECONDS - 1)) throw new Error(`the dashboard's stream delivered only ${events} events in ${SECONDS} s`);
          log(`${rt} ${dash ? "with a dashboard" : "without"} run ${run + 1}/${RUNS}: ${fmtInt(r.rps)} req/s, p99 ${fmtMs(r.p99)}${dash ? `, ${events} events received` : ""}`);
          const key = `${rt} ${dash}`;
          results.set(key, [...(results.get(key) ?? []), r]);
        }
      }
      // Without, with, without again (the mean of the two): settling after wrk (GC, closing sockets) favours neither.
      await sleep(3000);
      const before = await idleCpu(h.pid);
      const close = await openDashboard(h.admin);
      const withDash = await idleCpu(h.pid);
      const events = close();
      const without = (before + await idleCpu(h.pid)) / 2;
      idle.set(rt, [without, withDash, events]);
      log(`${rt} idle: ${without.toFixed(1)} ms CPU/s without a dashboard, ${withDash.toFixed(1)} ms CPU/s with one (${events} events in ${IDLE} s)`);
    } finally {
      await h.stop();
    }
  }
} finally {
  origin.stop();
}

const rows = ["deno", "bun"].map((rt) => {
  const off = results.get(`${rt} false`), on = results.get(`${rt} true`);
  const [a, b] = [median(off.map((r) => r.rps)), median(on.map((r) => r.rps))];
  return [rt, off.map((r) => fmtInt(r.rps)).join(", "), on.map((r) => fmtInt(r.rps)).join(", "), fmtInt(a), fmtInt(b), `${(b / a).toFixed(2)}×`];
});
console.log(`\nholdup with one dashboard open (GET /events read as it comes) vs none; wrk -t2 -c${C}, ${SECONDS} s per run, 6 B body from nginx; load average during the runs ${Math.min(...load).toFixed(1)}–${Math.max(...load).toFixed(1)}\n`);
console.log(table(["runtime", "without (req/s, each run)", "with one dashboard (req/s, each run)", "median without", "median with", "with ÷ without"], rows));
console.log(`\nholdup's CPU time while idle for ${IDLE} s (no requests), from /proc (10 ms ticks)\n`);
console.log(table(["runtime", "without a dashboard", "with one open", "what one open dashboard costs"], ["deno", "bun"].map((rt) => {
  const [a, b] = idle.get(rt);
  return [rt, `${a.toFixed(1)} ms CPU/s`, `${b.toFixed(1)} ms CPU/s`, `${(b - a).toFixed(1)} ms CPU/s (${((b - a) / 10).toFixed(2)} % of one core)`];
})));
