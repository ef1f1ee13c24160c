#!/usr/bin/env node
// The fleet benchmark: three holdups (one Deno, two Bun) sharing one redis-server.
//
//   node bench/fleet.mjs [--n 1000] [--runs 3] [--only reload,resume,kill,kv]
//
// reload: N GETs held across the three (a dead upstream), then POST /reload with a live
//         upstream to the first one: time from the reload sent to each held request answered,
//         on the instance that got it and on the other two.
// resume: the same with the three paused (the upstream up), then POST /resume to the first.
// kill:   a steady load through all three (wrk per instance) while redis-server is killed for
//         10 s and started again: requests failed (target 0), and whether a pause sent to one
//         instance afterwards reaches all three.
// kv:     the edge entry under deno serve --parallel (2 isolates, Deno KV): N held across the
//         isolates, POST /_holdup/reload sent to one; time to each held request answered, on the
//         isolate that got the reload and on the other (told apart by the access log's isolate id).
import http from "node:http";
import { parseArgs } from "node:util";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BIN, REPO_DIR, BENCH_DIR, freePort, waitPort, spawnGroup, installCleanup, ensureFdLimit, percentile, log, table, sleep } from "./lib/util.mjs";
import { parseWrk } from "./lib/steady.mjs";

const { values: o } = parseArgs({ options: { n: { type: "string" }, runs: { type: "string" }, only: { type: "string" } } });
const N = Number(o.n ?? 1000), RUNS = Number(o.runs ?? 3);
const ONLY = (o.only ?? "reload,resume,kill,kv").split(",");
ensureFdLimit(N + 1024);
installCleanup();
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

const get = (port, path) => new Promise((resolve) => {
  const req = http.get({ host: "127.0.0.1", port, path, agent }, (res) => {
    res.resume();
    res.on("end", () => resolve({ status: res.statusCode, at: performance.now() }));
  });
  req.on("error", () => resolve({ status: 0, at: performance.now() }));
});
const post = (port, path, body) => new Promise((resolve, reject) => {
  const data = body === undefined ? "" : JSON.stringify(body);
  const req = http.request({ host: "127.0.0.1", port, path, method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data) } }, (res) => {
    res.resume();
    res.on("end", () => resolve(res.statusCode));
  });
  req.on("error", reject);
  req.end(data);
});
const status = async (admin) => new Promise((resolve) => {
  http.get({ host: "127.0.0.1", port: admin, path: "/status", agent }, (res) => {
    let t = "";
    res.on("data", (d) => t += d);
    res.on("end", () => resolve(JSON.parse(t)));
  });
});

async function instances(redisUrl, upstreamPort) {
  const out = [];
  for (const rt of ["deno", "bun", "bun"]) {
    const port = await freePort(), admin = await freePort();
    const entry = `${REPO_DIR}/src/proxy.ts`;
    const [cmd, args] = rt === "bun" ? [BIN.bun, [entry]] : [BIN.deno, ["run", "--allow-net", "--allow-read", "--allow-env", entry]];
    const proc = spawnGroup(`holdup-${rt}`, cmd, [...args, "-l", `127.0.0.1:${port}`, "--admin", `127.0.0.1:${admin}`, "-u", `http://127.0.0.1:${upstreamPort}`, "--log", "off", "--try-interval", "30s", "--state", redisUrl]);
    await waitPort(port, { proc });
    await waitPort(admin, { proc });
    out.push({ rt, port, admin, proc });
  }
  return out;
}

