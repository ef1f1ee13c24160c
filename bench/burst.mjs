#!/usr/bin/env node
// A burst with no holding at all: N GETs written at once through holdup (Deno, Bun) to an
// upstream that is up, on N client connections already open (one warm-up round first), and
// the same burst straight to the upstream. It is the yardstick for the deploy and reload
// release times (bench/deploy.mjs, `run.mjs hold`): a release can be no faster than holdup
// answering that many requests at once. Node built-ins only; everything on 127.0.0.1.
//
//   node bench/burst.mjs [--n 1000] [--rounds 4]
import http from "node:http";
import { parseArgs } from "node:util";
import { BENCH_DIR, BIN, ensureFdLimit, fmtMs, freePort, installCleanup, log, median, spawnGroup, table, waitPort } from "./lib/util.mjs";

const { values: o } = parseArgs({ options: { n: { type: "string" }, rounds: { type: "string" } } });
const N = Number(o.n ?? 1000), ROUNDS = Number(o.rounds ?? 4);
ensureFdLimit(2 * N + 1024);
installCleanup();

// The origin the deploy and hold benchmarks use (bench/upstream.mjs: a raw net.Server, its own process).
const upPort = await freePort();
const upstream = spawnGroup("origin", process.execPath, [`${BENCH_DIR}/upstream.mjs`, String(upPort), "B"], { stdin: "pipe" });
await waitPort(upPort, { proc: upstream });

/** ROUNDS bursts of N at once on N keep-alive connections to `port` (round 0 opens them). Times in ms from the burst's start. */
async function bursts(port) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: Infinity });
  const get = () =>
    new Promise((resolve) => {
      const rq = http.get({ host: "127.0.0.1", port, path: "/", agent }, (r) => {
        r.resume();
        r.on("end", () => resolve(r.statusCode === 200 ? performance.now() : NaN));
      });
      rq.on("error", () => resolve(NaN));
    });
  const out = [];
  for (let round = 0; round <= ROUNDS; round++) {
    const t0 = performance.now();
    const ts = (await Promise.all(Array.from({ length: N }, get))).map((t) => t - t0).sort((a, b) => a - b);
    if (ts.some((t) => !Number.isFinite(t))) throw new Error(`round ${round}: ${ts.filter((t) => !Number.isFinite(t)).length} of ${N} failed`);
    if (round > 0) out.push({ first: ts[0], p50: ts[N >> 1], last: ts.at(-1) });
  }
  agent.destroy();
  return out;
}

const rows = [];
try {
  rows.push(["direct (no proxy)", ...summary(await bursts(upPort))]);
  for (const rt of ["deno", "bun"]) {
    const port = await freePort();
    const args = rt === "bun" ? ["src/proxy.ts"] : ["run", "--allow-net", "--allow-read", "--allow-env", "src/proxy.ts"];
    const h = spawnGroup(`holdup-${rt}`, BIN[rt], [...args, "-l", `127.0.0.1:${port}`, "--admin", "off", "-u", `:${upPort}`, "--log", "off"]);
    try {
      await waitPort(port, { proc: h });
      log(`${rt}: ${ROUNDS} bursts of ${N}`);
      rows.push([`holdup on ${rt === "deno" ? "Deno" : "Bun"}`, ...summary(await bursts(port))]);
    } finally {
      await h.stop();
    }
  }
} finally {
  await upstream.stop();
}

function summary(rs) {
  return [rs.map((r) => fmtMs(r.last)).join(", "), fmtMs(median(rs.map((r) => r.first))), fmtMs(median(rs.map((r) => r.p50))), fmtMs(median(rs.map((r) => r.last)))];
}

console.log(`\n${N} GETs written at once on ${N} open keep-alive connections, upstream up (bench/upstream.mjs), ${ROUNDS} rounds after one that opens the connections\n`);
console.log(table(["target", "last answered, each round", "first (median)", "p50 (median)", "last (median)"], rows));
