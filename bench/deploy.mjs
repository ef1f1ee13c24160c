#!/usr/bin/env node
// The deploy benchmark (issue: several apps and a deploy command). Node built-ins only.
//
//   node bench/deploy.mjs [--n 1000] [--runtimes deno,bun] [--runs 3]
//
// held:   N GETs held by holdup (its upstream is down), then POST /deploy to a new upstream
//         (bench/upstream.mjs). Reported: from the new upstream's first healthy probe (the
//         deploy's healthyMs) to the last held request answered, and who answered them.
// switch: a steady stream of requests to an old upstream that is up, while POST /deploy moves
//         the app to a new one: requests that reached the old upstream after the switch.
import http from "node:http";

import { parseArgs } from "node:util";
import { BIN, REPO_DIR, BENCH_DIR, freePort, waitPort, spawnGroup, installCleanup, ensureFdLimit, median, log, table } from "./lib/util.mjs";

const { values: o } = parseArgs({ options: { n: { type: "string" }, runtimes: { type: "string" }, runs: { type: "string" } } });
const N = Number(o.n ?? 1000), RUNS = Number(o.runs ?? 3);
const runtimes = (o.runtimes ?? "deno,bun").split(",");

ensureFdLimit(N + 1024);
installCleanup();
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

function get(port, path) {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent }, (res) => {
      let body = "";
      res.on("data", (d) => body += d);
      res.on("end", () => resolve({ status: res.statusCode, body, upstream: res.headers["x-upstream"], at: performance.now() }));
    });
    req.on("error", (e) => resolve({ status: 0, body: String(e.code), at: performance.now() }));
  });
}

function post(port, path, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request({ host: "127.0.0.1", port, path, method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data) } }, (res) => {
      let text = "";
      res.on("data", (d) => text += d);
      res.on("end", () => resolve({ status: res.statusCode, body: JSON.parse(text) }));
    });
    req.on("error", reject);
    req.end(data);
  });
}

async function origin(port, name) {
  const child = spawnGroup(`origin-${name}`, process.execPath, [`${BENCH_DIR}/upstream.mjs`, String(port), name], { stdin: "pipe" });
  await waitPort(port, { proc: child });
  return child;
}

async function holdup(rt, upstreamPort) {
  const port = await freePort(), admin = await freePort();
  const entry = `${REPO_DIR}/src/proxy.ts`;
  const [cmd, args] = rt === "bun" ? [BIN.bun, [entry]] : [BIN.deno, ["run", "--allow-net", "--allow-read", "--allow-env", entry]];
  const proc = spawnGroup(`holdup-${rt}`, cmd, [...args, "-l", `127.0.0.1:${port}`, "--admin", `127.0.0.1:${admin}`, "-u", `http://127.0.0.1:${upstreamPort}`, "--log", "off", "--try-interval", "10s", "--max-held", String(N * 2)]);
  await waitPort(port, { proc });
  return { port, admin, proc };
}

async function heldRun(rt) {
  const dead = await freePort(), fresh = await freePort();
  const h = await holdup(rt, dead);
  try {
    const answers = Array.from({ length: N }, (_, i) => get(h.port, `/held${i}`));
    for (;;) {
      const s = await get(h.admin, "/status");
      if (JSON.parse(s.body).held >= N) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const b = await origin(fresh, "B");
    const sent = performance.now();
    const d = await post(h.admin, "/deploy", { app: "default", upstreams: [`http://127.0.0.1:${fresh}`] });
    const all = await Promise.all(answers);
    b.stop();
    const healthyAt = sent + d.body.healthyMs;
    const last = Math.max(...all.map((a) => a.at));
    return {
      ms: last - healthyAt,
      byNew: all.filter((a) => a.status === 200 && a.upstream === "B").length,
      other: all.filter((a) => !(a.status === 200 && a.upstream === "B")).length,
    };
  } finally {
    h.proc.stop();
  }
}

async function switchRun(rt) {
  const oldPort = await freePort(), newPort = await freePort();
  const a = await origin(oldPort, "A");
  const b = await origin(newPort, "B");
  const h = await holdup(rt, oldPort);
  try {
    let stop = false, switchedAt = Infinity;
    const seen = [];
    const workers = Array.from({ length: 32 }, async () => {
      while (!stop) {
        const sentAt = Date.now();
        const r = await get(h.port, "/x");
        seen.push({ sentAt, upstream: r.upstream, status: r.status });
      }
    });
    await new Promise((r) => setTimeout(r, 500));
    const d = await post(h.admin, "/deploy", { app: "default", upstreams: [`http://127.0.0.1:${newPort}`], drainTimeout: "2s" });
    switchedAt = d.body.switchedAt;
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await Promise.all(workers);
    // A request sent after the switch (wall clock, 1 ms resolution: a margin of 2 ms) that A answered reached the old upstream.
    const after = seen.filter((s) => s.sentAt > switchedAt + 2);
    return { after: after.length, toOld: after.filter((s) => s.upstream === "A").length, failed: seen.filter((s) => s.status !== 200).length, total: seen.length };
  } finally {
    h.proc.stop();
    a.stop();
    b.stop();
  }
}

const rows = [];
for (const rt of runtimes) {
  const held = [], sw = [];
  for (let i = 0; i < RUNS; i++) {
    log(`${rt}: ${N} held, deploy (run ${i + 1}/${RUNS})`);
    held.push(await heldRun(rt));
    log(`${rt}: steady stream, deploy (run ${i + 1}/${RUNS})`);
    sw.push(await switchRun(rt));
  }
  rows.push([
    rt,
    `${median(held.map((h) => h.ms)).toFixed(0)} ms (${held.map((h) => h.ms.toFixed(0)).join(", ")})`,
    `${held.reduce((n, h) => n + h.byNew, 0)} / ${N * RUNS}`,
    `${sw.reduce((n, s) => n + s.toOld, 0)} of ${sw.reduce((n, s) => n + s.after, 0)}`,
    `${sw.reduce((n, s) => n + s.failed, 0)} of ${sw.reduce((n, s) => n + s.total, 0)}`,
  ]);
}
console.log(table(
  ["runtime", `healthy probe → last of ${N} held answered (median; runs)`, "held answered by the new upstream", "sent after the switch → reached the old upstream", "failed requests during the deploys"],
  rows,
));

