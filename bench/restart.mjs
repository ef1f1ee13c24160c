#!/usr/bin/env node
// holdup running the app: a restart under steady load, and the cold start after an idle stop.
// Node built-ins only. Everything stays on 127.0.0.1.
//
//   node bench/restart.mjs [--clients 50] [--seconds 8] [--runtimes deno,bun] [--entry src/proxy.ts]
//
// For each runtime: holdup -- python3 -m http.server {port}; `clients` loops send GETs
// (keep-alive) for `seconds`; SIGHUP at 2 s and again at half-time. Reports requests,
// failures (non-2xx or errors), p50/p99/max latency overall and the max within ±1 s of each
// SIGHUP, and the time from SIGHUP to holdup logging the new instance as serving. Then
// --idle-stop 1s: three cold starts (request after the app was stopped) and their latency.
import { spawn } from "node:child_process";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = fileURLToPath(new URL("..", import.meta.url));
const { values: o } = parseArgs({
  options: {
    clients: { type: "string", default: "50" },
    seconds: { type: "string", default: "8" },
    runtimes: { type: "string", default: "deno,bun" },
    entry: { type: "string", default: "src/proxy.ts" },
    hups: { type: "string", default: "2" },
    app: { type: "string" },
  },
});
const clients = Number(o.clients), seconds = Number(o.seconds);
const APP = o.app ? o.app.split(" ") : ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function start(runtime, extra) {
  const bin = `${root}node_modules/.bin/${runtime}`;
  const entry = o.entry.startsWith("/") ? o.entry : root + o.entry;
  const args = runtime === "deno" ? ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-run", entry] : [entry];
  const child = spawn(bin, [...args, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log", "off", ...extra, "--", ...APP], {
    cwd: "/tmp", stdio: ["ignore", "ignore", "pipe"],
  });
  const lines = [];
  let buf = "";
  const waiters = [];
  child.stderr.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      try {
        lines.push({ ...JSON.parse(buf.slice(0, i)), seenAt: performance.now() });
      } catch { /* app output in text */ }
      buf = buf.slice(i + 1);
      for (const w of waiters.splice(0)) w();
    }
  });
  const waitFor = async (pred, ms = 30_000) => {
    const end = performance.now() + ms;
    for (;;) {
      const hit = lines.find(pred);
      if (hit) return hit;
      if (performance.now() > end) throw new Error("timed out waiting for a log line");
      await new Promise((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
  };
  return { child, lines, waitFor };
}

function get(agent, port, path) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.get({ host: "127.0.0.1", port, path, agent }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode, t0, ms: performance.now() - t0 }));
      res.on("error", (e) => resolve({ status: 0, t0, ms: performance.now() - t0, error: String(e) }));
    });
    req.on("error", (e) => resolve({ status: 0, t0, ms: performance.now() - t0, error: String(e) }));
  });
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

async function restartRun(runtime) {
  const h = start(runtime, []);
  const started = await h.waitFor((l) => l.msg === "holdup started");
  const port = Number(String(started.listen).split(":").pop());
  await h.waitFor((l) => l.msg === "app instance serving" && l.instance === 1);
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const results = [];
  let stop = false;
  const loops = Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; !stop; i++) results.push(await get(agent, port, `/?c=${c}&i=${i}`));
  });
  const t0 = performance.now();
  const hups = [];
  for (const [at, instance] of [[2000, 2], [Math.max(seconds * 500, 4000), 3]].slice(0, Number(o.hups))) {
    await sleep(t0 + at - performance.now());
    const sent = performance.now();
    process.kill(h.child.pid, "SIGHUP");
    const line = await h.waitFor((l) => l.msg === "app instance serving" && l.instance === instance);
    hups.push({ sent, servingMs: line.seenAt - sent });
  }
  await sleep(t0 + seconds * 1000 - performance.now());
  stop = true;
  await Promise.all(loops);
  agent.destroy();
  h.child.kill("SIGTERM");
  await new Promise((r) => h.child.on("close", r));
  const lat = results.map((r) => r.ms).sort((a, b) => a - b);
  const failed = results.filter((r) => r.status < 200 || r.status > 299);
  const near = hups.map((hp) => Math.max(0, ...results.filter((r) => Math.abs(r.t0 - hp.sent) < 1000 || (r.t0 < hp.sent && r.t0 + r.ms > hp.sent)).map((r) => r.ms)));
  return {
    runtime, clients, seconds, requests: results.length, failed: failed.length,
    p50: pct(lat, 0.5), p99: pct(lat, 0.99), max: lat[lat.length - 1],
    maxNearRestart: near, hupToServingMs: hups.map((hp) => hp.servingMs),
    firstErrors: failed.slice(0, 3),
  };
}

async function coldStartRun(runtime) {
  const h = start(runtime, ["--idle-stop", "1s"]);
  const started = await h.waitFor((l) => l.msg === "holdup started");
  const port = Number(String(started.listen).split(":").pop());
  await h.waitFor((l) => l.msg === "app instance serving" && l.instance === 1);
  const cold = [];
  for (let i = 1; i <= 3; i++) {
    await h.waitFor((l) => l.msg === "app instance stopped" && l.instance === i, 10_000);
    const r = await get(false, port, "/");
    if (r.status !== 200) throw new Error(`cold start answered ${r.status}`);
    cold.push(r.ms);
  }
  h.child.kill("SIGTERM");
  await new Promise((r) => h.child.on("close", r));
  return { runtime, coldStartMs: cold };
}

const r0 = (n) => Math.round(n);
for (const runtime of o.runtimes.split(",")) {
  const r = await restartRun(runtime);
  console.log(`${runtime}: ${r.requests} requests from ${r.clients} clients over ${r.seconds} s with ${o.hups} SIGHUP restarts: ` +
    `${r.failed} failed; latency p50 ${r0(r.p50)} ms, p99 ${r0(r.p99)} ms, max ${r0(r.max)} ms; ` +
    `max within 1 s of each SIGHUP ${r.maxNearRestart.map(r0).join(", ")} ms; SIGHUP → new instance serving ${r.hupToServingMs.map(r0).join(", ")} ms` +
    (r.failed ? `\n  e.g. ${JSON.stringify(r.firstErrors)}` : ""));
  const c = await coldStartRun(runtime);
  console.log(`${runtime}: cold start after idle stop (request → answer): ${c.coldStartMs.map(r0).join(", ")} ms`);
}
