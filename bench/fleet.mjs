#!/usr/bin/env node
// The fleet benchmark: three holdups (one Deno, two Bun) sharing one redis-server.
//
//   node bench/fleet.mjs [--n 1000] [--runs 3]
//
// reload: N GETs held across the three (a dead upstream), then POST /reload with a live
//         upstream to the first one: time from the reload sent to each held request answered,
//         on the instance that got it and on the other two.
// resume: the same with the three paused (the upstream up), then POST /resume to the first.
import http from "node:http";
import { parseArgs } from "node:util";
import { BIN, REPO_DIR, BENCH_DIR, freePort, waitPort, spawnGroup, installCleanup, ensureFdLimit, percentile, log, table } from "./lib/util.mjs";

const { values: o } = parseArgs({ options: { n: { type: "string" }, runs: { type: "string" } } });
const N = Number(o.n ?? 1000), RUNS = Number(o.runs ?? 3);
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

const rows = [];
for (const kind of ["reload", "resume"]) {
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
console.log(table(["sent to instance 1 (Deno)", "its own held: p50", "p99", "the other two's (Bun): first", "p50", "p99", "failed"], rows));