async function scenario(kind) {
  const redisPort = await freePort(), dead = await freePort(), live = await freePort();
  const redis = spawnGroup("redis", "redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
  await waitPort(redisPort, { proc: redis });
  const origin = spawnGroup("origin", process.execPath, [`${BENCH_DIR}/upstream.mjs`, String(live), "L"], { stdin: "pipe" });
  await waitPort(live, { proc: origin });
  const hs = await instances(`redis://127.0.0.1:${redisPort}`, kind === "reload" ? dead : live);
  try {
    if (kind === "resume") {
      await post(hs[0].admin, "/pause");
      for (const h of hs) while ((await status(h.admin)).mode !== "paused") await new Promise((r) => setTimeout(r, 20));
    }
    const answers = [];
    for (let i = 0; i < N; i++) answers.push(get(hs[i % 3].port, `/r${i}`).then((a) => ({ ...a, on: i % 3 })));
    for (const [i, h] of hs.entries()) {
      const want = Math.floor(N / 3) + (i < N % 3 ? 1 : 0);
      while ((await status(h.admin)).held < want) await new Promise((r) => setTimeout(r, 20));
    }
    const t0 = performance.now();
    await (kind === "reload" ? post(hs[0].admin, "/reload", { upstreams: [`http://127.0.0.1:${live}`] }) : post(hs[0].admin, "/resume"));
    const all = await Promise.all(answers);
    const ms = (list) => list.map((a) => a.at - t0);
    return { same: ms(all.filter((a) => a.on === 0)), others: ms(all.filter((a) => a.on !== 0)), failed: all.filter((a) => a.status !== 200).length };
  } finally {
    for (const h of hs) h.proc.stop();
    origin.stop();
    redis.stop();
  }
}

async function killRedis() {
  const redisPort = await freePort(), live = await freePort();
  const redisArgs = ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
  let redis = spawnGroup("redis", "redis-server", redisArgs);
  await waitPort(redisPort, { proc: redis });
  const origin = spawnGroup("origin", process.execPath, [`${BENCH_DIR}/upstream.mjs`, String(live), "L"], { stdin: "pipe" });
  await waitPort(live, { proc: origin });
  const hs = await instances(`redis://127.0.0.1:${redisPort}`, live);
  try {
    const wrks = hs.map((h) => spawnGroup("wrk", "wrk", ["-t1", "-c16", "-d22s", "--timeout", "5s", `http://127.0.0.1:${h.port}/`]));
    await sleep(5000);
    log("kill: redis-server killed (SIGKILL) under load");
    await redis.stop("SIGKILL");
    await sleep(10_000);
    redis = spawnGroup("redis", "redis-server", redisArgs);
    await waitPort(redisPort, { proc: redis });
    log("kill: redis-server started again");
    await Promise.all(wrks.map((w) => w.exitPromise));
    const results = wrks.map((w) => parseWrk(w.output()));
    const t0 = performance.now();
    let back = false;
    while (!back && performance.now() - t0 < 15_000) {
      back = (await Promise.all(hs.map((h) => status(h.admin)))).every((s) => s.state.connected);
      if (!back) await sleep(50);
    }
    const paused = back && (await post(hs[1].admin, "/pause")) === 200;
    let reached = false;
    for (const end = performance.now() + 5000; paused && !reached && performance.now() < end; await sleep(20)) {
      reached = (await Promise.all(hs.map((h) => status(h.admin)))).every((s) => s.mode === "paused");
    }
    return hs.map((h, i) => [`${i + 1} (${h.rt})`, String(results[i].requests), String(results[i].errors), back ? "yes" : "no", reached ? "yes" : "no"]);
  } finally {
    for (const h of hs) h.proc.stop();
    origin.stop();
    redis.stop();
  }
}

const fresh = (port, path, headers = {}) => new Promise((resolve) => {
  http.get({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
    let t = "";
    res.on("data", (d) => t += d);
    res.on("end", () => resolve({ status: res.statusCode, text: t }));
  }).on("error", () => resolve({ status: 0, text: "" }));
});

async function kvScenario() {
  const dir = mkdtempSync(join(tmpdir(), "holdup-kv-bench-"));
  const port = await freePort(), dead = await freePort(), live = await freePort();
  const origin = spawnGroup("origin", process.execPath, [`${BENCH_DIR}/upstream.mjs`, String(live), "L"], { stdin: "pipe" });
  await waitPort(live, { proc: origin });
  const TOKEN = "bench";
  const auth = { authorization: `Bearer ${TOKEN}` };
  const edge = spawnGroup("edge-kv", BIN.deno, ["serve", "--unstable-kv", "--parallel", "--allow-net", "--allow-env", "--allow-read", "--allow-write", "--host", "127.0.0.1", "--port", String(port), "src/edge.ts"], {
    env: { DENO_JOBS: "2", HOLDUP_STATE: `kv:${join(dir, "state.kv")}`, HOLDUP_UPSTREAMS: `http://127.0.0.1:${dead}`, HOLDUP_TRY_INTERVAL: "30s", HOLDUP_ADMIN_TOKEN: TOKEN, HOLDUP_LOG: "json" },
  });
  let logs = "";
  edge.stderr.on("data", (d) => logs += d);
  try {
    await waitPort(port, { proc: edge });
    while ((logs.match(/holdup started \(edge\)/g) ?? []).length < 2) await sleep(50);
    const sticky = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const stickyStatus = () => new Promise((resolve) => http.get({ host: "127.0.0.1", port, path: "/_holdup/status", headers: auth, agent: sticky }, (res) => {
      let t = "";
      res.on("data", (d) => t += d);
      res.on("end", () => resolve(JSON.parse(t)));
    }));
    const here = (await stickyStatus()).state.instance;
    const answers = [];
    for (let i = 0; i < N; i++) answers.push(get(port, `/k${i}`));
    // Held everywhere: the latest held count of each isolate seen adds up to N.
    const held = new Map();
    for (const end = performance.now() + 30_000; performance.now() < end;) {
      const r = await fresh(port, "/_holdup/status", auth);
      if (r.status === 200) {
        const s = JSON.parse(r.text);
        held.set(s.state.instance, s.held);
      }
      if ([...held.values()].reduce((a, b) => a + b, 0) === N) break;
    }
    const t0 = performance.now();
    await new Promise((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port, path: "/_holdup/reload", method: "POST", headers: { ...auth, "content-type": "application/json" }, agent: sticky }, (res) => {
        res.resume();
        res.on("end", resolve);
      });
      req.on("error", reject);
      req.end(JSON.stringify({ upstreams: [`http://127.0.0.1:${live}`] }));
    });
    const all = await Promise.all(answers);
    sticky.destroy();
    await sleep(300); // the access log is written once per tick
    const isolateOf = new Map();
    for (const line of logs.split("\n")) {
      if (!line.includes('"msg":"request"')) continue;
      try {
        const l = JSON.parse(line);
        isolateOf.set(l.path, l.worker);
      } catch { /* not a JSON line */ }
    }
    const ms = all.map((a, i) => ({ ms: a.at - t0, on: isolateOf.get(`/k${i}`), ok: a.status === 200 }));
    return {
      same: ms.filter((m) => m.on === here).map((m) => m.ms),
      others: ms.filter((m) => m.on !== undefined && m.on !== here).map((m) => m.ms),
      failed: ms.filter((m) => !m.ok).length,
      spread: [...held.values()].join(" + "),
    };
  } finally {
    edge.stop();
    origin.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows = [];
for (const kind of ["reload", "resume"].filter((k) => ONLY.includes(k))) {
  const same = [], others = [];
  let failed = 0;
  for (let i = 0; i < RUNS; i++) {
    log(`${kind}: run ${i + 1}/${RUNS}, ${N} held across 3 instances`);
    const r = await scenario(kind);
    same.push(...r.same);
    others.push(...r.others);
    failed += r.failed;
  }
  const f = (xs, p) => `${percentile(xs, p).toFixed(0)} ms`;
  rows.push([kind, f(same, 50), f(same, 99), f(others, 0), f(others, 50), f(others, 99), `${failed} of ${N * RUNS}`]);
}
if (rows.length) console.log(table(["sent to instance 1 (Deno)", "its own held: p50", "p99", "the other two's (Bun): first", "p50", "p99", "failed"], rows));

if (ONLY.includes("kv")) {
  const same = [], others = [], spreads = [];
  let failed = 0;
  for (let i = 0; i < RUNS; i++) {
    log(`kv: run ${i + 1}/${RUNS}, ${N} held across 2 isolates (deno serve --parallel, Deno KV)`);
    const r = await kvScenario();
    same.push(...r.same);
    others.push(...r.others);
    spreads.push(r.spread);
    failed += r.failed;
  }
  const f = (xs, p) => (xs.length ? `${percentile(xs, p).toFixed(0)} ms` : "—");
  console.log(`\nDeno KV at the edge: ${N} held per run across 2 isolates (held per isolate: ${spreads.join("; ")})`);
  console.log(table(["reload sent to one isolate", "its own held: p50", "p99", "the other isolate's: first", "p50", "p99", "failed"],
    [["reload", f(same, 50), f(same, 99), f(others, 0), f(others, 50), f(others, 99), `${failed} of ${N * RUNS}`]]));
}

if (ONLY.includes("kill")) {
  log("kill: 3 instances under wrk (16 connections each, 22 s); redis-server killed at 5 s, back at 15 s");
  const r = await killRedis();
  console.log("\nredis-server killed for 10 s under a steady load (wrk -t1 -c16 -d22s per instance):");
  console.log(table(["instance", "requests", "failed", "reconnected", "a later pause reached all"], r));
}
